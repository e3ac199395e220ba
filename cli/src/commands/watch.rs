//! `get -w`: print the current objects, then one row (or document) per
//! change. A broken stream is resumed from the last revision seen; a
//! revision the server no longer has (OutOfRange) means listing again.

use super::get::row_options;
use crate::args::GetArgs;
use crate::context::Ctx;
use crate::errors;
use crate::output::format::OutputFormat;
use crate::output::rows::{self, RowOptions};
use crate::output::table::Table;
use crate::output::{eprint_line, print, print_line, printer};
use crate::resources::Target;
use anyhow::{bail, Result};
use futures::StreamExt;
use rkube_api::kinds::Kind;
use rkube_api::proto::WatchRequest;
use rkube_api::Object;
use std::time::{Duration, Instant};
use tonic::Code;

/// How long the watch may fail to reconnect before giving up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Prints objects as they come, keeping the table's columns.
struct Printer {
    kind: Kind,
    format: OutputFormat,
    opts: RowOptions,
    table: Table,
    header_printed: bool,
    headers: bool,
    printed_docs: usize,
}

impl Printer {
    fn object(&mut self, obj: &Object) {
        if self.format.is_table() {
            self.opts.now = chrono::Utc::now();
            let row = rows::row(obj, &self.opts);
            self.table.fit(&row);
            if !self.header_printed && self.headers {
                let header = rows::header(self.kind, &self.opts);
                self.table.fit(&header);
                print_line(&self.table.line(&header));
            }
            self.header_printed = true;
            print_line(&self.table.line(&row));
        } else {
            print(&printer::render_one(
                self.format,
                obj,
                self.printed_docs == 0,
            ));
            self.printed_docs += 1;
        }
    }

    /// Prints a first batch with the columns fitted to all of it.
    fn batch(&mut self, objs: &[Object]) {
        if self.format.is_table() {
            self.opts.now = chrono::Utc::now();
            if self.headers {
                self.table.fit(&rows::header(self.kind, &self.opts));
            }
            for o in objs {
                self.table.fit(&rows::row(o, &self.opts));
            }
        }
        for o in objs {
            self.object(o);
        }
    }
}

pub async fn run(
    ctx: &Ctx,
    args: &GetArgs,
    target: &Target,
    format: OutputFormat,
    label_sel: &str,
    field_sel: &str,
) -> Result<()> {
    let kind = target.kind;
    let field_sel = match target.names.as_slice() {
        [] => field_sel.to_string(),
        [name] => {
            let by_name = format!("metadata.name={name}");
            if field_sel.is_empty() {
                by_name
            } else {
                format!("{field_sel},{by_name}")
            }
        }
        _ => bail!("watch is only supported on individual resources and resource collections, but {} resources were found", target.names.len()),
    };
    let namespace = ctx.list_namespace(kind);
    let mut p = Printer {
        kind,
        format,
        opts: row_options(ctx, args, format, false),
        table: Table::new(),
        header_printed: false,
        headers: !args.no_headers,
        printed_docs: 0,
    };
    let mut first_list = true;
    'relist: loop {
        let list = ctx.list(kind, &namespace, label_sel, &field_sel).await?;
        if first_list && !target.names.is_empty() && list.items.is_empty() {
            let name = &target.names[0];
            return Err(anyhow::Error::new(errors::from_status(
                &tonic::Status::not_found(format!("{} {name:?} not found", kind.plural())),
            )));
        }
        if !(first_list && args.watch_only) {
            p.batch(&list.items);
        }
        first_list = false;
        let mut rv = list.resource_version;
        let mut failing_since: Option<Instant> = None;
        let mut warned = false;
        loop {
            let req = WatchRequest {
                kind: kind.name().to_string(),
                namespace: namespace.clone(),
                label_selector: label_sel.to_string(),
                field_selector: field_sel.clone(),
                resource_version: rv.clone(),
                allow_bookmarks: true,
            };
            let failure = match ctx.client.watch(req).await {
                Ok(mut stream) => {
                    failing_since = None;
                    let mut ended = None;
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(ev) => {
                                if !ev.resource_version.is_empty() {
                                    rv = ev.resource_version.clone();
                                }
                                if ev.r#type == "BOOKMARK" {
                                    continue;
                                }
                                if let Some(obj) = ev.object.as_ref() {
                                    if ev.resource_version.is_empty()
                                        && !obj.resource_version().is_empty()
                                    {
                                        rv = obj.resource_version().to_string();
                                    }
                                    p.object(obj);
                                }
                            }
                            Err(s) => {
                                ended = Some(s);
                                break;
                            }
                        }
                    }
                    ended
                }
                Err(s) => Some(s),
            };
            match failure {
                Some(s) if s.code() == Code::OutOfRange => continue 'relist,
                Some(s)
                    if !errors::is_connection_failure(&s)
                        && s.code() != Code::Unavailable
                        && s.code() != Code::Unknown
                        && s.code() != Code::Cancelled =>
                {
                    return Err(errors::server(s));
                }
                Some(s) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > GIVE_UP_AFTER {
                        return Err(errors::server(s));
                    }
                    tracing::debug!(error = %s, "watch broke; resuming");
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if !warned && failing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
                eprint_line("Warning: the watch keeps failing; still retrying");
                warned = true;
            }
        }
    }
}
