//! Table columns and rows for `get`, per kind, plus the columns every kind
//! can get (`NAMESPACE` with `-A`, `LABELS` with `--show-labels`).

mod misc;
mod network;
pub mod node;
pub mod pod;
mod workload;

pub use misc::event_last_seen;
pub use network::service_type;
pub use workload::selector_text;

use crate::resources;
use chrono::{DateTime, Utc};
use rkube_api::kinds::Kind;
use rkube_api::proto::object::Kind as Body;
use rkube_api::Object;
use std::collections::HashMap;

/// Which optional columns a table has.
#[derive(Debug, Clone, Copy)]
pub struct RowOptions {
    /// `-o wide`.
    pub wide: bool,
    /// `--show-labels`.
    pub show_labels: bool,
    /// A leading NAMESPACE column (`-A` on a namespaced kind).
    pub namespace_column: bool,
    /// Names as `kind/name` (when several kinds are listed).
    pub kind_prefix: bool,
    /// When "now" is, for ages.
    pub now: DateTime<Utc>,
}

/// `<none>` for an empty cell.
pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

/// `k=v,k2=v2` sorted by key, or `""` when empty.
pub fn join_labels(m: &HashMap<String, String>) -> String {
    let mut pairs: Vec<(&String, &String)> = m.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The kind's own columns, NAME included where the kind has one.
fn kind_columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    match kind {
        Kind::Pod => pod::columns(wide),
        Kind::ReplicationController | Kind::ReplicaSet => workload::replica_columns(wide),
        Kind::DaemonSet => workload::daemonset_columns(wide),
        Kind::Node => node::columns(wide),
        Kind::Service => network::service_columns(wide),
        Kind::Endpoints => network::endpoints_columns(),
        Kind::Namespace => misc::namespace_columns(),
        Kind::Event => misc::event_columns(),
        Kind::Lease => misc::lease_columns(),
    }
}

/// The kind's own cells.
fn kind_cells(obj: &Object, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    match obj.kind.as_ref() {
        Some(Body::Pod(p)) => pod::row(p, wide, now),
        Some(Body::ReplicationController(rc)) => workload::rc_row(rc, wide, now),
        Some(Body::ReplicaSet(rs)) => workload::rs_row(rs, wide, now),
        Some(Body::DaemonSet(ds)) => workload::daemonset_row(ds, wide, now),
        Some(Body::Node(n)) => node::row(n, wide, now),
        Some(Body::Service(s)) => network::service_row(s, wide, now),
        Some(Body::Endpoints(e)) => network::endpoints_row(e, now),
        Some(Body::Namespace(n)) => misc::namespace_row(n, now),
        Some(Body::Event(e)) => misc::event_row(e, now),
        Some(Body::Lease(l)) => misc::lease_row(l, now),
        None => vec![],
    }
}

/// The table header for `kind`.
pub fn header(kind: Kind, opts: &RowOptions) -> Vec<String> {
    let mut h: Vec<String> = Vec::new();
    if opts.namespace_column && kind.namespaced() {
        h.push("NAMESPACE".into());
    }
    h.extend(kind_columns(kind, opts.wide).into_iter().map(String::from));
    if opts.show_labels {
        h.push("LABELS".into());
    }
    h
}

/// One object's row, matching [`header`].
pub fn row(obj: &Object, opts: &RowOptions) -> Vec<String> {
    let Some(kind) = obj.kind() else {
        return vec![];
    };
    let mut r = Vec::new();
    if opts.namespace_column && kind.namespaced() {
        r.push(obj.namespace().to_string());
    }
    let mut cells = kind_cells(obj, opts.wide, opts.now);
    if opts.kind_prefix && kind != Kind::Event {
        if let Some(first) = cells.first_mut() {
            *first = resources::object_ref(kind, first);
        }
    }
    r.extend(cells);
    if opts.show_labels {
        let labels = obj
            .metadata()
            .map(|m| join_labels(&m.labels))
            .unwrap_or_default();
        r.push(or_none(&labels));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{Container, ObjectMeta, Pod, PodSpec};

    fn opts() -> RowOptions {
        RowOptions {
            wide: false,
            show_labels: false,
            namespace_column: false,
            kind_prefix: false,
            now: parse_time("2024-03-01T12:00:00Z").unwrap(),
        }
    }

    fn pod() -> Object {
        Object::from_body(Body::Pod(Pod {
            metadata: Some(ObjectMeta {
                name: "nginx-pod".into(),
                namespace: "default".into(),
                creation_timestamp: "2024-03-01T11:59:15Z".into(),
                labels: [("tier", "dev"), ("app", "nginx")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: "nginx".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
            ..Default::default()
        }))
    }

    #[test]
    fn labels_column_is_sorted() {
        let o = RowOptions {
            show_labels: true,
            ..opts()
        };
        assert_eq!(
            header(Kind::Pod, &o).last().map(String::as_str),
            Some("LABELS")
        );
        let r = row(&pod(), &o);
        assert_eq!(r.last().map(String::as_str), Some("app=nginx,tier=dev"));
        assert_eq!(r[0], "nginx-pod");
    }

    #[test]
    fn namespace_column_and_kind_prefix() {
        let o = RowOptions {
            namespace_column: true,
            kind_prefix: true,
            ..opts()
        };
        assert_eq!(
            header(Kind::Pod, &o)[..2],
            ["NAMESPACE".to_string(), "NAME".to_string()]
        );
        let r = row(&pod(), &o);
        assert_eq!(r[..2], ["default".to_string(), "pod/nginx-pod".to_string()]);
        // Cluster-scoped kinds never get a NAMESPACE column.
        assert_eq!(header(Kind::Node, &o)[0], "NAME");
    }

    #[test]
    fn plain_pod_row() {
        assert_eq!(
            row(&pod(), &opts()),
            ["nginx-pod", "0/1", "Pending", "0", "45s"]
                .map(String::from)
                .to_vec()
        );
        assert_eq!(or_none(""), "<none>");
    }
}
