//! The proxy table: what one Service and its Endpoints ask of this node,
//! as a list of service ports, and the difference between two such lists.
//!
//! A service port has a *frontend* (where it listens: ClusterIP:port and the
//! NodePort) and *backends* (the ready endpoint addresses, the policy, the
//! client-IP affinity). Endpoint ports are matched to service ports by name
//! and protocol, as Kubernetes' kube-proxy does: the Endpoints controller
//! already resolved `targetPort` per pod. Only `addresses` count;
//! `notReadyAddresses` never get traffic. Anything a Service asks that this
//! proxy cannot do is a [`Problem`] with a reason, never a failed sync: the
//! rest of the Service and every other Service go on.

use crate::config::{Policy, POLICY_ANNOTATION};
use ipnet::Ipv4Net;
use rkube_api::proto::{Endpoints, Service};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Kubernetes' spelling; an empty protocol is TCP.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "" | "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one port of one Service: `namespace/name:port-name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The port's name; empty for a Service's single unnamed port.
    pub port: String,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            f.write_str(&self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// Where a service port listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    pub protocol: Protocol,
    /// `None` when the ClusterIP was refused (outside the service CIDR);
    /// the NodePort may still serve.
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// A LoadBalancer Service's `status.loadBalancer.ingress` addresses:
    /// listened on (ingress-IP:port) only by the node announcing them.
    pub load_balancer_ips: Vec<Ipv4Addr>,
}

/// Where a service port sends traffic, and how it chooses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backends {
    /// Ready endpoints, sorted and without duplicates.
    pub endpoints: Vec<SocketAddr>,
    pub policy: Policy,
    /// `Some(timeout)` for `sessionAffinity: ClientIP`.
    pub affinity: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub key: PortKey,
    pub frontend: Frontend,
    pub backends: Backends,
}

/// Something a Service asks that cannot be served as asked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// A CamelCase reason, as in Kubernetes Events.
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: String) -> Problem {
        Problem { reason, message }
    }
}

/// What the table needs from the proxy's configuration.
#[derive(Clone, Debug)]
pub struct TableConfig {
    pub default_policy: Policy,
    pub service_cidr: Ipv4Net,
}

/// `namespace/name` of an object's metadata.
pub fn object_key(meta: Option<&rkube_api::proto::ObjectMeta>) -> String {
    let m = meta.cloned().unwrap_or_default();
    format!("{}/{}", m.namespace, m.name)
}

/// The service ports one Service (with its Endpoints, when any) asks this
/// node to serve, and the problems found on the way.
pub fn service_ports(
    svc: &Service,
    eps: Option<&Endpoints>,
    cfg: &TableConfig,
) -> (Vec<ServicePort>, Vec<Problem>) {
    let mut ports = Vec::new();
    let mut problems = Vec::new();
    let Some(spec) = svc.spec.as_ref() else {
        return (ports, problems);
    };
    let service = object_key(svc.metadata.as_ref());
    if spec.r#type == "ExternalName" {
        return (ports, problems);
    }
    // Headless Services are DNS only.
    if spec.cluster_ip.is_empty() || spec.cluster_ip == "None" {
        return (ports, problems);
    }
    let cluster_ip = match spec.cluster_ip.parse::<Ipv4Addr>() {
        Ok(ip) if cfg.service_cidr.contains(&ip) => Some(ip),
        Ok(ip) => {
            problems.push(Problem::new(
                "ClusterIPOutsideRange",
                format!(
                    "clusterIP {ip} is outside the service CIDR {}; it is not served on this node",
                    cfg.service_cidr
                ),
            ));
            None
        }
        Err(_) => {
            problems.push(Problem::new(
                "InvalidClusterIP",
                format!(
                    "clusterIP {:?} is not an IPv4 address; it is not served on this node",
                    spec.cluster_ip
                ),
            ));
            None
        }
    };
    let node_ports_wanted = spec.r#type == "NodePort" || spec.r#type == "LoadBalancer";
    let load_balancer_ips = if spec.r#type == "LoadBalancer" {
        ingress_ips(svc)
    } else {
        Vec::new()
    };
    let annotations = svc.metadata.as_ref().map(|m| &m.annotations);
    let policy = match annotations.and_then(|a| a.get(POLICY_ANNOTATION)) {
        None => cfg.default_policy,
        Some(v) => match v.parse::<Policy>() {
            Ok(p) => p,
            Err(why) => {
                problems.push(Problem::new(
                    "InvalidPolicy",
                    format!(
                        "annotation {POLICY_ANNOTATION}: {why}; using {}",
                        cfg.default_policy
                    ),
                ));
                cfg.default_policy
            }
        },
    };
    let affinity = (spec.session_affinity == "ClientIP").then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64))
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });

    for sp in &spec.ports {
        let label = if sp.name.is_empty() {
            sp.port.to_string()
        } else {
            format!("{:?}", sp.name)
        };
        let Some(protocol) = Protocol::parse(&sp.protocol) else {
            problems.push(Problem::new(
                "UnsupportedProtocol",
                format!(
                    "port {label}: protocol {:?} is not supported by the userspace proxy (TCP and UDP are)",
                    sp.protocol
                ),
            ));
            continue;
        };
        let port = match u16::try_from(sp.port) {
            Ok(p) if p > 0 => p,
            _ => {
                problems.push(Problem::new(
                    "InvalidPort",
                    format!("port {label}: {} is not a port number", sp.port),
                ));
                continue;
            }
        };
        let node_port = (node_ports_wanted && sp.node_port > 0)
            .then(|| u16::try_from(sp.node_port).ok())
            .flatten();
        if cluster_ip.is_none() && node_port.is_none() {
            continue;
        }
        let endpoints = match eps {
            None => Vec::new(),
            Some(eps) => match resolve_endpoints(&sp.name, protocol, eps) {
                Resolution::Ready(list) => list,
                Resolution::NoSuchPort { available } => {
                    problems.push(Problem::new(
                        "EndpointPortNotFound",
                        format!(
                            "port {label}: no port named {:?} ({protocol}) in the Endpoints (they have: {}); it gets no traffic",
                            sp.name,
                            if available.is_empty() { "none".to_string() } else { available.join(", ") }
                        ),
                    ));
                    Vec::new()
                }
            },
        };
        ports.push(ServicePort {
            key: PortKey {
                service: service.clone(),
                port: sp.name.clone(),
            },
            frontend: Frontend {
                protocol,
                cluster_ip,
                port,
                node_port,
                load_balancer_ips: load_balancer_ips.clone(),
            },
            backends: Backends {
                endpoints,
                policy,
                affinity,
            },
        });
    }
    (ports, problems)
}

/// The IPv4 addresses of a Service's `status.loadBalancer.ingress`.
pub fn ingress_ips(svc: &Service) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .map(|lb| {
            lb.ingress
                .iter()
                .filter_map(|i| i.ip.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

/// The outcome of matching a service port to an Endpoints object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The ready endpoints (possibly none: no addresses, or only not-ready ones).
    Ready(Vec<SocketAddr>),
    /// The Endpoints list addresses, but no subset has a port of this name
    /// and protocol; `available` lists the ports they do have.
    NoSuchPort { available: Vec<String> },
}

/// The ready endpoints of the service port `name`/`protocol`: every
/// subset's `addresses` paired with that subset's port of the same name
/// and protocol.
pub fn resolve_endpoints(name: &str, protocol: Protocol, eps: &Endpoints) -> Resolution {
    let mut ready = Vec::new();
    let mut matched = false;
    let mut has_addresses = false;
    let mut available = Vec::new();
    for subset in &eps.subsets {
        has_addresses |= !subset.addresses.is_empty() || !subset.not_ready_addresses.is_empty();
        let port = subset
            .ports
            .iter()
            .find(|p| p.name == name && Protocol::parse(&p.protocol) == Some(protocol));
        let Some(port) = port else {
            for p in &subset.ports {
                let shown = format!("{:?}/{}", p.name, protocol_or_tcp(&p.protocol));
                if !available.contains(&shown) {
                    available.push(shown);
                }
            }
            continue;
        };
        matched = true;
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        if number == 0 {
            continue;
        }
        for a in &subset.addresses {
            if let Ok(ip) = a.ip.parse::<IpAddr>() {
                ready.push(SocketAddr::new(ip, number));
            }
        }
    }
    if !matched && has_addresses {
        return Resolution::NoSuchPort { available };
    }
    ready.sort();
    ready.dedup();
    Resolution::Ready(ready)
}

fn protocol_or_tcp(p: &str) -> &str {
    if p.is_empty() {
        "TCP"
    } else {
        p
    }
}

/// How the ports of one Service changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Ports that are new: listen and balance.
    pub added: Vec<ServicePort>,
    /// Ports that are gone: stop listening, drain their connections.
    pub removed: Vec<PortKey>,
    /// Ports whose listening addresses changed (backends may have too).
    pub moved: Vec<ServicePort>,
    /// Ports whose listeners stay and whose backends or policy changed.
    pub rebalanced: Vec<ServicePort>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.moved.is_empty()
            && self.rebalanced.is_empty()
    }
}

/// What changed from `old` to `new` (both keyed by port).
pub fn diff(old: &BTreeMap<PortKey, ServicePort>, new: &[ServicePort]) -> Diff {
    let mut d = Diff::default();
    let mut seen = std::collections::BTreeSet::new();
    for port in new {
        seen.insert(&port.key);
        match old.get(&port.key) {
            None => d.added.push(port.clone()),
            Some(o) if o.frontend != port.frontend => d.moved.push(port.clone()),
            Some(o) if o.backends != port.backends => d.rebalanced.push(port.clone()),
            Some(_) => {}
        }
    }
    d.removed = old.keys().filter(|k| !seen.contains(k)).cloned().collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{
        ClientIpConfig, EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta,
        ServicePort as SvcPort, ServiceSpec, SessionAffinityConfig,
    };

    fn cfg() -> TableConfig {
        TableConfig {
            default_policy: Policy::RoundRobin,
            service_cidr: crate::config::default_service_cidr(),
        }
    }

    fn svc(ty: &str, ip: &str, ports: &[(&str, &str, i32, i32)]) -> Service {
        Service {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                r#type: ty.into(),
                cluster_ip: ip.into(),
                ports: ports
                    .iter()
                    .map(|(name, proto, port, node_port)| SvcPort {
                        name: name.to_string(),
                        protocol: proto.to_string(),
                        port: *port,
                        node_port: *node_port,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn addr(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        }
    }

    fn subset(ready: &[&str], not_ready: &[&str], ports: &[(&str, &str, i32)]) -> EndpointSubset {
        EndpointSubset {
            addresses: ready.iter().map(|a| addr(a)).collect(),
            not_ready_addresses: not_ready.iter().map(|a| addr(a)).collect(),
            ports: ports
                .iter()
                .map(|(n, p, port)| EndpointPort {
                    name: n.to_string(),
                    protocol: p.to_string(),
                    port: *port,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn eps(subsets: Vec<EndpointSubset>) -> Endpoints {
        Endpoints {
            subsets,
            ..Default::default()
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn endpoints_resolve_by_port_name_and_protocol() {
        let e = eps(vec![
            subset(
                &["10.244.1.2", "10.244.1.3"],
                &["10.244.1.9"],
                &[("http", "TCP", 8080), ("dns", "UDP", 53)],
            ),
            subset(&["10.244.2.2"], &[], &[("http", "TCP", 9090)]),
        ]);
        assert_eq!(
            resolve_endpoints("http", Protocol::Tcp, &e),
            Resolution::Ready(vec![
                sa("10.244.1.2:8080"),
                sa("10.244.1.3:8080"),
                sa("10.244.2.2:9090")
            ])
        );
        assert_eq!(
            resolve_endpoints("dns", Protocol::Udp, &e),
            Resolution::Ready(vec![sa("10.244.1.2:53"), sa("10.244.1.3:53")])
        );
        // Same name, other protocol: no such port.
        assert!(matches!(
            resolve_endpoints("dns", Protocol::Tcp, &e),
            Resolution::NoSuchPort { .. }
        ));
    }

    #[test]
    fn not_ready_addresses_never_resolve() {
        let e = eps(vec![subset(&[], &["10.244.1.9"], &[("", "TCP", 80)])]);
        assert_eq!(
            resolve_endpoints("", Protocol::Tcp, &e),
            Resolution::Ready(vec![])
        );
    }

    #[test]
    fn unnamed_single_port_matches_unnamed_endpoint_port() {
        let e = eps(vec![subset(&["10.244.1.2"], &[], &[("", "", 80)])]);
        assert_eq!(
            resolve_endpoints("", Protocol::Tcp, &e),
            Resolution::Ready(vec![sa("10.244.1.2:80")])
        );
    }

    #[test]
    fn a_port_name_no_endpoint_defines_is_a_problem_not_a_failure() {
        let s = svc(
            "ClusterIP",
            "10.96.0.20",
            &[("http", "TCP", 80, 0), ("metrics", "TCP", 9100, 0)],
        );
        let e = eps(vec![subset(&["10.244.1.2"], &[], &[("http", "TCP", 8080)])]);
        let (ports, problems) = service_ports(&s, Some(&e), &cfg());
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].backends.endpoints, vec![sa("10.244.1.2:8080")]);
        assert!(ports[1].backends.endpoints.is_empty());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, "EndpointPortNotFound");
        assert!(
            problems[0].message.contains("\"metrics\""),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn frontends_follow_the_service_type() {
        let s = svc("NodePort", "10.96.0.20", &[("", "UDP", 53, 30053)]);
        let (ports, problems) = service_ports(&s, None, &cfg());
        assert!(problems.is_empty());
        assert_eq!(
            ports[0].frontend,
            Frontend {
                protocol: Protocol::Udp,
                cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 20)),
                port: 53,
                node_port: Some(30053),
                load_balancer_ips: vec![],
            }
        );
        // A ClusterIP Service ignores a stale nodePort.
        let s = svc("ClusterIP", "10.96.0.20", &[("", "TCP", 80, 30080)]);
        assert_eq!(
            service_ports(&s, None, &cfg()).0[0].frontend.node_port,
            None
        );
        // Headless and ExternalName Services have no frontend.
        assert!(service_ports(
            &svc("ClusterIP", "None", &[("", "TCP", 80, 0)]),
            None,
            &cfg()
        )
        .0
        .is_empty());
        assert!(service_ports(&svc("ExternalName", "", &[]), None, &cfg())
            .0
            .is_empty());
    }

    #[test]
    fn cluster_ips_outside_the_range_are_refused_with_a_reason() {
        let s = svc("NodePort", "192.168.1.1", &[("", "TCP", 80, 30080)]);
        let (ports, problems) = service_ports(&s, None, &cfg());
        assert_eq!(problems[0].reason, "ClusterIPOutsideRange");
        // The NodePort still serves.
        assert_eq!(ports[0].frontend.cluster_ip, None);
        assert_eq!(ports[0].frontend.node_port, Some(30080));
        let s = svc("ClusterIP", "127.0.0.1", &[("", "TCP", 80, 0)]);
        assert!(service_ports(&s, None, &cfg()).0.is_empty());
    }

    #[test]
    fn policy_annotation_and_affinity_are_read() {
        let mut s = svc("ClusterIP", "10.96.0.20", &[("", "TCP", 80, 0)]);
        s.metadata
            .as_mut()
            .unwrap()
            .annotations
            .insert(POLICY_ANNOTATION.into(), "least-conn".into());
        let spec = s.spec.as_mut().unwrap();
        spec.session_affinity = "ClientIP".into();
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIpConfig {
                timeout_seconds: Some(30),
            }),
        });
        let (ports, problems) = service_ports(&s, None, &cfg());
        assert!(problems.is_empty());
        assert_eq!(ports[0].backends.policy, Policy::LeastConn);
        assert_eq!(ports[0].backends.affinity, Some(Duration::from_secs(30)));

        s.metadata
            .as_mut()
            .unwrap()
            .annotations
            .insert(POLICY_ANNOTATION.into(), "fastest".into());
        let (ports, problems) = service_ports(&s, None, &cfg());
        assert_eq!(ports[0].backends.policy, Policy::RoundRobin);
        assert_eq!(problems[0].reason, "InvalidPolicy");
    }

    #[test]
    fn sctp_is_reported_and_skipped() {
        let s = svc(
            "ClusterIP",
            "10.96.0.20",
            &[("a", "SCTP", 80, 0), ("b", "TCP", 81, 0)],
        );
        let (ports, problems) = service_ports(&s, None, &cfg());
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].key.port, "b");
        assert_eq!(problems[0].reason, "UnsupportedProtocol");
    }

    fn table(ports: &[ServicePort]) -> BTreeMap<PortKey, ServicePort> {
        ports.iter().map(|p| (p.key.clone(), p.clone())).collect()
    }

    #[test]
    fn diff_sorts_changes_into_adds_removes_moves_and_rebalances() {
        let s = svc(
            "ClusterIP",
            "10.96.0.20",
            &[("a", "TCP", 80, 0), ("b", "TCP", 81, 0)],
        );
        let e1 = eps(vec![subset(
            &["10.244.1.2"],
            &[],
            &[("a", "TCP", 8080), ("b", "TCP", 8081)],
        )]);
        let (v1, _) = service_ports(&s, Some(&e1), &cfg());
        let empty = BTreeMap::new();

        let d = diff(&empty, &v1);
        assert_eq!(d.added.len(), 2);
        assert!(d.removed.is_empty() && d.moved.is_empty() && d.rebalanced.is_empty());
        assert!(diff(&table(&v1), &v1).is_empty());

        // An endpoint more: both ports rebalance, nothing moves.
        let e2 = eps(vec![subset(
            &["10.244.1.2", "10.244.1.3"],
            &[],
            &[("a", "TCP", 8080), ("b", "TCP", 8081)],
        )]);
        let (v2, _) = service_ports(&s, Some(&e2), &cfg());
        let d = diff(&table(&v1), &v2);
        assert_eq!(d.rebalanced.len(), 2);
        assert!(d.added.is_empty() && d.removed.is_empty() && d.moved.is_empty());

        // Port b renumbered, port a dropped, port c added.
        let s3 = svc(
            "ClusterIP",
            "10.96.0.20",
            &[("b", "TCP", 82, 0), ("c", "TCP", 83, 0)],
        );
        let (v3, _) = service_ports(&s3, Some(&e2), &cfg());
        let d = diff(&table(&v2), &v3);
        assert_eq!(
            d.removed,
            vec![PortKey {
                service: "default/web".into(),
                port: "a".into()
            }]
        );
        assert_eq!(d.moved.len(), 1);
        assert_eq!(d.moved[0].frontend.port, 82);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].key.port, "c");

        // The Service deleted: everything goes.
        let d = diff(&table(&v3), &[]);
        assert_eq!(d.removed.len(), 2);
    }
}
