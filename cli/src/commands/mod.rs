//! One module per subcommand, and the helpers they share.

pub mod api_resources;
pub mod apply;
pub mod cluster_info;
pub mod create;
pub mod delete;
pub mod describe;
pub mod exec;
pub mod get;
pub mod label;
pub mod logs;
pub mod member;
pub mod scale;
pub mod version;
pub mod watch;

use crate::context::Ctx;
use crate::errors::{self, Reported};
use crate::manifests::{self, Loaded};
use crate::output;
use anyhow::{anyhow, Result};
use rkube_api::kinds::Kind;
use rkube_api::selector::{FieldSelector, LabelSelector};
use rkube_api::Object;

/// Loads every manifest, or prints every problem and fails.
pub fn load_or_report(files: &[String], recursive: bool) -> Result<Vec<Loaded>> {
    manifests::load_all(files, recursive).map_err(|problems| {
        for p in problems {
            output::eprint_line(&p);
        }
        anyhow::Error::new(Reported)
    })
}

/// Checks a `-l` selector; the text to send (empty for none).
pub fn label_selector(sel: Option<&str>) -> Result<String> {
    let s = sel.unwrap_or("").trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    LabelSelector::parse(s).map_err(|e| anyhow!("{e}"))?;
    Ok(s.to_string())
}

/// Checks a `--field-selector`; the text to send (empty for none).
pub fn field_selector(sel: Option<&str>) -> Result<String> {
    let s = sel.unwrap_or("").trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    FieldSelector::parse(s).map_err(|e| anyhow!("{e}"))?;
    Ok(s.to_string())
}

/// The kind of an object (objects from the server and decoded manifests
/// always have one).
pub fn kind_of(obj: &Object) -> Result<Kind> {
    obj.kind()
        .ok_or_else(|| anyhow!("the object holds no kind"))
}

/// Objects of one kind: the named ones (each failure reported through
/// `outcome`), or all matching the selectors when no name is given.
pub async fn fetch(
    ctx: &Ctx,
    kind: Kind,
    names: &[String],
    label_sel: &str,
    field_sel: &str,
    outcome: &mut errors::Outcome,
) -> Vec<Object> {
    if names.is_empty() {
        return match ctx
            .list(kind, &ctx.list_namespace(kind), label_sel, field_sel)
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                outcome.fail(&e);
                vec![]
            }
        };
    }
    let ns = ctx.object_namespace(kind);
    let mut out = Vec::new();
    for name in names {
        match ctx.client.get(kind.name(), &ns, name).await {
            Ok(o) => out.push(o),
            Err(s) => outcome.fail_status(&s),
        }
    }
    out
}
