//! Authorization of API calls (authentication is `rkube_api::auth`).
//!
//! `system:masters` and `system:control-plane` may do anything. Nodes get
//! what a kubelet needs and no more, like Kubernetes' node authorizer: read
//! everything; write only their own Node and Lease; change only pods bound
//! to themselves; create Events. kube-proxy reads and writes only its
//! LoadBalancer announcement Leases (`kube-system/lb-*`) and Events; the DNS
//! server only reads. Anyone else is refused: rkube has no RBAC.

use rkube_api::auth::Identity;
use rkube_api::kinds::Kind;
use rkube_api::kubeconfig::identities as id;
use tonic::Status;

/// What a call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    UpdateStatus,
    Patch,
    Delete,
    GetScale,
    UpdateScale,
    Bind,
}

impl Verb {
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch | Verb::GetScale)
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::UpdateStatus => "update status of",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::GetScale => "get scale of",
            Verb::UpdateScale => "scale",
            Verb::Bind => "bind",
        }
    }
}

/// The answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// Allowed only if the stored pod is bound to this node (and, for
    /// updates, the new object stays bound to it): the caller checks.
    IfPodOnNode(String),
}

/// Decides whether `who` may do `verb` on `kind` `namespace/name`.
pub fn authorize(who: &Identity, verb: Verb, kind: &str, namespace: &str, name: &str) -> Decision {
    if who.in_group(id::GROUP_MASTERS) || who.in_group(id::GROUP_CONTROL_PLANE) {
        return Decision::Allow;
    }
    let k = Kind::from_name(kind).or_else(|| Kind::from_cli(kind));
    let deny = || {
        let what = match (k, namespace.is_empty(), name.is_empty()) {
            (Some(k), true, true) => format!("{} (all namespaces)", k.plural()),
            (Some(k), false, true) => format!("{} in namespace {namespace}", k.plural()),
            (Some(k), true, false) => format!("{} {name}", k.name()),
            (Some(k), false, false) => format!("{} {namespace}/{name}", k.name()),
            (None, _, _) => format!("kind {kind:?}"),
        };
        Decision::Deny(format!(
            "user {:?} may not {} {what}",
            who.user,
            verb.name()
        ))
    };
    let Some(k) = k else {
        // Unknown kinds answer NotFound from the handlers for those allowed
        // to ask; others are simply refused.
        return if verb.is_read() && reader(who) {
            Decision::Allow
        } else {
            deny()
        };
    };
    if let Some(node) = who.node_name() {
        if verb.is_read() {
            return Decision::Allow;
        }
        return match k {
            Kind::Node if name == node && verb != Verb::Bind => Decision::Allow,
            Kind::Lease if namespace == "kube-node-lease" && name == node => Decision::Allow,
            Kind::Pod
                if matches!(
                    verb,
                    Verb::Update | Verb::UpdateStatus | Verb::Patch | Verb::Delete
                ) =>
            {
                Decision::IfPodOnNode(node.to_string())
            }
            Kind::Event if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) => {
                Decision::Allow
            }
            _ => deny(),
        };
    }
    if who.user == id::USER_KUBE_PROXY {
        if verb.is_read() {
            return Decision::Allow;
        }
        return match k {
            Kind::Lease if namespace == "kube-system" && name.starts_with("lb-") => Decision::Allow,
            Kind::Event if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) => {
                Decision::Allow
            }
            _ => deny(),
        };
    }
    if who.user == id::USER_KUBE_DNS && verb.is_read() {
        return Decision::Allow;
    }
    deny()
}

fn reader(who: &Identity) -> bool {
    who.node_name().is_some() || who.user == id::USER_KUBE_PROXY || who.user == id::USER_KUBE_DNS
}

/// Turns a refusal into gRPC's `PermissionDenied`.
pub fn denied(reason: String) -> Status {
    Status::permission_denied(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn masters_and_control_plane_do_anything() {
        for who in [
            user("admin", &["system:masters"]),
            user("system:control-plane:1", &["system:control-plane"]),
        ] {
            assert_eq!(
                authorize(&who, Verb::Delete, "Namespace", "", "kube-system"),
                Decision::Allow
            );
        }
    }

    #[test]
    fn nodes_touch_only_their_own() {
        let n = user("system:node:wn1", &["system:nodes"]);
        assert_eq!(authorize(&n, Verb::List, "Pod", "", ""), Decision::Allow);
        assert_eq!(authorize(&n, Verb::Watch, "Node", "", ""), Decision::Allow);
        assert_eq!(
            authorize(&n, Verb::Create, "Node", "", "wn1"),
            Decision::Allow
        );
        assert_eq!(
            authorize(&n, Verb::UpdateStatus, "Node", "", "wn1"),
            Decision::Allow
        );
        assert!(matches!(
            authorize(&n, Verb::UpdateStatus, "Node", "", "wn2"),
            Decision::Deny(m) if m.contains("system:node:wn1") && m.contains("Node wn2")
        ));
        assert_eq!(
            authorize(&n, Verb::Update, "Lease", "kube-node-lease", "wn1"),
            Decision::Allow
        );
        assert!(matches!(
            authorize(&n, Verb::Update, "Lease", "kube-node-lease", "wn2"),
            Decision::Deny(_)
        ));
        assert!(matches!(
            authorize(&n, Verb::Update, "Lease", "kube-system", "wn1"),
            Decision::Deny(_)
        ));
        assert_eq!(
            authorize(&n, Verb::UpdateStatus, "Pod", "default", "p"),
            Decision::IfPodOnNode("wn1".into())
        );
        assert_eq!(
            authorize(&n, Verb::Delete, "pods", "default", "p"),
            Decision::IfPodOnNode("wn1".into())
        );
        for (verb, kind) in [
            (Verb::Create, "Pod"),
            (Verb::Bind, "Pod"),
            (Verb::Create, "Service"),
            (Verb::Delete, "Namespace"),
            (Verb::UpdateScale, "ReplicaSet"),
            (Verb::Delete, "Node"),
        ] {
            assert!(
                matches!(authorize(&n, verb, kind, "default", "x"), Decision::Deny(_)),
                "{verb:?} {kind}"
            );
        }
        assert_eq!(
            authorize(&n, Verb::Create, "Event", "default", "e"),
            Decision::Allow
        );
    }

    #[test]
    fn a_node_name_needs_the_nodes_group() {
        let fake = user("system:node:wn1", &[]);
        assert!(matches!(
            authorize(&fake, Verb::Get, "Pod", "default", "p"),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn proxy_dns_and_strangers() {
        let p = user("system:kube-proxy", &[]);
        assert_eq!(
            authorize(&p, Verb::Watch, "Service", "", ""),
            Decision::Allow
        );
        assert_eq!(
            authorize(&p, Verb::Create, "Lease", "kube-system", "lb-10.0.0.1"),
            Decision::Allow
        );
        assert!(matches!(
            authorize(&p, Verb::Update, "Lease", "kube-node-lease", "wn1"),
            Decision::Deny(_)
        ));
        assert!(matches!(
            authorize(&p, Verb::Update, "Service", "default", "s"),
            Decision::Deny(_)
        ));
        let d = user("system:kube-dns", &[]);
        assert_eq!(
            authorize(&d, Verb::List, "Endpoints", "", ""),
            Decision::Allow
        );
        assert!(matches!(
            authorize(&d, Verb::Create, "Event", "default", "e"),
            Decision::Deny(_)
        ));
        let s = user("mallory", &["dev"]);
        assert!(matches!(
            authorize(&s, Verb::Get, "Pod", "default", "p"),
            Decision::Deny(m) if m.contains("mallory")
        ));
    }
}
