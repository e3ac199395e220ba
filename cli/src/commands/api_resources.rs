//! `api-resources`: the kinds the API serves.

use crate::args::ApiResourcesArgs;
use crate::output::{print, table};
use crate::resources::resource_name;
use anyhow::{bail, Result};
use rkube_api::kinds::Kind;

/// The table rows (core group first, then by group and name).
pub fn rows(namespaced: Option<bool>) -> Vec<Vec<String>> {
    let mut kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| namespaced.is_none_or(|n| k.namespaced() == n))
        .collect();
    let group = |k: &Kind| {
        k.api_version()
            .split_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default()
    };
    kinds.sort_by_key(|k| (group(k), k.plural()));
    kinds
        .into_iter()
        .map(|k| {
            vec![
                k.plural().to_string(),
                k.short_names().join(","),
                k.api_version().to_string(),
                k.namespaced().to_string(),
                k.name().to_string(),
            ]
        })
        .collect()
}

pub fn run(a: &ApiResourcesArgs) -> Result<()> {
    let body = rows(a.namespaced);
    match a.output.as_deref() {
        Some("name") => {
            let mut out = String::new();
            for r in &body {
                let kind = Kind::from_cli(&r[0]);
                let name = kind.map(resource_name).unwrap_or_else(|| r[0].clone());
                // `replicaset.apps` → `replicasets.apps`
                let plural = match name.split_once('.') {
                    Some((_, group)) => format!("{}.{group}", r[0]),
                    None => r[0].clone(),
                };
                out.push_str(&plural);
                out.push('\n');
            }
            print(&out);
        }
        None | Some("") | Some("wide") => {
            let header: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
                .map(String::from)
                .to_vec();
            print(&table::render(
                (!a.no_headers).then_some(header.as_slice()),
                &body,
            ));
        }
        Some(other) => bail!("--output {other:?} is not available: use wide or name"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_group_first() {
        let r = rows(None);
        assert_eq!(r.len(), Kind::ALL.len());
        assert_eq!(r[0][0], "endpoints");
        assert!(r
            .iter()
            .any(|x| x == &["replicasets", "rs", "apps/v1", "true", "ReplicaSet"]));
        assert!(rows(Some(false)).iter().all(|x| x[3] == "false"));
    }
}
