//! What DNS records the cluster's objects imply, kept current as Services,
//! Endpoints and Pods change.
//!
//! `ClusterRecords` holds a small view of each watched object and, when one
//! changes, recomputes the entries of the sources it affects — a Service
//! (with its Endpoints) or a Pod — and swaps them into the index under one
//! write lock, so every watch event is visible at once or not at all:
//!
//! - `<svc>.<ns>.svc.<domain>`: A/AAAA for the ClusterIPs; for a headless
//!   service (`clusterIP: None`) the ready endpoint addresses; CNAME for an
//!   ExternalName service.
//! - `_<port>._<proto>.<svc>...`: SRV for named ports, targeting the service
//!   name, or for a headless service each endpoint's own name: its hostname,
//!   else its dashed address (`10-244-1-5.<svc>...`), as CoreDNS names them.
//! - `<hostname>.<subdomain>.<ns>.svc.<domain>`: a ready pod whose
//!   `subdomain` names a headless service in its namespace.
//! - `a-b-c-d.<ns>.pod.<domain>`: every active pod's addresses.
//! - PTR for ClusterIPs, endpoint and pod addresses, preferring the most
//!   specific name (service, then hostname, then endpoint, then pod record).

use crate::index::{address, Entry, ObjectKey, SharedIndex, Source};
use crate::names::{self, ClusterDomain};
use hickory_proto::rr::rdata::{CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record};
use rkube_api::kinds::Kind;
use rkube_api::proto::{self, object::Kind as Body};
use rkube_api::Object;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// PTR preference: lower wins when several names claim one address.
const RANK_SERVICE: u8 = 0;
const RANK_HOSTNAME: u8 = 1;
const RANK_ENDPOINT: u8 = 2;
const RANK_POD: u8 = 3;

/// The kinds whose first list makes the index ready.
pub const WATCHED: [Kind; 3] = [Kind::Service, Kind::Endpoints, Kind::Pod];

#[derive(Clone, Debug, PartialEq)]
enum ServiceKind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(Name),
}

#[derive(Clone, Debug, PartialEq)]
struct PortView {
    name: String,
    protocol: String,
    port: u16,
}

#[derive(Clone, Debug, PartialEq)]
struct ServiceView {
    kind: ServiceKind,
    ports: Vec<PortView>,
    publish_not_ready: bool,
}

impl ServiceView {
    fn headless(&self) -> bool {
        self.kind == ServiceKind::Headless
    }
}

#[derive(Clone, Debug, PartialEq)]
struct AddressView {
    ip: IpAddr,
    hostname: String,
    ready: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct SubsetView {
    addresses: Vec<AddressView>,
    ports: Vec<PortView>,
}

#[derive(Clone, Debug, PartialEq)]
struct PodView {
    ips: Vec<IpAddr>,
    hostname: String,
    subdomain: String,
    ready: bool,
}

/// The watched objects, reduced to what DNS needs, feeding the index.
pub struct ClusterRecords {
    domain: ClusterDomain,
    ttl: u32,
    index: SharedIndex,
    services: HashMap<ObjectKey, ServiceView>,
    endpoints: HashMap<ObjectKey, Vec<SubsetView>>,
    pods: HashMap<ObjectKey, PodView>,
    /// (namespace, subdomain) -> pod names, to find a headless service's pods.
    by_subdomain: HashMap<ObjectKey, BTreeSet<Arc<str>>>,
    listed: HashSet<Kind>,
}

impl ClusterRecords {
    pub fn new(index: SharedIndex) -> ClusterRecords {
        let (domain, ttl) = {
            let i = index.read();
            (i.config().domain.clone(), i.config().ttl)
        };
        ClusterRecords {
            domain,
            ttl,
            index,
            services: HashMap::new(),
            endpoints: HashMap::new(),
            pods: HashMap::new(),
            by_subdomain: HashMap::new(),
            listed: HashSet::new(),
        }
    }

    /// An object was added or modified.
    pub fn upsert(&mut self, obj: &Object) {
        let mut dirty = Vec::new();
        self.upsert_into(obj, &mut dirty);
        self.flush(dirty);
    }

    /// An object was deleted.
    pub fn remove(&mut self, obj: &Object) {
        let Some(kind) = obj.kind() else { return };
        let mut dirty = Vec::new();
        self.remove_into(
            kind,
            &ObjectKey::new(obj.namespace(), obj.name()),
            &mut dirty,
        );
        self.flush(dirty);
    }

    /// A fresh list of every object of `kind`: objects missing from it are
    /// gone. The first list of every watched kind makes the index ready.
    pub fn replace(&mut self, kind: Kind, objs: &[Object]) {
        let listed: HashSet<ObjectKey> = objs
            .iter()
            .map(|o| ObjectKey::new(o.namespace(), o.name()))
            .collect();
        let stale: Vec<ObjectKey> = match kind {
            Kind::Service => self.services.keys().cloned().collect(),
            Kind::Endpoints => self.endpoints.keys().cloned().collect(),
            Kind::Pod => self.pods.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let mut dirty = Vec::new();
        for key in stale.iter().filter(|k| !listed.contains(*k)) {
            self.remove_into(kind, key, &mut dirty);
        }
        for o in objs.iter().filter(|o| o.kind() == Some(kind)) {
            self.upsert_into(o, &mut dirty);
        }
        self.listed.insert(kind);
        let ready = WATCHED.iter().all(|k| self.listed.contains(k));
        self.flush(dirty);
        if ready {
            self.index.write().set_ready(true);
        }
    }

    fn upsert_into(&mut self, obj: &Object, dirty: &mut Vec<Source>) {
        let key = ObjectKey::new(obj.namespace(), obj.name());
        match &obj.kind {
            Some(Body::Service(s)) => {
                let view = service_view(s, &key);
                let old = self.services.insert(key.clone(), view.clone());
                if old.as_ref().map(|o| (o.headless(), o.publish_not_ready))
                    != Some((view.headless(), view.publish_not_ready))
                {
                    self.pods_under(&key, dirty);
                }
                dirty.push(Source::Service(key));
            }
            Some(Body::Endpoints(e)) => {
                self.endpoints.insert(key.clone(), endpoints_view(e));
                dirty.push(Source::Service(key));
            }
            Some(Body::Pod(p)) => match pod_view(p) {
                Some(view) => {
                    let old = self.pods.insert(key.clone(), view.clone());
                    if let Some(old) = old {
                        self.unlink_subdomain(&key, &old.subdomain);
                    }
                    if !view.subdomain.is_empty() {
                        self.by_subdomain
                            .entry(ObjectKey::new(&key.namespace, &view.subdomain))
                            .or_default()
                            .insert(key.name.clone());
                    }
                    dirty.push(Source::Pod(key));
                }
                None => self.remove_into(Kind::Pod, &key, dirty),
            },
            _ => {}
        }
    }

    fn remove_into(&mut self, kind: Kind, key: &ObjectKey, dirty: &mut Vec<Source>) {
        match kind {
            Kind::Service => {
                if self.services.remove(key).is_some() {
                    self.pods_under(key, dirty);
                }
                dirty.push(Source::Service(key.clone()));
            }
            Kind::Endpoints => {
                self.endpoints.remove(key);
                dirty.push(Source::Service(key.clone()));
            }
            Kind::Pod => {
                if let Some(old) = self.pods.remove(key) {
                    self.unlink_subdomain(key, &old.subdomain);
                }
                dirty.push(Source::Pod(key.clone()));
            }
            _ => {}
        }
    }

    fn unlink_subdomain(&mut self, pod: &ObjectKey, subdomain: &str) {
        if subdomain.is_empty() {
            return;
        }
        let sub = ObjectKey::new(&pod.namespace, subdomain);
        if let Some(set) = self.by_subdomain.get_mut(&sub) {
            set.remove(&pod.name);
            if set.is_empty() {
                self.by_subdomain.remove(&sub);
            }
        }
    }

    /// Pods whose hostname records depend on service `svc`.
    fn pods_under(&self, svc: &ObjectKey, dirty: &mut Vec<Source>) {
        if let Some(pods) = self.by_subdomain.get(svc) {
            dirty.extend(
                pods.iter()
                    .map(|p| Source::Pod(ObjectKey::new(&svc.namespace, p))),
            );
        }
    }

    /// Recomputes the dirty sources and swaps them in under one lock.
    fn flush(&self, mut dirty: Vec<Source>) {
        let mut seen = HashSet::new();
        dirty.retain(|s| seen.insert(s.clone()));
        let computed: Vec<(Source, Vec<Entry>)> = dirty
            .into_iter()
            .map(|s| {
                let entries = match &s {
                    Source::Service(k) => self.service_entries(k),
                    Source::Pod(k) => self.pod_entries(k),
                    Source::Zone => Vec::new(),
                };
                (s, entries)
            })
            .collect();
        let mut index = self.index.write();
        for (source, entries) in computed {
            if index.set(source.clone(), entries) {
                tracing::debug!(?source, "records updated");
            }
        }
    }

    fn service_entries(&self, key: &ObjectKey) -> Vec<Entry> {
        let Some(svc) = self.services.get(key) else {
            return Vec::new();
        };
        let base = match self.domain.service(&key.namespace, &key.name) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(service = %key, error = %e, "service name is not a DNS name");
                return Vec::new();
            }
        };
        let ttl = self.ttl;
        let mut out = vec![Entry::exists(&base)];
        match &svc.kind {
            ServiceKind::ExternalName(target) => out.push(Entry::record(
                Record::from_rdata(base, ttl, RData::CNAME(CNAME(target.clone()))),
                RANK_SERVICE,
            )),
            ServiceKind::ClusterIp(ips) => {
                for ip in ips {
                    out.push(Entry::record(address(base.clone(), ttl, *ip), RANK_SERVICE));
                    out.push(ptr(*ip, &base, ttl, RANK_SERVICE));
                }
                for port in svc.ports.iter().filter(|p| !p.name.is_empty()) {
                    match self.domain.srv(&base, &port.name, &port.protocol) {
                        Ok(owner) => out.push(srv(owner, ttl, 100, port.port, &base)),
                        Err(e) => tracing::warn!(service = %key, error = %e, "bad port name"),
                    }
                }
            }
            ServiceKind::Headless => {
                let subsets = self.endpoints.get(key).map(Vec::as_slice).unwrap_or(&[]);
                let served = |a: &&AddressView| a.ready || svc.publish_not_ready;
                let count = subsets
                    .iter()
                    .map(|s| s.addresses.iter().filter(served).count())
                    .sum::<usize>();
                let weight = u16::try_from(100 / count.max(1)).unwrap_or(1).max(1);
                for subset in subsets {
                    for addr in subset.addresses.iter().filter(served) {
                        let (label, rank) = if addr.hostname.is_empty() {
                            (names::dashed(addr.ip), RANK_ENDPOINT)
                        } else {
                            (addr.hostname.clone(), RANK_HOSTNAME)
                        };
                        out.push(Entry::record(
                            address(base.clone(), ttl, addr.ip),
                            RANK_SERVICE,
                        ));
                        let member = match self.domain.child(&base, &label) {
                            Ok(n) => n,
                            Err(e) => {
                                tracing::warn!(service = %key, error = %e, "bad endpoint name");
                                continue;
                            }
                        };
                        out.push(Entry::record(address(member.clone(), ttl, addr.ip), rank));
                        out.push(ptr(addr.ip, &member, ttl, rank));
                        for port in subset.ports.iter().filter(|p| !p.name.is_empty()) {
                            if let Ok(owner) = self.domain.srv(&base, &port.name, &port.protocol) {
                                out.push(srv(owner, ttl, weight, port.port, &member));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn pod_entries(&self, key: &ObjectKey) -> Vec<Entry> {
        let Some(pod) = self.pods.get(key) else {
            return Vec::new();
        };
        let ttl = self.ttl;
        let mut out = Vec::new();
        for ip in &pod.ips {
            match self.domain.pod(&key.namespace, *ip) {
                Ok(name) => {
                    out.push(ptr(*ip, &name, ttl, RANK_POD));
                    out.push(Entry::record(address(name, ttl, *ip), RANK_POD));
                }
                Err(e) => tracing::warn!(pod = %key, error = %e, "pod name is not a DNS name"),
            }
        }
        if pod.hostname.is_empty() || pod.subdomain.is_empty() {
            return out;
        }
        let published = self
            .services
            .get(&ObjectKey::new(&key.namespace, &pod.subdomain))
            .is_some_and(|s| s.headless() && (pod.ready || s.publish_not_ready));
        if !published {
            return out;
        }
        let name = self
            .domain
            .service(&key.namespace, &pod.subdomain)
            .and_then(|svc| self.domain.child(&svc, &pod.hostname));
        match name {
            Ok(name) => {
                for ip in &pod.ips {
                    out.push(Entry::record(
                        address(name.clone(), ttl, *ip),
                        RANK_HOSTNAME,
                    ));
                    out.push(ptr(*ip, &name, ttl, RANK_HOSTNAME));
                }
            }
            Err(e) => tracing::warn!(pod = %key, error = %e, "hostname is not a DNS name"),
        }
        out
    }
}

fn ptr(ip: IpAddr, target: &Name, ttl: u32, rank: u8) -> Entry {
    Entry::record(
        Record::from_rdata(names::reverse(ip), ttl, RData::PTR(PTR(target.clone()))),
        rank,
    )
}

fn srv(owner: Name, ttl: u32, weight: u16, port: u16, target: &Name) -> Entry {
    Entry::record(
        Record::from_rdata(
            owner,
            ttl,
            RData::SRV(SRV::new(0, weight, port, target.clone())),
        ),
        RANK_SERVICE,
    )
}

fn parse_ips<'a>(ips: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips {
        if let Ok(ip) = ip.parse::<IpAddr>() {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

fn port_view(name: &str, protocol: &str, port: i32) -> Option<PortView> {
    Some(PortView {
        name: name.to_string(),
        protocol: if protocol.is_empty() {
            "TCP".to_string()
        } else {
            protocol.to_string()
        },
        port: u16::try_from(port).ok().filter(|p| *p != 0)?,
    })
}

fn service_view(s: &proto::Service, key: &ObjectKey) -> ServiceView {
    let Some(spec) = &s.spec else {
        return ServiceView {
            kind: ServiceKind::ClusterIp(Vec::new()),
            ports: Vec::new(),
            publish_not_ready: false,
        };
    };
    let kind = if spec.r#type == "ExternalName" {
        let target = Name::from_ascii(spec.external_name.trim_end_matches('.')).map(|mut n| {
            n.set_fqdn(true);
            n.to_lowercase()
        });
        match target {
            Ok(t) if !t.is_root() => ServiceKind::ExternalName(t),
            _ => {
                tracing::warn!(service = %key, name = %spec.external_name, "bad externalName");
                ServiceKind::ClusterIp(Vec::new())
            }
        }
    } else if spec.cluster_ip == "None" {
        ServiceKind::Headless
    } else if spec.cluster_ips.is_empty() {
        ServiceKind::ClusterIp(parse_ips([spec.cluster_ip.as_str()]))
    } else {
        ServiceKind::ClusterIp(parse_ips(spec.cluster_ips.iter().map(String::as_str)))
    };
    ServiceView {
        kind,
        ports: spec
            .ports
            .iter()
            .filter_map(|p| port_view(&p.name, &p.protocol, p.port))
            .collect(),
        publish_not_ready: spec.publish_not_ready_addresses,
    }
}

fn endpoints_view(e: &proto::Endpoints) -> Vec<SubsetView> {
    let addr = |a: &proto::EndpointAddress, ready: bool| -> Option<AddressView> {
        Some(AddressView {
            ip: a.ip.parse().ok()?,
            hostname: a.hostname.clone(),
            ready,
        })
    };
    e.subsets
        .iter()
        .map(|s| SubsetView {
            addresses: s
                .addresses
                .iter()
                .filter_map(|a| addr(a, true))
                .chain(s.not_ready_addresses.iter().filter_map(|a| addr(a, false)))
                .collect(),
            ports: s
                .ports
                .iter()
                .filter_map(|p| port_view(&p.name, &p.protocol, p.port))
                .collect(),
        })
        .collect()
}

/// `None` for a pod that has no address or is no longer active (deleting,
/// Succeeded or Failed): it has no records.
fn pod_view(p: &proto::Pod) -> Option<PodView> {
    let status = p.status.as_ref()?;
    let terminating = p
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    if terminating || status.phase == "Succeeded" || status.phase == "Failed" {
        return None;
    }
    let ips = if status.pod_ips.is_empty() {
        parse_ips([status.pod_ip.as_str()])
    } else {
        parse_ips(status.pod_ips.iter().map(|i| i.ip.as_str()))
    };
    if ips.is_empty() {
        return None;
    }
    let spec = p.spec.as_ref();
    Some(PodView {
        ips,
        hostname: spec.map(|s| s.hostname.clone()).unwrap_or_default(),
        subdomain: spec.map(|s| s.subdomain.clone()).unwrap_or_default(),
        ready: status
            .conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Answer, NameIndex, ZoneConfig};
    use hickory_proto::rr::{LowerName, RecordType};
    use parking_lot::RwLock;
    use rkube_api::proto::{
        EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta, PodCondition, PodIp, PodSpec,
        PodStatus, ServicePort, ServiceSpec,
    };

    fn setup() -> (SharedIndex, ClusterRecords) {
        let index: SharedIndex = Arc::new(RwLock::new(NameIndex::new(ZoneConfig {
            domain: ClusterDomain::new("cluster.local").expect("domain"),
            ttl: 5,
            nameserver_ip: None,
            reverse_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        })));
        let mut recs = ClusterRecords::new(index.clone());
        for kind in WATCHED {
            recs.replace(kind, &[]);
        }
        assert!(index.read().is_ready());
        (index, recs)
    }

    fn meta(ns: &str, name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        })
    }

    fn service(name: &str, cluster_ip: &str, ports: &[(&str, i32)]) -> Object {
        Object {
            kind: Some(Body::Service(proto::Service {
                metadata: meta("default", name),
                spec: Some(ServiceSpec {
                    cluster_ip: cluster_ip.into(),
                    ports: ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.to_string(),
                            port: *p,
                            protocol: "TCP".into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    fn endpoints(name: &str, ready: &[(&str, &str)], not_ready: &[&str]) -> Object {
        Object {
            kind: Some(Body::Endpoints(proto::Endpoints {
                metadata: meta("default", name),
                subsets: vec![EndpointSubset {
                    addresses: ready
                        .iter()
                        .map(|(ip, host)| EndpointAddress {
                            ip: ip.to_string(),
                            hostname: host.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    not_ready_addresses: not_ready
                        .iter()
                        .map(|ip| EndpointAddress {
                            ip: ip.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ports: vec![EndpointPort {
                        name: "http".into(),
                        port: 8080,
                        protocol: "TCP".into(),
                        ..Default::default()
                    }],
                }],
                ..Default::default()
            })),
        }
    }

    fn pod(name: &str, ip: &str, hostname: &str, subdomain: &str, ready: bool) -> Object {
        Object {
            kind: Some(Body::Pod(proto::Pod {
                metadata: meta("default", name),
                spec: Some(PodSpec {
                    hostname: hostname.into(),
                    subdomain: subdomain.into(),
                    ..Default::default()
                }),
                status: Some(PodStatus {
                    phase: "Running".into(),
                    pod_ip: ip.into(),
                    pod_ips: vec![PodIp { ip: ip.into() }],
                    conditions: vec![PodCondition {
                        r#type: "Ready".into(),
                        status: if ready { "True" } else { "False" }.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    fn q(index: &SharedIndex, name: &str, t: RecordType) -> Answer {
        let n = LowerName::from(Name::from_ascii(name).expect("name"));
        index.read().lookup(&n, t)
    }

    fn data(index: &SharedIndex, name: &str, t: RecordType) -> Vec<String> {
        match q(index, name, t) {
            Answer::Found { answers, .. } => {
                let mut v: Vec<String> = answers.iter().map(|r| r.data.to_string()).collect();
                v.sort();
                v
            }
            Answer::NoData { .. } => vec!["NODATA".into()],
            Answer::NxDomain { .. } => vec!["NXDOMAIN".into()],
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn cluster_ip_service_a_aaaa_srv_ptr() {
        let (index, mut recs) = setup();
        recs.upsert(&service("web", "10.96.0.20", &[("http", 80), ("", 81)]));
        let name = "web.default.svc.cluster.local.";
        assert_eq!(data(&index, name, RecordType::A), ["10.96.0.20"]);
        assert_eq!(data(&index, name, RecordType::AAAA), ["NODATA"]);
        assert_eq!(
            data(
                &index,
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        match q(
            &index,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        ) {
            Answer::Found { additionals, .. } => {
                assert_eq!(additionals[0].data.to_string(), "10.96.0.20")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            data(
                &index,
                "_tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            ["NODATA"]
        );
        assert_eq!(
            data(
                &index,
                "_udp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            ["NXDOMAIN"]
        );
        assert_eq!(
            data(&index, "20.0.96.10.in-addr.arpa.", RecordType::PTR),
            [name]
        );
        assert_eq!(
            data(&index, "default.svc.cluster.local.", RecordType::A),
            ["NODATA"]
        );

        // IPv6 ClusterIPs answer AAAA.
        let mut v6 = service("web6", "fd00::20", &[]);
        if let Some(Body::Service(s)) = &mut v6.kind {
            if let Some(spec) = &mut s.spec {
                spec.cluster_ips = vec!["fd00::20".into()];
            }
        }
        recs.upsert(&v6);
        assert_eq!(
            data(&index, "web6.default.svc.cluster.local.", RecordType::AAAA),
            ["fd00::20"]
        );
        assert_eq!(
            data(&index, "web6.default.svc.cluster.local.", RecordType::A),
            ["NODATA"]
        );
        let rev = names::reverse("fd00::20".parse().expect("ip")).to_string();
        assert_eq!(
            data(&index, &rev, RecordType::PTR),
            ["web6.default.svc.cluster.local."]
        );
    }

    #[test]
    fn updates_and_removals() {
        let (index, mut recs) = setup();
        recs.upsert(&service("web", "10.96.0.20", &[("http", 80)]));
        recs.upsert(&service("web", "10.96.0.21", &[]));
        let name = "web.default.svc.cluster.local.";
        assert_eq!(data(&index, name, RecordType::A), ["10.96.0.21"]);
        assert_eq!(
            data(
                &index,
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV
            ),
            ["NXDOMAIN"]
        );
        assert_eq!(
            data(&index, "20.0.96.10.in-addr.arpa.", RecordType::PTR),
            ["NXDOMAIN"]
        );
        recs.remove(&service("web", "", &[]));
        assert_eq!(data(&index, name, RecordType::A), ["NXDOMAIN"]);
        assert_eq!(
            data(&index, "default.svc.cluster.local.", RecordType::A),
            ["NXDOMAIN"]
        );
        // A relist without an object removes it.
        recs.upsert(&service("a", "10.96.0.1", &[]));
        recs.upsert(&service("b", "10.96.0.2", &[]));
        recs.replace(Kind::Service, &[service("b", "10.96.0.2", &[])]);
        assert_eq!(
            data(&index, "a.default.svc.cluster.local.", RecordType::A),
            ["NXDOMAIN"]
        );
        assert_eq!(
            data(&index, "b.default.svc.cluster.local.", RecordType::A),
            ["10.96.0.2"]
        );
    }

    #[test]
    fn headless_service_from_endpoints() {
        let (index, mut recs) = setup();
        recs.upsert(&service("db", "None", &[]));
        let name = "db.default.svc.cluster.local.";
        // No endpoints yet: the name exists without addresses.
        assert_eq!(data(&index, name, RecordType::A), ["NODATA"]);
        recs.upsert(&endpoints(
            "db",
            &[("10.244.1.5", "db-0"), ("10.244.2.6", "")],
            &["10.244.3.7"],
        ));
        assert_eq!(
            data(&index, name, RecordType::A),
            ["10.244.1.5", "10.244.2.6"]
        );
        assert_eq!(
            data(&index, "db-0.db.default.svc.cluster.local.", RecordType::A),
            ["10.244.1.5"]
        );
        assert_eq!(
            data(
                &index,
                "10-244-2-6.db.default.svc.cluster.local.",
                RecordType::A
            ),
            ["10.244.2.6"]
        );
        assert_eq!(
            data(
                &index,
                "10-244-3-7.db.default.svc.cluster.local.",
                RecordType::A
            ),
            ["NXDOMAIN"]
        );
        assert_eq!(
            data(
                &index,
                "_http._tcp.db.default.svc.cluster.local.",
                RecordType::SRV
            ),
            [
                "0 50 8080 10-244-2-6.db.default.svc.cluster.local.",
                "0 50 8080 db-0.db.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            data(&index, "5.1.244.10.in-addr.arpa.", RecordType::PTR),
            ["db-0.db.default.svc.cluster.local."]
        );
        // Endpoints go away: only the name stays.
        recs.remove(&endpoints("db", &[], &[]));
        assert_eq!(data(&index, name, RecordType::A), ["NODATA"]);
        assert_eq!(
            data(&index, "db-0.db.default.svc.cluster.local.", RecordType::A),
            ["NXDOMAIN"]
        );
    }

    #[test]
    fn publish_not_ready_addresses_serves_not_ready_endpoints() {
        let (index, mut recs) = setup();
        let mut svc = service("db", "None", &[]);
        if let Some(Body::Service(s)) = &mut svc.kind {
            if let Some(spec) = &mut s.spec {
                spec.publish_not_ready_addresses = true;
            }
        }
        recs.upsert(&svc);
        recs.upsert(&endpoints("db", &[], &["10.244.3.7"]));
        assert_eq!(
            data(&index, "db.default.svc.cluster.local.", RecordType::A),
            ["10.244.3.7"]
        );
    }

    #[test]
    fn hostname_and_subdomain_under_a_headless_service() {
        let (index, mut recs) = setup();
        let name = "web-0.nginx.default.svc.cluster.local.";
        recs.upsert(&pod("web-0", "10.244.1.9", "web-0", "nginx", true));
        // No such service yet.
        assert_eq!(data(&index, name, RecordType::A), ["NXDOMAIN"]);
        recs.upsert(&service("nginx", "None", &[]));
        assert_eq!(data(&index, name, RecordType::A), ["10.244.1.9"]);
        assert_eq!(
            data(&index, "9.1.244.10.in-addr.arpa.", RecordType::PTR),
            [name]
        );
        // A ClusterIP service of that name does not publish hostnames.
        recs.upsert(&service("nginx", "10.96.0.30", &[]));
        assert_eq!(data(&index, name, RecordType::A), ["NXDOMAIN"]);
        assert_eq!(
            data(&index, "9.1.244.10.in-addr.arpa.", RecordType::PTR),
            ["10-244-1-9.default.pod.cluster.local."]
        );
        recs.upsert(&service("nginx", "None", &[]));
        // Not ready: unpublished; ready again: back; new IP: moved.
        recs.upsert(&pod("web-0", "10.244.1.9", "web-0", "nginx", false));
        assert_eq!(data(&index, name, RecordType::A), ["NXDOMAIN"]);
        recs.upsert(&pod("web-0", "10.244.1.10", "web-0", "nginx", true));
        assert_eq!(data(&index, name, RecordType::A), ["10.244.1.10"]);
        // Moving the pod to another subdomain drops the old record.
        recs.upsert(&pod("web-0", "10.244.1.10", "web-0", "other", true));
        assert_eq!(data(&index, name, RecordType::A), ["NXDOMAIN"]);
        recs.remove(&service("nginx", "", &[]));
        assert_eq!(
            data(&index, "nginx.default.svc.cluster.local.", RecordType::A),
            ["NXDOMAIN"]
        );
    }

    #[test]
    fn pod_records_and_ptr() {
        let (index, mut recs) = setup();
        recs.upsert(&pod("p", "10.244.1.5", "", "", false));
        let name = "10-244-1-5.default.pod.cluster.local.";
        assert_eq!(data(&index, name, RecordType::A), ["10.244.1.5"]);
        assert_eq!(
            data(&index, "default.pod.cluster.local.", RecordType::A),
            ["NODATA"]
        );
        assert_eq!(
            data(&index, "5.1.244.10.in-addr.arpa.", RecordType::PTR),
            [name]
        );
        // Addresses that no pod has do not exist.
        assert_eq!(
            data(
                &index,
                "10-244-1-6.default.pod.cluster.local.",
                RecordType::A
            ),
            ["NXDOMAIN"]
        );
        // A finished pod loses its records.
        let mut done = pod("p", "10.244.1.5", "", "", false);
        if let Some(Body::Pod(p)) = &mut done.kind {
            if let Some(s) = &mut p.status {
                s.phase = "Succeeded".into();
            }
        }
        recs.upsert(&done);
        assert_eq!(data(&index, name, RecordType::A), ["NXDOMAIN"]);
        assert_eq!(
            data(&index, "default.pod.cluster.local.", RecordType::A),
            ["NXDOMAIN"]
        );
    }

    #[test]
    fn external_name_is_a_cname() {
        let (index, mut recs) = setup();
        let mut ext = service("ext", "", &[]);
        if let Some(Body::Service(s)) = &mut ext.kind {
            if let Some(spec) = &mut s.spec {
                spec.r#type = "ExternalName".into();
                spec.external_name = "Example.COM".into();
            }
        }
        recs.upsert(&ext);
        assert_eq!(
            data(&index, "ext.default.svc.cluster.local.", RecordType::A),
            ["example.com."]
        );
    }
}
