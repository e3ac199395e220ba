//! The in-memory DNS index: every name the server is authoritative for, with
//! its record sets ready to send.
//!
//! Objects do not write records directly: each *source* (the zone itself, one
//! Service with its Endpoints, one Pod) claims a list of entries, and
//! replacing a source's claims updates just the names it touched. Each name's
//! record sets are rebuilt from its claims when they change, so a query is one
//! hash lookup returning shared (`Arc`) record sets, never string formatting.
//!
//! Names with no records of their own but with names below them (`svc.cluster.
//! local.`, `<ns>.svc.cluster.local.`, `_tcp.<svc>...`) are empty
//! non-terminals: they exist, so they answer NODATA rather than NXDOMAIN.
//! Every node counts the names with claims below it to know that.

use crate::names::{self, ClusterDomain};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// The index as the server and the watches share it.
pub type SharedIndex = Arc<RwLock<NameIndex>>;

/// A namespaced object's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Who claimed an entry. A source's entries are always replaced together.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The zone's own records: SOA, NS, the fixed subtrees.
    Zone,
    /// A Service and its Endpoints.
    Service(ObjectKey),
    /// A Pod.
    Pod(ObjectKey),
}

/// One claim: `name` exists, and holds `record` if there is one.
///
/// When several sources put records of one type at one name, only those with
/// the lowest `rank` are served: a pod IP's PTR names the pod's hostname
/// record in preference to its `a-b-c-d.<ns>.pod` record.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: LowerName,
    pub record: Option<Record>,
    pub rank: u8,
}

impl Entry {
    /// An entry holding a record (owner name taken from the record).
    pub fn record(record: Record, rank: u8) -> Entry {
        Entry {
            name: LowerName::from(record.name.clone()),
            record: Some(record),
            rank,
        }
    }

    /// An entry that only makes `name` exist.
    pub fn exists(name: &Name) -> Entry {
        Entry {
            name: LowerName::from(name.clone()),
            record: None,
            rank: 0,
        }
    }
}

/// How the zone is set up.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    pub domain: ClusterDomain,
    pub ttl: u32,
    /// The DNS service's address, published as `ns.dns.<domain>`.
    pub nameserver_ip: Option<IpAddr>,
    /// Address ranges whose reverse names are ours: an unknown address in
    /// them is NXDOMAIN; reverse names outside them are forwarded.
    pub reverse_cidrs: Vec<IpNet>,
}

/// What the index says about a name and type.
#[derive(Clone, Debug)]
pub enum Answer {
    /// NOERROR with records (and glue for SRV and NS targets).
    Found {
        answers: Arc<[Record]>,
        additionals: Vec<Record>,
    },
    /// The name exists without records of that type.
    NoData { soa: Arc<[Record]> },
    /// The name does not exist.
    NxDomain { soa: Arc<[Record]> },
    /// The name is ours but the first list of objects has not arrived yet.
    NotReady,
    /// Not a name this server answers for: forward it.
    NotAuthoritative,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    Cluster,
    Reverse,
}

#[derive(Debug)]
struct Claim {
    source: Source,
    record: Option<Record>,
    rank: u8,
}

#[derive(Debug, Default)]
struct Node {
    claims: Vec<Claim>,
    rrsets: Vec<(RecordType, Arc<[Record]>)>,
    /// Names with claims strictly below this one.
    descendants: u32,
}

impl Node {
    fn rrset(&self, rtype: RecordType) -> Option<&Arc<[Record]>> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, rs)| rs)
    }

    /// Rebuilds the record sets from the claims: per type, the lowest rank
    /// wins; duplicates (two pods sharing a host-network IP) collapse.
    fn rebuild(&mut self) {
        let mut best: Vec<(RecordType, u8)> = Vec::new();
        for c in &self.claims {
            if let Some(r) = &c.record {
                let t = r.record_type();
                match best.iter_mut().find(|(bt, _)| *bt == t) {
                    Some((_, rank)) => *rank = (*rank).min(c.rank),
                    None => best.push((t, c.rank)),
                }
            }
        }
        best.sort_by_key(|(t, _)| u16::from(*t));
        self.rrsets = best
            .into_iter()
            .map(|(t, rank)| {
                let mut seen = HashSet::new();
                let records: Vec<Record> = self
                    .claims
                    .iter()
                    .filter(|c| c.rank == rank)
                    .filter_map(|c| c.record.as_ref())
                    .filter(|r| r.record_type() == t && seen.insert(&r.data))
                    .cloned()
                    .collect();
                (t, Arc::from(records))
            })
            .collect();
    }
}

/// Every name the server answers for.
pub struct NameIndex {
    config: ZoneConfig,
    cluster: LowerName,
    in_addr: LowerName,
    ip6: LowerName,
    soa: Arc<[Record]>,
    soa_in_addr: Arc<[Record]>,
    soa_ip6: Arc<[Record]>,
    nodes: HashMap<LowerName, Node>,
    sources: HashMap<Source, Vec<Entry>>,
    ready: bool,
    /// Bumped by every change: answers computed at one generation (the UDP
    /// path's packet cache) are valid until it moves.
    generation: u64,
}

/// How many CNAMEs inside the zone one answer follows.
const MAX_CNAME_CHAIN: usize = 8;

impl NameIndex {
    pub fn new(config: ZoneConfig) -> NameIndex {
        let apex = config.domain.apex().clone();
        let ns_name = ns_name(&config.domain);
        let soa_data = SOA::new(
            ns_name.clone(),
            apex.prepend_label("hostmaster")
                .unwrap_or_else(|_| apex.clone()),
            // Nothing transfers this zone, so the serial signals nothing.
            1,
            7200,
            1800,
            86400,
            config.ttl,
        );
        let soa_at = |owner: Name| -> Arc<[Record]> {
            Arc::from(vec![Record::from_rdata(
                owner,
                config.ttl,
                RData::SOA(soa_data.clone()),
            )])
        };
        let mut index = NameIndex {
            cluster: LowerName::from(apex.clone()),
            in_addr: LowerName::from(names::in_addr_arpa()),
            ip6: LowerName::from(names::ip6_arpa()),
            soa: soa_at(apex.clone()),
            soa_in_addr: soa_at(names::in_addr_arpa()),
            soa_ip6: soa_at(names::ip6_arpa()),
            nodes: HashMap::new(),
            sources: HashMap::new(),
            ready: false,
            generation: 0,
            config,
        };
        let mut zone = vec![
            Entry::record(index.soa[0].clone(), 0),
            Entry::record(
                Record::from_rdata(
                    apex.clone(),
                    index.config.ttl,
                    RData::NS(NS(ns_name.clone())),
                ),
                0,
            ),
            Entry::exists(index.config.domain.services()),
            Entry::exists(index.config.domain.pods()),
        ];
        if let Some(ip) = index.config.nameserver_ip {
            zone.push(Entry::record(address(ns_name, index.config.ttl, ip), 0));
        }
        index.set(Source::Zone, zone);
        index
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// Whether every watched kind has been listed once.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
        self.generation += 1;
    }

    /// Changes so far (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Names held (including empty non-terminals).
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sources holding claims.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Replaces everything `source` claims. Returns whether anything changed.
    pub fn set(&mut self, source: Source, entries: Vec<Entry>) -> bool {
        self.generation += 1;
        let old = self.sources.remove(&source).unwrap_or_default();
        if old == entries {
            if !old.is_empty() {
                self.sources.insert(source, old);
            }
            return false;
        }
        let mut touched: Vec<LowerName> = Vec::with_capacity(old.len() + entries.len());
        let mut seen: HashSet<&LowerName> = HashSet::new();
        for e in old.iter().chain(entries.iter()) {
            if seen.insert(&e.name) {
                touched.push(e.name.clone());
            }
        }
        let had: Vec<bool> = touched
            .iter()
            .map(|n| {
                self.nodes
                    .get(n)
                    .is_some_and(|node| !node.claims.is_empty())
            })
            .collect();
        for e in &old {
            if let Some(node) = self.nodes.get_mut(&e.name) {
                node.claims.retain(|c| c.source != source);
            }
        }
        for e in &entries {
            self.nodes
                .entry(e.name.clone())
                .or_default()
                .claims
                .push(Claim {
                    source: source.clone(),
                    record: e.record.clone(),
                    rank: e.rank,
                });
        }
        for (name, had) in touched.iter().zip(had) {
            let has = match self.nodes.get_mut(name) {
                Some(node) => {
                    node.rebuild();
                    !node.claims.is_empty()
                }
                None => false,
            };
            match (had, has) {
                (false, true) => self.adjust_ancestors(name, true),
                (true, false) => {
                    self.adjust_ancestors(name, false);
                    self.prune(name);
                }
                (false, false) => self.prune(name),
                (true, true) => {}
            }
        }
        if !entries.is_empty() {
            self.sources.insert(source, entries);
        }
        true
    }

    /// Drops a node that has neither claims nor names below it.
    fn prune(&mut self, name: &LowerName) {
        if self
            .nodes
            .get(name)
            .is_some_and(|n| n.claims.is_empty() && n.descendants == 0)
        {
            self.nodes.remove(name);
        }
    }

    /// Counts a name that gained (or lost) its claims in every ancestor up to
    /// its zone's apex, creating (or dropping) empty non-terminals.
    fn adjust_ancestors(&mut self, name: &LowerName, added: bool) {
        // The lowest ancestor counted: the cluster apex (always present, so
        // counting it is harmless), or the label below `in-addr.arpa.` /
        // `ip6.arpa.` (both two labels), which are not ours.
        let floor = match self.zone_of(name) {
            Some(Zone::Cluster) => self.cluster.num_labels(),
            Some(Zone::Reverse) => self.in_addr.num_labels() + 1,
            None => return,
        };
        let mut cur = name.base_name();
        while cur.num_labels() >= floor {
            if added {
                self.nodes.entry(cur.clone()).or_default().descendants += 1;
            } else if let Some(node) = self.nodes.get_mut(&cur) {
                node.descendants = node.descendants.saturating_sub(1);
                self.prune(&cur);
            }
            cur = cur.base_name();
        }
    }

    fn zone_of(&self, name: &LowerName) -> Option<Zone> {
        if self.cluster.zone_of(name) {
            Some(Zone::Cluster)
        } else if self.in_addr.zone_of(name) || self.ip6.zone_of(name) {
            Some(Zone::Reverse)
        } else {
            None
        }
    }

    fn reverse_soa(&self, name: &LowerName) -> Arc<[Record]> {
        if self.in_addr.zone_of(name) {
            self.soa_in_addr.clone()
        } else {
            self.soa_ip6.clone()
        }
    }

    /// The answer for one question. Class and opcode checks are the
    /// handler's; every type is answered here (unknown types are NODATA at
    /// names that exist).
    pub fn lookup(&self, name: &LowerName, qtype: RecordType) -> Answer {
        let Some(zone) = self.zone_of(name) else {
            return Answer::NotAuthoritative;
        };
        let answer = match (self.nodes.get(name), zone) {
            (Some(node), Zone::Cluster) => self.answer_at(node, qtype, || self.soa.clone()),
            (Some(node), Zone::Reverse) => self.answer_at(node, qtype, || self.reverse_soa(name)),
            (None, Zone::Cluster) => Answer::NxDomain {
                soa: self.soa.clone(),
            },
            (None, Zone::Reverse) => match names::parse_reverse(name) {
                Some(ip) if self.config.reverse_cidrs.iter().any(|c| c.contains(&ip)) => {
                    Answer::NxDomain {
                        soa: self.reverse_soa(name),
                    }
                }
                _ => Answer::NotAuthoritative,
            },
        };
        match answer {
            Answer::NotAuthoritative => answer,
            _ if !self.ready => Answer::NotReady,
            _ => answer,
        }
    }

    fn answer_at(&self, node: &Node, qtype: RecordType, soa: impl Fn() -> Arc<[Record]>) -> Answer {
        if qtype == RecordType::ANY {
            let all: Vec<Record> = node
                .rrsets
                .iter()
                .flat_map(|(_, rs)| rs.iter().cloned())
                .collect();
            if all.is_empty() {
                return Answer::NoData { soa: soa() };
            }
            return Answer::Found {
                answers: Arc::from(all),
                additionals: Vec::new(),
            };
        }
        if let Some(rs) = node.rrset(qtype) {
            return Answer::Found {
                additionals: self.glue(rs),
                answers: rs.clone(),
            };
        }
        if let Some(cname) = node.rrset(RecordType::CNAME) {
            return Answer::Found {
                answers: self.follow_cname(cname, qtype),
                additionals: Vec::new(),
            };
        }
        Answer::NoData { soa: soa() }
    }

    /// A CNAME answer followed through names inside the index.
    fn follow_cname(&self, cname: &Arc<[Record]>, qtype: RecordType) -> Arc<[Record]> {
        let mut out: Vec<Record> = cname.to_vec();
        let mut cur = cname.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let Some(RData::CNAME(target)) = cur.first().map(|r| &r.data) else {
                break;
            };
            let Some(node) = self.nodes.get(&LowerName::from(target.0.clone())) else {
                break;
            };
            if let Some(rs) = node.rrset(qtype) {
                out.extend(rs.iter().cloned());
                break;
            }
            match node.rrset(RecordType::CNAME) {
                Some(next) => {
                    out.extend(next.iter().cloned());
                    cur = next.clone();
                }
                None => break,
            }
        }
        if out.len() == cname.len() {
            return cname.clone();
        }
        Arc::from(out)
    }

    /// Addresses of SRV and NS targets that the index holds.
    fn glue(&self, rs: &Arc<[Record]>) -> Vec<Record> {
        let mut out = Vec::new();
        for r in rs.iter() {
            let target = match &r.data {
                RData::SRV(srv) => &srv.target,
                RData::NS(ns) => &ns.0,
                _ => return out,
            };
            if let Some(node) = self.nodes.get(&LowerName::from(target.clone())) {
                for t in [RecordType::A, RecordType::AAAA] {
                    if let Some(addrs) = node.rrset(t) {
                        out.extend(addrs.iter().cloned());
                    }
                }
            }
        }
        out
    }
}

/// `ns.dns.<domain>`: the name server's own name.
pub fn ns_name(domain: &ClusterDomain) -> Name {
    domain
        .apex()
        .prepend_label("dns")
        .and_then(|n| n.prepend_label("ns"))
        .unwrap_or_else(|_| domain.apex().clone())
}

/// An A or AAAA record, by the address's family.
pub fn address(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{CNAME, PTR};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn lower(s: &str) -> LowerName {
        LowerName::from(name(s))
    }

    fn index() -> NameIndex {
        let mut i = NameIndex::new(ZoneConfig {
            domain: ClusterDomain::new("cluster.local").expect("domain"),
            ttl: 5,
            nameserver_ip: Some("10.96.0.10".parse().expect("ip")),
            reverse_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        });
        i.set_ready(true);
        i
    }

    fn a(owner: &str, ip: &str) -> Entry {
        Entry::record(address(name(owner), 5, ip.parse().expect("ip")), 0)
    }

    fn svc(name: &str) -> Source {
        Source::Service(ObjectKey::new("default", name))
    }

    fn ips(answer: &Answer) -> Vec<String> {
        match answer {
            Answer::Found { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn apex_has_soa_and_ns_with_glue() {
        let i = index();
        let soa = i.lookup(&lower("cluster.local."), RecordType::SOA);
        assert!(matches!(soa, Answer::Found { ref answers, .. } if answers.len() == 1));
        match i.lookup(&lower("CLUSTER.local."), RecordType::NS) {
            Answer::Found {
                answers,
                additionals,
            } => {
                assert_eq!(answers[0].data.to_string(), "ns.dns.cluster.local.");
                assert_eq!(additionals[0].data.to_string(), "10.96.0.10");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            i.lookup(&lower("cluster.local."), RecordType::A),
            Answer::NoData { .. }
        ));
    }

    #[test]
    fn nxdomain_versus_nodata_and_empty_non_terminals() {
        let mut i = index();
        i.set(
            svc("web"),
            vec![a("web.default.svc.cluster.local.", "10.96.0.5")],
        );
        assert_eq!(
            ips(&i.lookup(&lower("web.default.svc.cluster.local."), RecordType::A)),
            ["10.96.0.5"]
        );
        for ent in [
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "pod.cluster.local.",
        ] {
            match i.lookup(&lower(ent), RecordType::A) {
                Answer::NoData { soa } => assert_eq!(soa[0].record_type(), RecordType::SOA),
                other => panic!("{ent}: {other:?}"),
            }
        }
        assert!(matches!(
            i.lookup(&lower("web.default.svc.cluster.local."), RecordType::TXT),
            Answer::NoData { .. }
        ));
        assert!(matches!(
            i.lookup(
                &lower("web.default.svc.cluster.local."),
                RecordType::Unknown(65000)
            ),
            Answer::NoData { .. }
        ));
        for nx in [
            "nope.default.svc.cluster.local.",
            "other.svc.cluster.local.",
            "x.web.default.svc.cluster.local.",
            "foo.cluster.local.",
        ] {
            assert!(
                matches!(i.lookup(&lower(nx), RecordType::A), Answer::NxDomain { .. }),
                "{nx}"
            );
        }
        assert!(matches!(
            i.lookup(&lower("example.com."), RecordType::A),
            Answer::NotAuthoritative
        ));
    }

    #[test]
    fn removal_drops_names_and_their_empty_parents() {
        let mut i = index();
        let base = i.name_count();
        i.set(
            svc("web"),
            vec![
                a("web.team.svc.cluster.local.", "10.96.0.5"),
                a("x._http._tcp.web.team.svc.cluster.local.", "10.96.0.6"),
            ],
        );
        assert!(matches!(
            i.lookup(&lower("_tcp.web.team.svc.cluster.local."), RecordType::A),
            Answer::NoData { .. }
        ));
        assert!(!i.set(
            svc("web"),
            vec![
                a("web.team.svc.cluster.local.", "10.96.0.5"),
                a("x._http._tcp.web.team.svc.cluster.local.", "10.96.0.6"),
            ],
        ));
        // Dropping the deep name removes its empty parents but keeps the rest.
        i.set(
            svc("web"),
            vec![a("web.team.svc.cluster.local.", "10.96.0.7")],
        );
        assert!(matches!(
            i.lookup(&lower("_tcp.web.team.svc.cluster.local."), RecordType::A),
            Answer::NxDomain { .. }
        ));
        assert_eq!(
            ips(&i.lookup(&lower("web.team.svc.cluster.local."), RecordType::A)),
            ["10.96.0.7"]
        );
        i.set(svc("web"), vec![]);
        assert!(matches!(
            i.lookup(&lower("team.svc.cluster.local."), RecordType::A),
            Answer::NxDomain { .. }
        ));
        assert!(matches!(
            i.lookup(&lower("svc.cluster.local."), RecordType::A),
            Answer::NoData { .. }
        ));
        assert_eq!(i.name_count(), base);
        assert_eq!(i.source_count(), 1);
    }

    #[test]
    fn shared_names_keep_other_sources_claims() {
        let mut i = index();
        let pod = |n: &str| Source::Pod(ObjectKey::new("default", n));
        // Two host-network pods share an address: one record, held by both.
        i.set(
            pod("a"),
            vec![a("10-0-0-1.default.pod.cluster.local.", "10.0.0.1")],
        );
        i.set(
            pod("b"),
            vec![a("10-0-0-1.default.pod.cluster.local.", "10.0.0.1")],
        );
        let q = lower("10-0-0-1.default.pod.cluster.local.");
        assert_eq!(ips(&i.lookup(&q, RecordType::A)), ["10.0.0.1"]);
        i.set(pod("a"), vec![]);
        assert_eq!(ips(&i.lookup(&q, RecordType::A)), ["10.0.0.1"]);
        i.set(pod("b"), vec![]);
        assert!(matches!(
            i.lookup(&q, RecordType::A),
            Answer::NxDomain { .. }
        ));
    }

    #[test]
    fn lowest_rank_wins_per_type() {
        let mut i = index();
        let rev = names::reverse("10.96.0.5".parse().expect("ip"));
        let ptr = |target: &str, rank| {
            Entry::record(
                Record::from_rdata(rev.clone(), 5, RData::PTR(PTR(name(target)))),
                rank,
            )
        };
        i.set(
            svc("a"),
            vec![ptr("pod-name.default.pod.cluster.local.", 3)],
        );
        i.set(svc("b"), vec![ptr("web.default.svc.cluster.local.", 0)]);
        let q = LowerName::from(rev.clone());
        assert_eq!(
            ips(&i.lookup(&q, RecordType::PTR)),
            ["web.default.svc.cluster.local."]
        );
        i.set(svc("b"), vec![]);
        assert_eq!(
            ips(&i.lookup(&q, RecordType::PTR)),
            ["pod-name.default.pod.cluster.local."]
        );
    }

    #[test]
    fn reverse_names_inside_and_outside_the_cidrs() {
        let mut i = index();
        let rev = names::reverse("10.96.0.5".parse().expect("ip"));
        i.set(
            svc("web"),
            vec![Entry::record(
                Record::from_rdata(
                    rev.clone(),
                    5,
                    RData::PTR(PTR(name("web.default.svc.cluster.local."))),
                ),
                0,
            )],
        );
        assert_eq!(
            ips(&i.lookup(&LowerName::from(rev.clone()), RecordType::PTR)),
            ["web.default.svc.cluster.local."]
        );
        match i.lookup(&lower("6.0.96.10.in-addr.arpa."), RecordType::PTR) {
            Answer::NxDomain { soa } => assert_eq!(soa[0].name.to_string(), "in-addr.arpa."),
            other => panic!("{other:?}"),
        }
        // An existing reverse parent is an empty non-terminal.
        assert!(matches!(
            i.lookup(&lower("0.96.10.in-addr.arpa."), RecordType::PTR),
            Answer::NoData { .. }
        ));
        // Outside the CIDRs, unknown: not ours.
        assert!(matches!(
            i.lookup(&lower("1.1.168.192.in-addr.arpa."), RecordType::PTR),
            Answer::NotAuthoritative
        ));
        assert!(matches!(
            i.lookup(&lower("in-addr.arpa."), RecordType::SOA),
            Answer::NotAuthoritative
        ));
        i.set(svc("web"), vec![]);
        assert!(matches!(
            i.lookup(&lower("0.96.10.in-addr.arpa."), RecordType::PTR),
            Answer::NotAuthoritative
        ));
    }

    #[test]
    fn cname_is_followed_inside_the_zone_and_any_returns_everything() {
        let mut i = index();
        let cname = |owner: &str, target: &str| {
            Entry::record(
                Record::from_rdata(name(owner), 5, RData::CNAME(CNAME(name(target)))),
                0,
            )
        };
        i.set(
            svc("ext"),
            vec![cname(
                "ext.default.svc.cluster.local.",
                "web.default.svc.cluster.local.",
            )],
        );
        i.set(
            svc("web"),
            vec![a("web.default.svc.cluster.local.", "10.96.0.5")],
        );
        assert_eq!(
            ips(&i.lookup(&lower("ext.default.svc.cluster.local."), RecordType::A)),
            ["web.default.svc.cluster.local.", "10.96.0.5"]
        );
        assert_eq!(
            ips(&i.lookup(&lower("ext.default.svc.cluster.local."), RecordType::CNAME)),
            ["web.default.svc.cluster.local."]
        );
        let any = ips(&i.lookup(&lower("cluster.local."), RecordType::ANY));
        assert_eq!(any.len(), 2, "{any:?}");
    }

    #[test]
    fn not_ready_until_listed() {
        let mut i = index();
        i.set_ready(false);
        assert!(matches!(
            i.lookup(&lower("web.default.svc.cluster.local."), RecordType::A),
            Answer::NotReady
        ));
        assert!(matches!(
            i.lookup(&lower("example.com."), RecordType::A),
            Answer::NotAuthoritative
        ));
    }
}
