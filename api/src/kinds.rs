//! The kinds of object rkube serves: their names, API groups, resource names,
//! short names and scope, and uniform access to any object's metadata.

use crate::proto::{self, object::Kind as Body, ObjectMeta};
use std::fmt;

/// One kind of object the API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Event,
    Lease,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::Endpoints,
        Kind::ReplicationController,
        Kind::ReplicaSet,
        Kind::DaemonSet,
        Kind::Event,
        Kind::Lease,
    ];

    /// The Kubernetes kind name, e.g. `ReplicaSet`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::ReplicationController => "ReplicationController",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Event => "Event",
            Kind::Lease => "Lease",
        }
    }

    /// The `apiVersion` objects of this kind carry.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet | Kind::DaemonSet => "apps/v1",
            Kind::Lease => "coordination.k8s.io/v1",
            _ => "v1",
        }
    }

    /// The plural resource name, e.g. `replicasets`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::ReplicationController => "replicationcontrollers",
            Kind::ReplicaSet => "replicasets",
            Kind::DaemonSet => "daemonsets",
            Kind::Event => "events",
            Kind::Lease => "leases",
        }
    }

    /// kubectl's short names.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::Endpoints => &["ep"],
            Kind::ReplicationController => &["rc"],
            Kind::ReplicaSet => &["rs"],
            Kind::DaemonSet => &["ds"],
            Kind::Event => &["ev"],
            Kind::Lease => &[],
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }

    /// Parses a kind name exactly as Kubernetes spells it (`Pod`).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Parses what a user types on the command line: a kind, a resource
    /// name singular or plural, or a short name, in any case.
    pub fn from_cli(arg: &str) -> Option<Kind> {
        let a = arg.to_ascii_lowercase();
        let a = a.split('.').next().unwrap_or_default();
        Kind::ALL.into_iter().find(|k| {
            k.name().eq_ignore_ascii_case(a)
                || k.plural() == a
                || k.short_names().contains(&a)
                || (k.plural().strip_suffix('s') == Some(a))
        })
    }

    /// Resolves a manifest's `apiVersion` and `kind`, refusing pairs that do
    /// not exist (`apps/vi` has no `DaemonSet`).
    pub fn from_type_meta(api_version: &str, kind: &str) -> Result<Kind, String> {
        if kind.is_empty() {
            return Err("kind is not set".into());
        }
        if api_version.is_empty() {
            return Err(format!("apiVersion is not set for kind {kind:?}"));
        }
        match Kind::from_name(kind) {
            Some(k) if k.api_version() == api_version => Ok(k),
            Some(k) => Err(format!(
                "no kind {kind:?} is registered for version {api_version:?} \
                 (kind {kind:?} is served as {:?})",
                k.api_version()
            )),
            None => Err(format!(
                "no kind {kind:?} is registered for version {api_version:?}"
            )),
        }
    }

    /// The store key prefix of this kind, within one namespace or all.
    pub fn key_prefix(self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced() && !ns.is_empty() => {
                format!("/registry/{}/{}/", self.plural(), ns)
            }
            _ => format!("/registry/{}/", self.plural()),
        }
    }

    /// The store key of one object.
    pub fn key(self, namespace: &str, name: &str) -> String {
        if self.namespaced() {
            format!("/registry/{}/{}/{}", self.plural(), namespace, name)
        } else {
            format!("/registry/{}/{}", self.plural(), name)
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `$e` with `$o` bound to the inner object of any variant.
macro_rules! each_kind {
    ($body:expr, $o:ident => $e:expr) => {
        match $body {
            Body::Namespace($o) => $e,
            Body::Node($o) => $e,
            Body::Pod($o) => $e,
            Body::Service($o) => $e,
            Body::Endpoints($o) => $e,
            Body::ReplicationController($o) => $e,
            Body::ReplicaSet($o) => $e,
            Body::DaemonSet($o) => $e,
            Body::Event($o) => $e,
            Body::Lease($o) => $e,
        }
    };
}

/// Runs `$e` on the status fields of kinds that have one.
macro_rules! with_status {
    ($a:expr, $b:expr, $x:ident, $y:ident => $e:expr) => {
        match ($a, $b) {
            (Body::Namespace($x), Body::Namespace($y)) => $e,
            (Body::Node($x), Body::Node($y)) => $e,
            (Body::Pod($x), Body::Pod($y)) => $e,
            (Body::Service($x), Body::Service($y)) => $e,
            (Body::ReplicationController($x), Body::ReplicationController($y)) => $e,
            (Body::ReplicaSet($x), Body::ReplicaSet($y)) => $e,
            (Body::DaemonSet($x), Body::DaemonSet($y)) => $e,
            _ => {}
        }
    };
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Namespace(_) => Kind::Namespace,
            Body::Node(_) => Kind::Node,
            Body::Pod(_) => Kind::Pod,
            Body::Service(_) => Kind::Service,
            Body::Endpoints(_) => Kind::Endpoints,
            Body::ReplicationController(_) => Kind::ReplicationController,
            Body::ReplicaSet(_) => Kind::ReplicaSet,
            Body::DaemonSet(_) => Kind::DaemonSet,
            Body::Event(_) => Kind::Event,
            Body::Lease(_) => Kind::Lease,
        }
    }
}

impl proto::Object {
    /// The kind of the object held, if any.
    pub fn kind(&self) -> Option<Kind> {
        self.kind.as_ref().map(Body::kind)
    }

    pub fn metadata(&self) -> Option<&ObjectMeta> {
        self.kind
            .as_ref()
            .and_then(|b| each_kind!(b, o => o.metadata.as_ref()))
    }

    /// The metadata, created empty if absent. `None` only when the object
    /// holds no kind at all.
    pub fn metadata_mut(&mut self) -> Option<&mut ObjectMeta> {
        self.kind
            .as_mut()
            .map(|b| each_kind!(b, o => o.metadata.get_or_insert_with(Default::default)))
    }

    pub fn name(&self) -> &str {
        self.metadata().map(|m| m.name.as_str()).unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata()
            .map(|m| m.namespace.as_str())
            .unwrap_or_default()
    }

    pub fn resource_version(&self) -> &str {
        self.metadata()
            .map(|m| m.resource_version.as_str())
            .unwrap_or_default()
    }

    /// The store key of this object.
    pub fn key(&self) -> Option<String> {
        self.kind().map(|k| k.key(self.namespace(), self.name()))
    }

    /// Sets `apiVersion` and `kind` to this kind's.
    pub fn set_type_meta(&mut self) {
        if let Some(b) = self.kind.as_mut() {
            let k = b.kind();
            each_kind!(b, o => {
                o.api_version = k.api_version().to_string();
                o.kind = k.name().to_string();
            })
        }
    }

    /// Wraps one kind's object.
    pub fn from_body(body: Body) -> proto::Object {
        proto::Object { kind: Some(body) }
    }

    /// Copies the status of `other` (same kind) into this object.
    #[allow(clippy::clone_on_copy)] // some kinds' status types are Copy
    pub fn take_status_from(&mut self, other: &proto::Object) {
        if let (Some(a), Some(b)) = (self.kind.as_mut(), other.kind.as_ref()) {
            with_status!(a, b, x, y => x.status = y.status.clone());
        }
    }

    /// Whether this kind carries a status that updates of the main resource
    /// must not change.
    pub fn has_status(&self) -> bool {
        !matches!(
            self.kind(),
            Some(Kind::Endpoints | Kind::Event | Kind::Lease) | None
        )
    }

    /// The object with metadata and status cleared: what `generation`
    /// counts changes of.
    pub fn desired_state(&self) -> proto::Object {
        let mut o = self.clone();
        if let Some(b) = o.kind.as_mut() {
            each_kind!(b, x => { x.metadata = None; });
        }
        let empty = proto::Object {
            kind: o.kind.as_ref().map(|b| empty_like(b.kind())),
        };
        o.take_status_from(&empty);
        o
    }

    /// The object as a JSON value in Kubernetes' shape (type meta set).
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = self.clone();
        o.set_type_meta();
        match o.kind.as_ref() {
            Some(b) => each_kind!(b, x => serde_json::to_value(x).unwrap_or_default()),
            None => serde_json::Value::Null,
        }
    }

    /// Looks up a dotted field path (`spec.nodeName`, `status.phase`,
    /// `metadata.name`) for field selectors.
    pub fn field(&self, path: &str) -> Option<String> {
        // Fast paths for the selectors controllers use constantly.
        match (self.kind.as_ref(), path) {
            (_, "metadata.name") => return Some(self.name().to_string()),
            (_, "metadata.namespace") => return Some(self.namespace().to_string()),
            (Some(Body::Pod(p)), "spec.nodeName") => {
                return Some(
                    p.spec
                        .as_ref()
                        .map(|s| s.node_name.clone())
                        .unwrap_or_default(),
                )
            }
            (Some(Body::Pod(p)), "status.phase") => {
                return Some(
                    p.status
                        .as_ref()
                        .map(|s| s.phase.clone())
                        .unwrap_or_default(),
                )
            }
            _ => {}
        }
        let json = self.to_json();
        let mut v = &json;
        for part in path.split('.') {
            v = v.get(part)?;
        }
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// An empty object of a kind, status included where the kind has one.
fn empty_like(kind: Kind) -> Body {
    match kind {
        Kind::Namespace => Body::Namespace(Default::default()),
        Kind::Node => Body::Node(Default::default()),
        Kind::Pod => Body::Pod(Default::default()),
        Kind::Service => Body::Service(Default::default()),
        Kind::Endpoints => Body::Endpoints(Default::default()),
        Kind::ReplicationController => Body::ReplicationController(Default::default()),
        Kind::ReplicaSet => Body::ReplicaSet(Default::default()),
        Kind::DaemonSet => Body::DaemonSet(Default::default()),
        Kind::Event => Body::Event(Default::default()),
        Kind::Lease => Body::Lease(Default::default()),
    }
}

/// Decodes one kind's object from a JSON value (strictly: unknown fields
/// and wrong types are errors naming the field path).
pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<proto::Object, String> {
    fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| describe_path_error(&e))
    }
    let body = match kind {
        Kind::Namespace => Body::Namespace(typed(value)?),
        Kind::Node => Body::Node(typed(value)?),
        Kind::Pod => Body::Pod(typed(value)?),
        Kind::Service => Body::Service(typed(value)?),
        Kind::Endpoints => Body::Endpoints(typed(value)?),
        Kind::ReplicationController => Body::ReplicationController(typed(value)?),
        Kind::ReplicaSet => Body::ReplicaSet(typed(value)?),
        Kind::DaemonSet => Body::DaemonSet(typed(value)?),
        Kind::Event => Body::Event(typed(value)?),
        Kind::Lease => Body::Lease(typed(value)?),
    };
    Ok(proto::Object { kind: Some(body) })
}

/// Turns a serde error with its path into `path: problem`, naming an unknown
/// field as part of the path (`spec.selector.matchExpressions[0].app`).
pub fn describe_path_error<E: fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    let inner = e.inner().to_string();
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let full = if path.is_empty() {
            field.to_string()
        } else if path.ends_with(&format!(".{field}")) || path == field {
            path.clone()
        } else {
            format!("{path}.{field}")
        };
        return format!("{full}: unknown field {field:?}");
    }
    if path.is_empty() {
        inner
    } else {
        format!("{path}: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names_resolve() {
        for (arg, k) in [
            ("po", Kind::Pod),
            ("pods", Kind::Pod),
            ("pod", Kind::Pod),
            ("Pod", Kind::Pod),
            ("rc", Kind::ReplicationController),
            ("replicasets", Kind::ReplicaSet),
            ("rs", Kind::ReplicaSet),
            ("ds", Kind::DaemonSet),
            ("svc", Kind::Service),
            ("ep", Kind::Endpoints),
            ("endpoints", Kind::Endpoints),
            ("no", Kind::Node),
            ("nodes", Kind::Node),
            ("ns", Kind::Namespace),
            ("replicasets.apps", Kind::ReplicaSet),
        ] {
            assert_eq!(Kind::from_cli(arg), Some(k), "{arg}");
        }
        assert_eq!(Kind::from_cli("deployments"), None);
    }

    #[test]
    fn type_meta_is_checked() {
        assert_eq!(
            Kind::from_type_meta("apps/v1", "DaemonSet"),
            Ok(Kind::DaemonSet)
        );
        let e = Kind::from_type_meta("apps/vi", "DaemonSet").unwrap_err();
        assert!(
            e.contains("no kind \"DaemonSet\" is registered for version \"apps/vi\""),
            "{e}"
        );
        assert!(Kind::from_type_meta("v1", "Widget").is_err());
        assert!(Kind::from_type_meta("", "Pod").is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(Kind::Pod.key("default", "a"), "/registry/pods/default/a");
        assert_eq!(Kind::Node.key("", "wn1"), "/registry/nodes/wn1");
        assert_eq!(Kind::Pod.key_prefix(None), "/registry/pods/");
        assert_eq!(Kind::Pod.key_prefix(Some("x")), "/registry/pods/x/");
        assert_eq!(Kind::Node.key_prefix(Some("x")), "/registry/nodes/");
    }

    #[test]
    fn field_lookup_and_status_copy() {
        let p = proto::Pod {
            metadata: Some(ObjectMeta {
                name: "a".into(),
                ..Default::default()
            }),
            spec: Some(proto::PodSpec {
                node_name: "wn1".into(),
                restart_policy: "Always".into(),
                ..Default::default()
            }),
            status: Some(proto::PodStatus {
                phase: "Running".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let o = proto::Object::from_body(Body::Pod(p));
        assert_eq!(o.field("spec.nodeName").as_deref(), Some("wn1"));
        assert_eq!(o.field("spec.restartPolicy").as_deref(), Some("Always"));
        assert_eq!(o.field("status.phase").as_deref(), Some("Running"));
        assert_eq!(o.field("spec.nope"), None);
        let d = o.desired_state();
        assert!(d.metadata().is_none());
        let mut fresh = o.clone();
        fresh.take_status_from(&d);
        assert_eq!(fresh.field("status.phase").unwrap_or_default(), "");
    }
}
