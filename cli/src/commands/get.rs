//! `get`: tables (one per kind, `kind/name` when several kinds are shown),
//! `-o yaml|json|name`, selectors, `-A`, `--show-labels`, and `-w` (handed to
//! the watch module).

use super::{fetch, field_selector, kind_of, label_selector, load_or_report, watch};
use crate::args::GetArgs;
use crate::context::Ctx;
use crate::errors::Outcome;
use crate::output::format::OutputFormat;
use crate::output::rows::{self, RowOptions};
use crate::output::{eprint_line, print, printer, table};
use crate::resources::{parse_targets, Target};
use anyhow::{bail, Result};
use rkube_api::kinds::Kind;
use rkube_api::Object;

/// The table options `get` uses for one listing.
pub fn row_options(
    ctx: &Ctx,
    args: &GetArgs,
    format: OutputFormat,
    multi_kind: bool,
) -> RowOptions {
    RowOptions {
        wide: format == OutputFormat::Wide,
        show_labels: args.show_labels,
        namespace_column: ctx.all_namespaces,
        kind_prefix: multi_kind,
        now: chrono::Utc::now(),
    }
}

/// One kind's table as text.
pub fn table_text(kind: Kind, objects: &[Object], opts: &RowOptions, headers: bool) -> String {
    let header = rows::header(kind, opts);
    let body: Vec<Vec<String>> = objects.iter().map(|o| rows::row(o, opts)).collect();
    table::render(headers.then_some(header.as_slice()), &body)
}

/// Objects named in manifest files, looked up on the server.
async fn fetch_from_files(
    ctx: &Ctx,
    args: &GetArgs,
    outcome: &mut Outcome,
) -> Result<Vec<(Kind, Vec<Object>)>> {
    let loaded = load_or_report(&args.files, false)?;
    let mut groups: Vec<(Kind, Vec<Object>)> = Vec::new();
    for l in loaded {
        let mut obj = l.object;
        if let Err(e) = ctx.place(&mut obj) {
            outcome.fail(&e);
            continue;
        }
        let kind = kind_of(&obj)?;
        match ctx
            .client
            .get(kind.name(), obj.namespace(), obj.name())
            .await
        {
            Ok(o) => match groups.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, v)) => v.push(o),
                None => groups.push((kind, vec![o])),
            },
            Err(s) => outcome.fail_status(&s),
        }
    }
    Ok(groups)
}

pub async fn run(ctx: &Ctx, args: &GetArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let label_sel = label_selector(args.selector.as_deref())?;
    let field_sel = field_selector(args.field_selector.as_deref())?;
    if !args.files.is_empty() && !args.args.is_empty() {
        bail!(
            "when paths are provided as input, you may not specify resources by argument as well"
        );
    }
    let targets: Vec<Target> = if args.files.is_empty() {
        parse_targets(&args.args)?
    } else {
        vec![]
    };
    let named = targets.iter().any(|t| !t.names.is_empty());
    if named && !label_sel.is_empty() {
        bail!("name cannot be provided when a selector is specified");
    }
    if named && ctx.all_namespaces && targets.iter().any(|t| t.kind.namespaced()) {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    if args.watch || args.watch_only {
        let [target] = targets.as_slice() else {
            bail!("you may only specify a single resource type when watching");
        };
        return watch::run(ctx, args, target, format, &label_sel, &field_sel).await;
    }

    let mut outcome = Outcome::new();
    let groups: Vec<(Kind, Vec<Object>)> = if args.files.is_empty() {
        let mut g = Vec::new();
        for t in &targets {
            let objs = fetch(ctx, t.kind, &t.names, &label_sel, &field_sel, &mut outcome).await;
            g.push((t.kind, objs));
        }
        g
    } else {
        fetch_from_files(ctx, args, &mut outcome).await?
    };
    let total: usize = groups.iter().map(|(_, v)| v.len()).sum();

    if format.is_table() {
        let opts = row_options(ctx, args, format, groups.len() > 1);
        let mut first = true;
        for (kind, objs) in groups.iter().filter(|(_, v)| !v.is_empty()) {
            if !first {
                print("\n");
            }
            first = false;
            print(&table_text(*kind, objs, &opts, !args.no_headers));
        }
    } else {
        let all: Vec<Object> = groups.into_iter().flat_map(|(_, v)| v).collect();
        let single = args.files.is_empty()
            && targets.len() == 1
            && targets[0].names.len() == 1
            && total == 1;
        let single = single || (!args.files.is_empty() && total == 1);
        if format != OutputFormat::Name || !all.is_empty() {
            print(&printer::render(format, &all, single));
        }
    }
    if total == 0
        && !named
        && !outcome.failed()
        && (format.is_table() || format == OutputFormat::Name)
    {
        let namespaced = targets.iter().any(|t| t.kind.namespaced());
        eprint_line(&ctx.nothing_found(namespaced));
    }
    outcome.finish()
}
