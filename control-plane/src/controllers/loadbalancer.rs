//! LoadBalancer address controller (MetalLB's layer-2 mode, the
//! allocation half): each Service of type LoadBalancer gets one free address
//! of the pool (`--lb-pool`, e.g. `172.28.5.200-172.28.5.250`) in
//! `status.loadBalancer.ingress[0].ip`. Without a pool, LoadBalancer
//! Services stay `<pending>`, as in Kubernetes without a cloud provider.
//!
//! **Uniqueness.** Each address held is a marker key
//! `/registry/loadbalancerips/<ip>` naming the owning Service (name and
//! uid), written in the same transaction as the Service's status with an
//! "absent" compare on the marker and a mod-revision compare on the Service:
//! two Services never get one address, and a Service changed meanwhile is
//! read again.
//!
//! **Release.** A marker whose owner is gone (deleted, or recreated with
//! another uid), is no longer a LoadBalancer, or no longer shows the address
//! in its status is deleted, guarded by compares on the marker and on the
//! Service (absent, or at the revision judged): on the Service's delete
//! notice, and on every resync. A Service that stops being a LoadBalancer has
//! its status cleared (Kubernetes' `DeletingLoadBalancer` /
//! `DeletedLoadBalancer`).
//!
//! **spec.loadBalancerIP** is honoured when it is in the pool and free;
//! otherwise the Service stays pending with a Warning Event saying why.
//! A full pool: pending, Warning Event, retried whenever an address is
//! released (every Service change re-examines the pending ones).
//!
//! Decisions are [`decide`], a pure function of the Service, the pool and
//! the markers; the node side (which node announces each address) is
//! kube-proxy's (`kube-proxy/src/announce.rs`).

use super::events::{EventRecorder, NORMAL, WARNING};
use super::informer::{object_key, split_key, Informer, Informers, Notice};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{ApiError, Handlers};
use rkube_api::kinds::Kind;
use rkube_api::proto::internal::{compare::Target, op::Op as OpKind, Compare, Op, Txn};
use rkube_api::proto::{
    object::Kind as Body, LoadBalancerIngress, LoadBalancerStatus, ObjectMeta, Service,
};
use rkube_api::Object;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "service-lb-controller";
/// Where the markers of held addresses live.
pub const MARKER_PREFIX: &str = "/registry/loadbalancerips/";

pub fn marker_key(ip: Ipv4Addr) -> String {
    format!("{MARKER_PREFIX}{ip}")
}

/// A range of addresses handed to LoadBalancer Services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbPool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl FromStr for LbPool {
    type Err = String;

    /// `A-B` (inclusive), `A/len` (its hosts, without the network and
    /// broadcast addresses for prefixes shorter than /31) or a single `A`.
    fn from_str(s: &str) -> Result<LbPool, String> {
        let s = s.trim();
        let bad = |why: &str| {
            format!(
                "--lb-pool {s:?}: {why} (expected a range like 172.28.5.200-172.28.5.250, \
                 a CIDR like 172.28.5.192/27, or one address)"
            )
        };
        let ip = |t: &str| {
            t.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| bad(&format!("{:?} is not an IPv4 address", t.trim())))
        };
        let (first, last) = if let Some((a, b)) = s.split_once('-') {
            (ip(a)?, ip(b)?)
        } else if let Some((a, len)) = s.split_once('/') {
            let base = u32::from(ip(a)?);
            let len: u32 = len
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= 32)
                .ok_or_else(|| bad("the prefix length is not 0-32"))?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let (net, bcast) = (base & mask, (base & mask) | !mask);
            if len >= 31 {
                (Ipv4Addr::from(net), Ipv4Addr::from(bcast))
            } else {
                (Ipv4Addr::from(net + 1), Ipv4Addr::from(bcast - 1))
            }
        } else {
            let a = ip(s)?;
            (a, a)
        };
        if u32::from(first) > u32::from(last) {
            return Err(bad("the first address is above the last"));
        }
        Ok(LbPool { first, last })
    }
}

impl fmt::Display for LbPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl LbPool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    pub fn size(&self) -> u64 {
        u64::from(u32::from(self.last) - u32::from(self.first)) + 1
    }

    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

/// What a marker says: which Service holds the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `namespace/name`.
    pub key: String,
    pub uid: String,
}

/// The marker object stored for an address held by `svc`.
pub fn marker(svc: &ObjectMeta) -> Object {
    Object::from_body(Body::Service(Service {
        metadata: Some(ObjectMeta {
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
            uid: svc.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub fn marker_owner(o: &Object) -> Owner {
    Owner {
        key: format!("{}/{}", o.namespace(), o.name()),
        uid: o.metadata().map(|m| m.uid.clone()).unwrap_or_default(),
    }
}

fn is_lb(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| s.r#type == "LoadBalancer")
}

/// The addresses in `status.loadBalancer.ingress` (unparseable ones as
/// `None`, so they count as "something to clear").
pub fn ingress_ips(svc: &Service) -> Vec<Option<Ipv4Addr>> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .map(|lb| lb.ingress.iter().map(|i| i.ip.parse().ok()).collect())
        .unwrap_or_default()
}

/// What one Service needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do (it holds its address, or it is no LoadBalancer).
    Keep,
    /// Claim this address (free as far as the markers show).
    Assign(Ipv4Addr),
    /// Stays pending, with a Warning Event saying why.
    Pending(String),
    /// Stays pending silently: no pool is configured.
    NoPool,
    /// Empty `status.loadBalancer` (no longer a LoadBalancer, or it shows
    /// addresses it does not hold); its markers are released.
    Clear,
}

/// Decides what Service `svc` (uid `uid`) needs, given the pool and each
/// address's marker owner.
pub fn decide(
    svc: &Service,
    uid: &str,
    pool: Option<&LbPool>,
    owner_of: impl Fn(Ipv4Addr) -> Option<Owner>,
) -> Decision {
    let current = ingress_ips(svc);
    if !is_lb(svc) {
        return if current.is_empty() {
            Decision::Keep
        } else {
            Decision::Clear
        };
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let requested = if spec.load_balancer_ip.is_empty() {
        None
    } else {
        match spec.load_balancer_ip.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                return Decision::Pending(format!(
                    "spec.loadBalancerIP {:?} is not an IPv4 address",
                    spec.load_balancer_ip
                ))
            }
        }
    };
    let ours = |ip: Ipv4Addr| owner_of(ip).is_some_and(|o| o.uid == uid);
    match current.as_slice() {
        [] => {}
        [Some(ip)] if ours(*ip) && requested.is_none_or(|r| r == *ip) => return Decision::Keep,
        // Someone else's address, junk, or not the one asked for now.
        _ => return Decision::Clear,
    }
    let Some(pool) = pool else {
        return Decision::NoPool;
    };
    if let Some(ip) = requested {
        if !pool.contains(ip) {
            return Decision::Pending(format!(
                "spec.loadBalancerIP {ip} is not in the load-balancer pool {pool}"
            ));
        }
        return match owner_of(ip) {
            Some(o) if o.uid != uid => Decision::Pending(format!(
                "spec.loadBalancerIP {ip} is already allocated to service {}",
                o.key
            )),
            _ => Decision::Assign(ip),
        };
    }
    match pool.iter().find(|ip| owner_of(*ip).is_none()) {
        Some(ip) => Decision::Assign(ip),
        None => Decision::Pending(format!(
            "no addresses left in the load-balancer pool {pool} (all {} allocated)",
            pool.size()
        )),
    }
}

/// Whether a marker owned by `owner` for `ip` is stale, given the current
/// Service of that name (if any).
pub fn marker_stale(owner: &Owner, ip: Ipv4Addr, svc: Option<(&Service, &str)>) -> bool {
    match svc {
        None => true,
        Some((s, uid)) => uid != owner.uid || !is_lb(s) || !ingress_ips(s).contains(&Some(ip)),
    }
}

fn svc_of(o: &Object) -> Option<&Service> {
    match o.kind.as_ref() {
        Some(Body::Service(s)) => Some(s),
        _ => None,
    }
}

struct LbController {
    handlers: Handlers,
    pool: Option<LbPool>,
    recorder: EventRecorder,
}

impl LbController {
    /// The Service `key` as stored now on this replica, with its mod revision.
    fn current(&self, key: &str) -> Option<(Object, i64)> {
        let (ns, name) = split_key(key);
        let st = self.handlers.store().state();
        st.get(&Kind::Service.key(ns, name))
            .map(|s| ((*s.object).clone(), s.mod_revision))
    }

    /// (address, owner, marker mod revision) of every marker.
    fn markers(&self) -> Vec<(Ipv4Addr, Owner, i64)> {
        let st = self.handlers.store().state();
        st.range(MARKER_PREFIX)
            .filter_map(|(k, s)| {
                let ip = k.strip_prefix(MARKER_PREFIX)?.parse().ok()?;
                Some((ip, marker_owner(&s.object), s.mod_revision))
            })
            .collect()
    }

    fn svc_guard(key: &str, cur: Option<&(Object, i64)>) -> Compare {
        let (ns, name) = split_key(key);
        Compare {
            key: Kind::Service.key(ns, name),
            target: Some(match cur {
                Some((_, rev)) => Target::ModRevision(*rev),
                None => Target::Absent(true),
            }),
        }
    }

    /// Deletes the markers named after `key` that it no longer holds.
    /// `Ok(false)`: something changed meanwhile (look again).
    async fn release_stale(
        &self,
        key: &str,
        cur: Option<&(Object, i64)>,
    ) -> Result<bool, ApiError> {
        let view = cur.and_then(|(o, _)| {
            svc_of(o).map(|s| (s, o.metadata().map(|m| m.uid.as_str()).unwrap_or("")))
        });
        let stale: Vec<(Ipv4Addr, i64)> = self
            .markers()
            .into_iter()
            .filter(|(ip, owner, _)| owner.key == key && marker_stale(owner, *ip, view))
            .map(|(ip, _, rev)| (ip, rev))
            .collect();
        if stale.is_empty() {
            return Ok(true);
        }
        let mut compares = vec![Self::svc_guard(key, cur)];
        let mut ops = Vec::new();
        for (ip, rev) in &stale {
            compares.push(Compare {
                key: marker_key(*ip),
                target: Some(Target::ModRevision(*rev)),
            });
            ops.push(Op {
                key: marker_key(*ip),
                op: Some(OpKind::Delete(true)),
            });
        }
        let r = self.handlers.store().txn(Txn { compares, ops }).await?;
        if r.succeeded {
            tracing::info!(service = key, released = ?stale.iter().map(|(ip, _)| ip.to_string()).collect::<Vec<_>>(), "load-balancer addresses released");
        }
        Ok(r.succeeded)
    }

    /// Writes `svc` (status changed) over revision `rev`, plus `extra`.
    async fn write(
        &self,
        key: &str,
        mut obj: Object,
        rev: i64,
        extra_compares: Vec<Compare>,
        extra_ops: Vec<Op>,
    ) -> Result<bool, ApiError> {
        let (ns, name) = split_key(key);
        let skey = Kind::Service.key(ns, name);
        if let Some(m) = obj.metadata_mut() {
            m.resource_version.clear();
        }
        let mut compares = vec![Compare {
            key: skey.clone(),
            target: Some(Target::ModRevision(rev)),
        }];
        compares.extend(extra_compares);
        let mut ops = vec![Op {
            key: skey,
            op: Some(OpKind::Put(obj)),
        }];
        ops.extend(extra_ops);
        Ok(self
            .handlers
            .store()
            .txn(Txn { compares, ops })
            .await?
            .succeeded)
    }
}

fn set_ingress(obj: &mut Object, ip: Option<Ipv4Addr>) {
    if let Some(Body::Service(s)) = obj.kind.as_mut() {
        let st = s.status.get_or_insert_with(Default::default);
        st.load_balancer = Some(LoadBalancerStatus {
            ingress: ip
                .map(|ip| {
                    vec![LoadBalancerIngress {
                        ip: ip.to_string(),
                        hostname: String::new(),
                    }]
                })
                .unwrap_or_default(),
        });
    }
}

#[tonic::async_trait]
impl Reconcile for LbController {
    fn name(&self) -> &'static str {
        "loadbalancer"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        let again = Action::RequeueAfter(Duration::from_millis(10));
        let cur = self.current(key);
        if !self.release_stale(key, cur.as_ref()).await? {
            return Ok(again);
        }
        let Some((obj, rev)) = cur else {
            return Ok(Action::Done);
        };
        let Some(svc) = svc_of(&obj) else {
            return Ok(Action::Done);
        };
        let uid = obj.metadata().map(|m| m.uid.clone()).unwrap_or_default();
        let markers = self.markers();
        let owner_of = |ip: Ipv4Addr| {
            markers
                .iter()
                .find(|(m, _, _)| *m == ip)
                .map(|(_, o, _)| o.clone())
        };
        match decide(svc, &uid, self.pool.as_ref(), owner_of) {
            Decision::Keep | Decision::NoPool => Ok(Action::Done),
            Decision::Pending(why) => {
                self.recorder.record(
                    &obj,
                    NORMAL,
                    "EnsuringLoadBalancer",
                    "Ensuring load balancer",
                );
                self.recorder.record(
                    &obj,
                    WARNING,
                    "SyncLoadBalancerFailed",
                    &format!("Error syncing load balancer: {why}; the service stays pending"),
                );
                Ok(Action::Done)
            }
            Decision::Clear => {
                let leaving = !is_lb(svc);
                if leaving {
                    self.recorder.record(
                        &obj,
                        NORMAL,
                        "DeletingLoadBalancer",
                        "Deleting load balancer",
                    );
                }
                let mut new = obj.clone();
                set_ingress(&mut new, None);
                if !self.write(key, new, rev, vec![], vec![]).await? {
                    return Ok(again);
                }
                if leaving {
                    self.recorder.record(
                        &obj,
                        NORMAL,
                        "DeletedLoadBalancer",
                        "Deleted load balancer",
                    );
                }
                // Its markers go on the next pass, now that the status
                // no longer shows them.
                Ok(again)
            }
            Decision::Assign(ip) => {
                self.recorder.record(
                    &obj,
                    NORMAL,
                    "EnsuringLoadBalancer",
                    "Ensuring load balancer",
                );
                let meta = obj.metadata().cloned().unwrap_or_default();
                let mut new = obj.clone();
                set_ingress(&mut new, Some(ip));
                let ok = self
                    .write(
                        key,
                        new,
                        rev,
                        vec![Compare {
                            key: marker_key(ip),
                            target: Some(Target::Absent(true)),
                        }],
                        vec![Op {
                            key: marker_key(ip),
                            op: Some(OpKind::Put(marker(&meta))),
                        }],
                    )
                    .await?;
                if !ok {
                    return Ok(again);
                }
                tracing::info!(service = key, %ip, "load-balancer address assigned");
                self.recorder.record(
                    &obj,
                    NORMAL,
                    "IPAllocated",
                    &format!("Assigned IP [\"{ip}\"]"),
                );
                self.recorder
                    .record(&obj, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer");
                Ok(Action::Done)
            }
        }
    }
}

/// Starts this controller on `informers`.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let services = informers.get(Kind::Service);
    let handlers = informers.handlers().clone();
    let ctrl = Arc::new(LbController {
        recorder: EventRecorder::new(handlers.clone(), COMPONENT),
        handlers: handlers.clone(),
        pool: cfg.lb_pool,
    });
    let queue = WorkQueue::new();
    // Services waiting for an address: looked at again on every Service
    // change (a release may have freed one).
    let pending = |services: &Informer| -> Vec<String> {
        services
            .list()
            .iter()
            .filter(|o| svc_of(o).is_some_and(|s| is_lb(s) && ingress_ips(s).is_empty()))
            .map(|o| object_key(o))
            .collect()
    };
    let map = {
        let services = services.clone();
        move |n: &Notice| -> Vec<String> {
            let Notice::Changed { kind, new, .. } = n else {
                return Vec::new();
            };
            if *kind != Kind::Service {
                return Vec::new();
            }
            let mut keys = vec![object_key(new)];
            keys.extend(pending(&services));
            keys
        }
    };
    let all = {
        let services = services.clone();
        move || -> Vec<String> {
            let mut keys: std::collections::BTreeSet<String> = services
                .list()
                .iter()
                .filter(|o| svc_of(o).is_some_and(|s| is_lb(s) || !ingress_ips(s).is_empty()))
                .map(|o| object_key(o))
                .collect();
            // Owners of markers, to release those of deleted Services.
            let st = handlers.store().state();
            for (_, s) in st.range(MARKER_PREFIX) {
                keys.insert(marker_owner(&s.object).key);
            }
            keys.into_iter().collect()
        }
    };
    feed(
        informers,
        &[Kind::Service],
        queue.clone(),
        cfg.resync,
        map,
        all,
    );
    run_workers(informers, ctrl, queue, 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{ServiceSpec, ServiceStatus};

    fn pool() -> LbPool {
        "172.28.5.200-172.28.5.202".parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn svc(ty: &str, requested: &str, ingress: &[&str]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                r#type: ty.into(),
                load_balancer_ip: requested.into(),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: ingress
                        .iter()
                        .map(|i| LoadBalancerIngress {
                            ip: i.to_string(),
                            hostname: String::new(),
                        })
                        .collect(),
                }),
            }),
            ..Default::default()
        }
    }

    fn owner(key: &str, uid: &str) -> Owner {
        Owner {
            key: key.into(),
            uid: uid.into(),
        }
    }

    /// Markers: (ip, owner uid).
    fn markers(held: &[(&str, &str)]) -> impl Fn(Ipv4Addr) -> Option<Owner> {
        let held: Vec<(Ipv4Addr, Owner)> = held
            .iter()
            .map(|(i, u)| (ip(i), owner(&format!("default/{u}"), u)))
            .collect();
        move |a| held.iter().find(|(i, _)| *i == a).map(|(_, o)| o.clone())
    }

    #[test]
    fn parses_pools() {
        let p: LbPool = "172.28.5.200-172.28.5.250".parse().unwrap();
        assert_eq!(p.size(), 51);
        assert!(p.contains(ip("172.28.5.200")) && p.contains(ip("172.28.5.250")));
        assert!(!p.contains(ip("172.28.5.199")) && !p.contains(ip("172.28.5.251")));
        assert_eq!(p.to_string(), "172.28.5.200-172.28.5.250");
        let c: LbPool = "10.0.0.0/30".parse().unwrap();
        assert_eq!((c.first, c.last), (ip("10.0.0.1"), ip("10.0.0.2")));
        let one: LbPool = "10.0.0.7".parse().unwrap();
        assert_eq!(one.size(), 1);
        for bad in ["", "x", "10.0.0.9-10.0.0.1", "10.0.0.0/33", "1.2.3.4-"] {
            let e = bad.parse::<LbPool>().unwrap_err();
            assert!(e.contains("--lb-pool"), "{e}");
        }
    }

    #[test]
    fn assigns_the_lowest_free_address_and_keeps_it() {
        let s = svc("LoadBalancer", "", &[]);
        assert_eq!(
            decide(&s, "u1", Some(&pool()), markers(&[])),
            Decision::Assign(ip("172.28.5.200"))
        );
        assert_eq!(
            decide(&s, "u1", Some(&pool()), markers(&[("172.28.5.200", "u2")])),
            Decision::Assign(ip("172.28.5.201"))
        );
        let held = svc("LoadBalancer", "", &["172.28.5.201"]);
        assert_eq!(
            decide(
                &held,
                "u1",
                Some(&pool()),
                markers(&[("172.28.5.201", "u1")])
            ),
            Decision::Keep
        );
    }

    #[test]
    fn no_pool_stays_pending_silently() {
        let s = svc("LoadBalancer", "", &[]);
        assert_eq!(decide(&s, "u1", None, markers(&[])), Decision::NoPool);
    }

    #[test]
    fn exhausted_pool_says_so() {
        let s = svc("LoadBalancer", "", &[]);
        let full = markers(&[
            ("172.28.5.200", "a"),
            ("172.28.5.201", "b"),
            ("172.28.5.202", "c"),
        ]);
        match decide(&s, "u1", Some(&pool()), full) {
            Decision::Pending(m) => {
                assert!(
                    m.contains("no addresses left") && m.contains("172.28.5.200-172.28.5.202"),
                    "{m}"
                )
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn requested_address_is_honoured_or_refused_with_a_reason() {
        let s = svc("LoadBalancer", "172.28.5.202", &[]);
        assert_eq!(
            decide(&s, "u1", Some(&pool()), markers(&[])),
            Decision::Assign(ip("172.28.5.202"))
        );
        match decide(
            &s,
            "u1",
            Some(&pool()),
            markers(&[("172.28.5.202", "other")]),
        ) {
            Decision::Pending(m) => assert!(
                m.contains("already allocated to service default/other"),
                "{m}"
            ),
            d => panic!("{d:?}"),
        }
        let outside = svc("LoadBalancer", "192.168.1.1", &[]);
        match decide(&outside, "u1", Some(&pool()), markers(&[])) {
            Decision::Pending(m) => assert!(m.contains("not in the load-balancer pool"), "{m}"),
            d => panic!("{d:?}"),
        }
        let junk = svc("LoadBalancer", "nope", &[]);
        assert!(matches!(
            decide(&junk, "u1", Some(&pool()), markers(&[])),
            Decision::Pending(m) if m.contains("not an IPv4 address")
        ));
        // Asked for another address than the one held: give it back first.
        let moved = svc("LoadBalancer", "172.28.5.202", &["172.28.5.200"]);
        assert_eq!(
            decide(
                &moved,
                "u1",
                Some(&pool()),
                markers(&[("172.28.5.200", "u1")])
            ),
            Decision::Clear
        );
    }

    #[test]
    fn type_change_and_foreign_status_are_cleared() {
        let was = svc("ClusterIP", "", &["172.28.5.200"]);
        assert_eq!(
            decide(
                &was,
                "u1",
                Some(&pool()),
                markers(&[("172.28.5.200", "u1")])
            ),
            Decision::Clear
        );
        assert_eq!(
            decide(
                &svc("ClusterIP", "", &[]),
                "u1",
                Some(&pool()),
                markers(&[])
            ),
            Decision::Keep
        );
        // A status naming an address another Service holds.
        let forged = svc("LoadBalancer", "", &["172.28.5.200"]);
        assert_eq!(
            decide(
                &forged,
                "u1",
                Some(&pool()),
                markers(&[("172.28.5.200", "u2")])
            ),
            Decision::Clear
        );
    }

    #[test]
    fn markers_go_stale_with_their_service() {
        let o = owner("default/web", "u1");
        let a = ip("172.28.5.200");
        let lb = svc("LoadBalancer", "", &["172.28.5.200"]);
        assert!(!marker_stale(&o, a, Some((&lb, "u1"))));
        assert!(marker_stale(&o, a, None), "deleted");
        assert!(marker_stale(&o, a, Some((&lb, "u9"))), "recreated");
        let cip = svc("ClusterIP", "", &["172.28.5.200"]);
        assert!(marker_stale(&o, a, Some((&cip, "u1"))), "type changed");
        let other = svc("LoadBalancer", "", &["172.28.5.201"]);
        assert!(marker_stale(&o, a, Some((&other, "u1"))), "not shown");
    }
}
