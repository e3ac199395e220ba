//! LoadBalancer address announcement (MetalLB's layer-2 mode, the node
//! half). The control plane gives each LoadBalancer Service an address of
//! its pool (`status.loadBalancer.ingress`); here exactly one Ready node
//! announces each address:
//!
//! - **Who.** The Ready nodes are ordered by a hash of the Service's
//!   `namespace/name` with each node's name (rendezvous hashing, ties by
//!   name): the first takes a free address at once, the k-th only after k
//!   lease durations without anyone taking it (its elders have no running
//!   kube-proxy). The holder is recorded in a Lease `kube-system/lb-<ip>`
//!   (`holderIdentity`: the node), renewed every third of
//!   `--lb-lease-duration`.
//! - **Takeover.** A lease counts as lapsed when it has not changed for a
//!   lease duration by this node's clock (as Kubernetes' leader election
//!   judges, so clocks need not agree), or when its holder is no longer a
//!   Ready node. Then the order is taken again without the old holder, and
//!   the first takes it over (an update with the lease's resourceVersion:
//!   two nodes cannot both win). Failover therefore takes about one lease
//!   duration after the holder stops renewing.
//! - **Announcing.** The holder adds the address as a /32 to its node
//!   interface (the one holding the Node's InternalIP, labelled
//!   `<iface>:lb`) so the kernel answers ARP for it, sends a gratuitous ARP
//!   (`arping -U`, iputils' or busybox's, when installed) so neighbours
//!   drop the old holder's MAC at once, and the proxier listens on
//!   ingress-IP:port, forwarding to the Service's ready endpoints like a
//!   ClusterIP. A node that loses or gives up a lease stops listening and
//!   removes the address; a node whose own Node is not Ready gives its
//!   leases up. The holder deletes the Lease once no Service has the
//!   address.
//!
//! Decisions are pure functions ([`rank`], [`judge`]); the loop polls
//! Services, Nodes and Leases every renew period.

use chrono::SecondsFormat;
use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, DeleteRequest, Lease, LeaseSpec, ListRequest, Node, ObjectMeta,
    Preconditions,
};
use rkube_api::Object;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const LEASE_NAMESPACE: &str = "kube-system";

pub fn lease_name(ip: Ipv4Addr) -> String {
    format!("lb-{ip}")
}

/// FNV-1a, 64 bits: stable across builds and machines (std's hasher is not
/// promised to be).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The order in which `nodes` should announce Service `service`
/// (`namespace/name`): by hash of the pair, ties by name.
pub fn rank(service: &str, nodes: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<(u64, &String)> = nodes.iter().map(|n| (fnv1a(&[service, n]), n)).collect();
    v.sort();
    v.into_iter().map(|(_, n)| n.clone()).collect()
}

/// What this node knows of one address's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// `None`: no Lease.
    pub holder: Option<String>,
    /// How long the lease (or its absence) has looked like this here.
    pub unchanged_for: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ours: renew it.
    Renew,
    /// Ours, but this node is not Ready: give it up.
    GiveUp,
    /// Take it (free or lapsed, and it is this node's turn).
    Take,
    /// Someone else's, or not our turn yet.
    Leave,
}

/// Decides what `me` does about the lease of an address of `service`.
pub fn judge(
    me: &str,
    service: &str,
    ready: &BTreeSet<String>,
    lease: &LeaseView,
    duration: Duration,
) -> Verdict {
    let me_ready = ready.contains(me);
    match lease.holder.as_deref() {
        Some(h) if h == me => {
            return if me_ready {
                Verdict::Renew
            } else {
                Verdict::GiveUp
            };
        }
        _ if !me_ready => return Verdict::Leave,
        Some(h) if ready.contains(h) && lease.unchanged_for < duration => return Verdict::Leave,
        _ => {}
    }
    // Free, or its holder lapsed: the order without the old holder.
    let (candidates, free_for) = match lease.holder.as_deref() {
        None => (ready.clone(), lease.unchanged_for),
        Some(h) => {
            let mut c = ready.clone();
            c.remove(h);
            let lapsed_for = if ready.contains(h) {
                lease.unchanged_for.saturating_sub(duration)
            } else {
                lease.unchanged_for
            };
            (c, lapsed_for)
        }
    };
    let order = rank(service, &candidates);
    match order.iter().position(|n| n == me) {
        Some(k) if free_for >= duration * k as u32 => Verdict::Take,
        _ => Verdict::Leave,
    }
}

#[derive(Clone, Debug)]
pub struct AnnounceConfig {
    pub node: String,
    pub lease_duration: Duration,
    /// The interface to put addresses on; `None`: the one holding the
    /// Node's InternalIP.
    pub interface: Option<String>,
}

/// What the loop remembers between polls.
struct Observed {
    /// Per address: the Lease's resourceVersion ("" when absent), and since
    /// when it has been that.
    seen: HashMap<Ipv4Addr, (String, Instant)>,
    /// Addresses on the node interface, with the interface.
    on_iface: BTreeMap<Ipv4Addr, String>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

fn internal_ip(n: &Node) -> Option<Ipv4Addr> {
    n.status.as_ref().and_then(|s| {
        s.addresses
            .iter()
            .find(|a| a.r#type == "InternalIP")
            .and_then(|a| a.address.parse().ok())
    })
}

/// Runs until `shutdown`; publishes the addresses this node announces.
pub async fn run(
    client: Client,
    cfg: AnnounceConfig,
    tx: watch::Sender<BTreeSet<Ipv4Addr>>,
    shutdown: CancellationToken,
) {
    let period = (cfg.lease_duration / 3).max(Duration::from_millis(100));
    let arping = find_arping().await;
    match &arping {
        Some(a) => tracing::info!(tool = a.join(" "), "gratuitous ARP on takeover"),
        None => tracing::info!(
            "no arping (iputils-arping or busybox) found: no gratuitous ARP on takeover; \
             neighbours relearn the address when their ARP entries expire"
        ),
    }
    let mut obs = Observed {
        seen: HashMap::new(),
        on_iface: BTreeMap::new(),
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flushed = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        match pass(&client, &cfg, &mut obs, arping.as_deref(), &mut flushed).await {
            Ok(held) => {
                tx.send_if_modified(|cur| {
                    if *cur != held {
                        *cur = held.clone();
                        true
                    } else {
                        false
                    }
                });
                // Listeners first, then the addresses go.
                let gone: Vec<(Ipv4Addr, String)> = obs
                    .on_iface
                    .iter()
                    .filter(|(ip, _)| !held.contains(ip))
                    .map(|(ip, i)| (*ip, i.clone()))
                    .collect();
                for (ip, iface) in gone {
                    match ip_cmd(&["addr", "del", &format!("{ip}/32"), "dev", &iface]).await {
                        Ok(_) => {
                            tracing::info!(%ip, interface = %iface, "stopped announcing");
                            obs.on_iface.remove(&ip);
                        }
                        Err(e) if e.contains("Cannot assign") => {
                            obs.on_iface.remove(&ip);
                        }
                        Err(e) => tracing::warn!(%ip, error = %e, "cannot remove the address"),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "announce pass failed; next period"),
        }
    }
}

/// One poll: leases taken, renewed or given up; addresses added. Returns
/// the addresses this node holds (and has on its interface).
async fn pass(
    client: &Client,
    cfg: &AnnounceConfig,
    obs: &mut Observed,
    arping: Option<&[String]>,
    flushed: &mut bool,
) -> Result<BTreeSet<Ipv4Addr>, String> {
    let list = |kind: &str, ns: &str| ListRequest {
        kind: kind.into(),
        namespace: ns.into(),
        ..Default::default()
    };
    let services = client
        .list(list("Service", ""))
        .await
        .map_err(|e| e.message().to_string())?;
    let nodes = client
        .list(list("Node", ""))
        .await
        .map_err(|e| e.message().to_string())?;
    let leases = client
        .list(list("Lease", LEASE_NAMESPACE))
        .await
        .map_err(|e| e.message().to_string())?;
    // Address -> Service key.
    let mut wanted: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for o in &services.items {
        if let Some(Body::Service(s)) = &o.kind {
            if s.spec
                .as_ref()
                .is_some_and(|sp| sp.r#type == "LoadBalancer")
            {
                let key = format!("{}/{}", o.namespace(), o.name());
                for ip in crate::table::ingress_ips(s) {
                    wanted.entry(ip).or_insert(key.clone());
                }
            }
        }
    }
    let mut ready = BTreeSet::new();
    let mut my_ip = None;
    for o in &nodes.items {
        if let Some(Body::Node(n)) = &o.kind {
            if node_ready(n) {
                ready.insert(o.name().to_string());
            }
            if o.name() == cfg.node {
                my_ip = internal_ip(n);
            }
        }
    }
    let iface = match &cfg.interface {
        Some(i) => Some(i.clone()),
        None => match my_ip {
            Some(ip) => interface_of(ip).await,
            None => None,
        },
    };
    if let (Some(i), false) = (&iface, *flushed) {
        // Addresses an earlier run left (it may have lost its leases since).
        flush_label(i).await;
        *flushed = true;
    }
    let mut current: HashMap<Ipv4Addr, Lease> = HashMap::new();
    for o in leases.items {
        if let Some(Body::Lease(l)) = o.kind {
            let name = l
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if let Some(ip) = name.strip_prefix("lb-").and_then(|s| s.parse().ok()) {
                current.insert(ip, l);
            }
        }
    }
    let now = Instant::now();
    let mut held = BTreeSet::new();
    // Leases of addresses no Service has: the holder deletes its own.
    for (ip, l) in &current {
        if !wanted.contains_key(ip) && holder(l) == Some(cfg.node.as_str()) {
            let _ = delete_lease(client, l).await;
        }
    }
    obs.seen.retain(|ip, _| wanted.contains_key(ip));
    for (ip, service) in &wanted {
        let lease = current.get(ip);
        let rv = lease.map(resource_version).unwrap_or_default();
        let since = match obs.seen.get(ip) {
            Some((r, t)) if *r == rv => *t,
            _ => {
                obs.seen.insert(*ip, (rv.clone(), now));
                now
            }
        };
        let view = LeaseView {
            holder: lease.and_then(holder).map(str::to_string),
            unchanged_for: now.saturating_duration_since(since),
        };
        let verdict = judge(&cfg.node, service, &ready, &view, cfg.lease_duration);
        let ok = match verdict {
            Verdict::Leave => false,
            Verdict::GiveUp => {
                if let Some(l) = lease {
                    tracing::info!(%ip, service, "this node is not Ready: giving the address up");
                    let _ = delete_lease(client, l).await;
                }
                false
            }
            Verdict::Renew | Verdict::Take => {
                let took = verdict == Verdict::Take;
                match write_lease(client, *ip, lease, &cfg.node, cfg.lease_duration).await {
                    Ok(new_rv) => {
                        obs.seen.insert(*ip, (new_rv, Instant::now()));
                        if took {
                            tracing::info!(%ip, service, previous = ?view.holder, "took the load-balancer lease");
                        }
                        true
                    }
                    Err(e) => {
                        tracing::debug!(%ip, error = %e, "lease write lost");
                        false
                    }
                }
            }
        };
        if !ok {
            continue;
        }
        let Some(iface) = iface.as_deref() else {
            tracing::warn!(%ip, "holding the lease but no node interface known yet (no InternalIP?)");
            continue;
        };
        if obs.on_iface.get(ip).map(String::as_str) != Some(iface) {
            let label = lb_label(iface);
            let cidr = format!("{ip}/32");
            let mut args = vec!["addr", "replace", cidr.as_str(), "dev", iface];
            if let Some(l) = label.as_deref() {
                args.extend(["label", l]);
            }
            if let Err(e) = ip_cmd(&args).await {
                tracing::warn!(%ip, interface = iface, error = %e, "cannot add the load-balancer address");
                continue;
            }
            obs.on_iface.insert(*ip, iface.to_string());
            tracing::info!(%ip, interface = iface, service, "announcing");
            if let Some(tool) = arping {
                gratuitous_arp(tool, iface, *ip);
            }
        }
        held.insert(*ip);
    }
    Ok(held)
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec
        .as_ref()
        .map(|s| s.holder_identity.as_str())
        .filter(|h| !h.is_empty())
}

fn resource_version(l: &Lease) -> String {
    l.metadata
        .as_ref()
        .map(|m| m.resource_version.clone())
        .unwrap_or_default()
}

/// Creates, renews or takes over the lease; returns its new resourceVersion.
async fn write_lease(
    client: &Client,
    ip: Ipv4Addr,
    cur: Option<&Lease>,
    me: &str,
    duration: Duration,
) -> Result<String, String> {
    let now = now_rfc3339();
    let secs = duration.as_secs().max(1) as i32;
    let obj = match cur {
        None => Object::from_body(Body::Lease(Lease {
            metadata: Some(ObjectMeta {
                name: lease_name(ip),
                namespace: LEASE_NAMESPACE.into(),
                ..Default::default()
            }),
            spec: Some(LeaseSpec {
                holder_identity: me.into(),
                lease_duration_seconds: Some(secs),
                acquire_time: now.clone(),
                renew_time: now,
                lease_transitions: Some(0),
            }),
            ..Default::default()
        })),
        Some(l) => {
            let mut l = l.clone();
            let spec = l.spec.get_or_insert_with(Default::default);
            if spec.holder_identity != me {
                spec.holder_identity = me.into();
                spec.acquire_time = now.clone();
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(secs);
            spec.renew_time = now;
            Object::from_body(Body::Lease(l))
        }
    };
    let r = match cur {
        None => client.create(obj).await,
        Some(_) => client.update(obj).await,
    };
    r.map(|o| o.resource_version().to_string())
        .map_err(|e| e.message().to_string())
}

async fn delete_lease(client: &Client, l: &Lease) -> Result<(), String> {
    let meta = l.metadata.clone().unwrap_or_default();
    client
        .delete(DeleteRequest {
            kind: "Lease".into(),
            namespace: LEASE_NAMESPACE.into(),
            name: meta.name.clone(),
            preconditions: Some(Preconditions {
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
            }),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| e.message().to_string())
}

/// The label marking addresses this module added (`<iface>:lb`), when it
/// fits the kernel's 15 characters.
fn lb_label(iface: &str) -> Option<String> {
    let l = format!("{iface}:lb");
    (l.len() <= 15).then_some(l)
}

/// Removes addresses labelled as ours (left by an earlier run).
async fn flush_label(iface: &str) {
    let Some(label) = lb_label(iface) else { return };
    if let Ok(out) = ip_cmd(&["-o", "-4", "addr", "show", "dev", iface]).await {
        for line in out
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == label))
        {
            let mut words = line.split_whitespace();
            if words.any(|w| w == "inet") {
                if let Some(cidr) = words.next() {
                    tracing::info!(
                        address = cidr,
                        interface = iface,
                        "removing a load-balancer address left by an earlier run"
                    );
                    let _ = ip_cmd(&["addr", "del", cidr, "dev", iface]).await;
                }
            }
        }
    }
}

/// The interface holding `ip`.
async fn interface_of(ip: Ipv4Addr) -> Option<String> {
    let out = ip_cmd(&["-o", "-4", "addr", "show"]).await.ok()?;
    parse_interface_of(&out, ip)
}

fn parse_interface_of(out: &str, ip: Ipv4Addr) -> Option<String> {
    out.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "inet")?;
        let addr: Ipv4Addr = words.get(i + 1)?.split('/').next()?.parse().ok()?;
        (addr == ip).then(|| words.get(1).map(|n| n.trim_end_matches(':').to_string()))?
    })
}

async fn ip_cmd(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `arping` (iputils or busybox's applet), else `busybox arping`.
async fn find_arping() -> Option<Vec<String>> {
    let works = |prog: &'static str, args: &'static [&'static str]| async move {
        Command::new(prog)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok()
    };
    if works("arping", &["-V"]).await || works("arping", &["--help"]).await {
        return Some(vec!["arping".into()]);
    }
    for bb in ["busybox", "/bin/busybox", "/usr/bin/busybox"] {
        let ok = Command::new(bb)
            .args(["arping", "--help"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("arping"));
        if ok {
            return Some(vec![bb.into(), "arping".into()]);
        }
    }
    None
}

/// Sends unsolicited ARP for `ip` on `iface` in the background.
fn gratuitous_arp(tool: &[String], iface: &str, ip: Ipv4Addr) {
    let mut c = Command::new(&tool[0]);
    c.args(&tool[1..])
        .args(["-U", "-c", "2", "-I", iface, &ip.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.status()).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    const D: Duration = Duration::from_secs(4);

    fn view(holder: Option<&str>, secs: u64) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_string),
            unchanged_for: Duration::from_secs(secs),
        }
    }

    #[test]
    fn rank_is_deterministic_and_spreads() {
        let all = nodes(&["wn1", "wn2", "wn3"]);
        assert_eq!(rank("default/a", &all), rank("default/a", &all));
        assert_eq!(rank("default/a", &all).len(), 3);
        let firsts: BTreeSet<String> = (0..40)
            .map(|i| rank(&format!("default/s{i}"), &all)[0].clone())
            .collect();
        assert_eq!(firsts.len(), 3, "every node announces something");
        // Removing a node that is not first keeps the first.
        let order = rank("default/a", &all);
        let mut fewer = all.clone();
        fewer.remove(&order[2]);
        assert_eq!(rank("default/a", &fewer)[0], order[0]);
    }

    #[test]
    fn the_first_takes_a_free_address_the_others_wait_their_turn() {
        let all = nodes(&["wn1", "wn2", "wn3"]);
        let order = rank("default/web", &all);
        let free = view(None, 0);
        assert_eq!(
            judge(&order[0], "default/web", &all, &free, D),
            Verdict::Take
        );
        assert_eq!(
            judge(&order[1], "default/web", &all, &free, D),
            Verdict::Leave
        );
        // The first never showed up: the second after one duration.
        let still_free = view(None, 4);
        assert_eq!(
            judge(&order[1], "default/web", &all, &still_free, D),
            Verdict::Take
        );
        assert_eq!(
            judge(&order[2], "default/web", &all, &still_free, D),
            Verdict::Leave
        );
    }

    #[test]
    fn a_lapsed_holder_is_replaced_by_the_next() {
        let all = nodes(&["wn1", "wn2", "wn3"]);
        let order = rank("default/web", &all);
        let h = order[0].as_str();
        let fresh = view(Some(h), 1);
        assert_eq!(judge(h, "default/web", &all, &fresh, D), Verdict::Renew);
        for n in &order[1..] {
            assert_eq!(judge(n, "default/web", &all, &fresh, D), Verdict::Leave);
        }
        let lapsed = view(Some(h), 4);
        assert_eq!(
            judge(&order[1], "default/web", &all, &lapsed, D),
            Verdict::Take
        );
        assert_eq!(
            judge(&order[2], "default/web", &all, &lapsed, D),
            Verdict::Leave
        );
        // Its node NotReady: at once, even if the lease looks fresh.
        let mut without = all.clone();
        without.remove(h);
        assert_eq!(
            judge(&order[1], "default/web", &without, &fresh, D),
            Verdict::Take
        );
        // A holder whose node is NotReady gives up.
        assert_eq!(
            judge(h, "default/web", &without, &fresh, D),
            Verdict::GiveUp
        );
        // A node that is not Ready takes nothing.
        assert_eq!(
            judge("wn9", "default/web", &all, &view(None, 100), D),
            Verdict::Leave
        );
    }

    #[test]
    fn finds_the_interface_of_an_address() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   2: eth0    inet 172.31.5.11/24 brd 172.31.5.255 scope global eth0\\  valid_lft forever\n";
        assert_eq!(
            parse_interface_of(out, "172.31.5.11".parse().unwrap()).as_deref(),
            Some("eth0")
        );
        assert_eq!(parse_interface_of(out, "10.0.0.1".parse().unwrap()), None);
        assert_eq!(lb_label("eth0").as_deref(), Some("eth0:lb"));
        assert_eq!(lb_label("a-very-long-if"), None);
    }
}
