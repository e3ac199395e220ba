//! Makes this node serve what the table says: ClusterIPs on the interface,
//! a listener per frontend address, a balancer per service port, and the
//! grace after which connections to removed endpoints close.
//!
//! Work is per Service: [`Proxier::sync_service`] computes the Service's
//! ports, diffs them against what is being served and applies only the
//! difference (listeners that stay keep their sockets; endpoints that stay
//! keep their connections). TCP listeners set SO_REUSEPORT, so a Service's
//! ClusterIP:port and another's NodePort on 0.0.0.0 with the same number
//! coexist, each address reaching its own Service (the kernel prefers the
//! exact address). A listener that cannot
//! bind (a port a process holds, a missing address) is a reported problem
//! of that Service alone and is retried on every tick, so it comes up when
//! the conflict goes.

use crate::balancer::Balancer;
use crate::cache::Cache;
use crate::config::ProxyConfig;
use crate::dataplane::DataPlane;
use crate::iface::ServiceInterface;
use crate::metrics::Metrics;
use crate::port::LivePort;
use crate::report::Reporter;
use crate::table::{self, PortKey, Problem, Protocol, ServicePort, TableConfig};
use crate::{tcp, udp};
use parking_lot::Mutex;
use rkube_api::proto::{Endpoints, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;

/// One listening address of a service port: for TCP one socket per
/// data-plane thread (SO_REUSEPORT: the kernel spreads new connections
/// over them, and the accepting thread hands a connection to a less loaded
/// one when it carries more than its share), for UDP one socket on one
/// thread.
enum Listener {
    Serving(Vec<JoinHandle<()>>),
    Failed {
        reason: &'static str,
        message: String,
    },
}

impl Listener {
    fn start(
        addr: SocketAddr,
        protocol: Protocol,
        live: &Arc<LivePort>,
        dataplane: &Arc<DataPlane>,
    ) -> Listener {
        let mut tasks = Vec::new();
        let started = match protocol {
            // One socket per thread, all bound with SO_REUSEPORT: the
            // kernel spreads connections over them and wakes one thread
            // per connection.
            Protocol::Tcp => dataplane
                .handles()
                .iter()
                .enumerate()
                .try_for_each(|(i, rt)| {
                    let l = tcp::listen(addr)?;
                    tasks.push(rt.spawn(tcp::serve(l, live.clone(), dataplane.clone(), i)));
                    Ok(())
                }),
            Protocol::Udp => udp::bind(addr).map(|s| {
                let rt = dataplane.pick(u64::from(addr.port()));
                tasks.push(rt.spawn(udp::serve(s, live.clone())));
            }),
        };
        match started {
            Ok(()) => {
                tracing::debug!(port = %live.key, %addr, %protocol, "listening");
                Listener::Serving(tasks)
            }
            Err(e) => {
                for t in &tasks {
                    t.abort();
                }
                if e.kind() == io::ErrorKind::AddrInUse {
                    Listener::Failed {
                        reason: "PortConflict",
                        message: format!(
                            "cannot listen on {addr}/{protocol}: the port is already in use on this node \
                             (a process other than kube-proxy holds it)"
                        ),
                    }
                } else {
                    Listener::Failed {
                        reason: "ListenFailed",
                        message: format!("cannot listen on {addr}/{protocol}: {e}"),
                    }
                }
            }
        }
    }

    fn stop(&self) {
        if let Listener::Serving(tasks) = self {
            for t in tasks {
                t.abort();
            }
        }
    }
}

/// A service port being served.
struct ActivePort {
    spec: ServicePort,
    live: Arc<LivePort>,
    listeners: BTreeMap<(SocketAddr, Protocol), Listener>,
}

impl ActivePort {
    /// Opens listeners the frontend wants and closes the others; failed
    /// ones are tried again.
    /// `announced`: the LoadBalancer addresses this node announces (it
    /// listens on ingress-IP:port only for those).
    fn reconcile_listeners(
        &mut self,
        nodeport_addresses: &[IpAddr],
        announced: &BTreeSet<Ipv4Addr>,
        dataplane: &Arc<DataPlane>,
    ) {
        let f = &self.spec.frontend;
        let mut wanted = BTreeSet::new();
        for ip in f
            .load_balancer_ips
            .iter()
            .filter(|ip| announced.contains(ip))
        {
            wanted.insert((SocketAddr::new(IpAddr::V4(*ip), f.port), f.protocol));
        }
        if let Some(ip) = f.cluster_ip {
            wanted.insert((SocketAddr::new(IpAddr::V4(ip), f.port), f.protocol));
        }
        if let Some(np) = f.node_port {
            for a in nodeport_addresses {
                wanted.insert((SocketAddr::new(*a, np), f.protocol));
            }
        }
        self.listeners.retain(|k, l| {
            let keep = wanted.contains(k) && matches!(l, Listener::Serving(_));
            if !keep {
                l.stop();
            }
            keep
        });
        for (addr, protocol) in wanted {
            self.listeners
                .entry((addr, protocol))
                .or_insert_with(|| Listener::start(addr, protocol, &self.live, dataplane));
        }
    }

    fn has_failed_listeners(&self) -> bool {
        self.listeners
            .values()
            .any(|l| matches!(l, Listener::Failed { .. }))
    }

    fn stop(&self) {
        for l in self.listeners.values() {
            l.stop();
        }
    }
}

pub struct Proxier {
    config: Arc<ProxyConfig>,
    dataplane: Arc<DataPlane>,
    table_config: TableConfig,
    iface: ServiceInterface,
    metrics: Arc<Metrics>,
    reporter: Reporter,
    ports: BTreeMap<PortKey, ActivePort>,
    /// ClusterIPs on the interface, as far as this proxy knows.
    addresses: BTreeSet<Ipv4Addr>,
    /// Per Service: its metadata (for Events) and the problems its spec and
    /// Endpoints had at the last sync.
    services: BTreeMap<String, (Service, Vec<Problem>)>,
    /// LoadBalancer addresses this node announces now (see `announce`).
    announced: BTreeSet<Ipv4Addr>,
}

impl Proxier {
    /// A proxier over `iface`, knowing which addresses it already holds.
    pub async fn start(
        config: Arc<ProxyConfig>,
        dataplane: Arc<DataPlane>,
        iface: ServiceInterface,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Proxier {
        let addresses = match iface.addresses().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the interface's addresses");
                BTreeSet::new()
            }
        };
        Proxier {
            table_config: TableConfig {
                default_policy: config.default_policy,
                service_cidr: config.service_cidr,
            },
            config,
            dataplane,
            iface,
            metrics,
            reporter,
            ports: BTreeMap::new(),
            addresses,
            services: BTreeMap::new(),
            announced: BTreeSet::new(),
        }
    }

    /// Syncs every Service the cache or this proxier knows, then removes
    /// ClusterIPs left on the interface by an earlier run.
    pub async fn sync_all(&mut self, cache: &Cache) {
        let mut keys = cache.service_keys();
        keys.extend(self.ports.keys().map(|k| k.service.clone()));
        for key in keys {
            self.sync_service(&key, cache.service(&key), cache.endpoints(&key))
                .await;
        }
        let used = self.used_addresses();
        let stale: Vec<Ipv4Addr> = self
            .addresses
            .iter()
            .filter(|a| !used.contains(a) && self.config.service_cidr.contains(*a))
            .copied()
            .collect();
        for a in stale {
            self.release_address(a).await;
        }
    }

    /// Applies the current state of Service `key` (`svc` is `None` once it
    /// is deleted).
    pub async fn sync_service(
        &mut self,
        key: &str,
        svc: Option<&Service>,
        eps: Option<&Endpoints>,
    ) {
        let (wanted, problems) = match svc {
            Some(s) => table::service_ports(s, eps, &self.table_config),
            None => (Vec::new(), Vec::new()),
        };
        let old: BTreeMap<PortKey, ServicePort> = self
            .ports_of(key)
            .map(|(k, p)| (k.clone(), p.spec.clone()))
            .collect();
        let d = table::diff(&old, &wanted);
        if !d.is_empty() {
            tracing::debug!(
                service = key,
                added = d.added.len(),
                removed = d.removed.len(),
                moved = d.moved.len(),
                rebalanced = d.rebalanced.len(),
                "applying changes"
            );
        }
        for k in &d.removed {
            self.remove_port(k);
        }
        // Addresses before listeners, so they can bind.
        for p in d.added.iter().chain(&d.moved) {
            if let Some(ip) = p.frontend.cluster_ip {
                self.ensure_address(ip).await;
            }
        }
        for p in d.added {
            self.add_port(p);
        }
        let moved = !d.moved.is_empty();
        for p in d.moved {
            self.move_port(p);
        }
        for p in d.rebalanced {
            self.rebalance_port(p);
        }
        if !d.removed.is_empty() || moved {
            let used = self.used_addresses();
            let unused: Vec<Ipv4Addr> = self.addresses.difference(&used).copied().collect();
            for a in unused {
                self.release_address(a).await;
            }
        }
        match svc {
            Some(s) => {
                let meta_only = Service {
                    metadata: s.metadata.clone(),
                    ..Default::default()
                };
                self.services.insert(key.to_string(), (meta_only, problems));
            }
            None => {
                self.services.remove(key);
            }
        }
        self.report(key);
    }

    /// Sets the LoadBalancer addresses this node announces: the ports
    /// with those ingress addresses open (or close) their listeners.
    pub fn set_announced(&mut self, announced: BTreeSet<Ipv4Addr>) {
        if announced == self.announced {
            return;
        }
        let changed: BTreeSet<Ipv4Addr> = announced
            .symmetric_difference(&self.announced)
            .copied()
            .collect();
        tracing::info!(announced = ?announced, "load-balancer addresses announced by this node");
        self.announced = announced;
        let mut services = BTreeSet::new();
        for (k, p) in self.ports.iter_mut() {
            if p.spec
                .frontend
                .load_balancer_ips
                .iter()
                .any(|ip| changed.contains(ip))
            {
                p.reconcile_listeners(
                    &self.config.nodeport_addresses,
                    &self.announced,
                    &self.dataplane,
                );
                services.insert(k.service.clone());
            }
        }
        for s in services {
            self.report(&s);
        }
    }

    /// Tries failed listeners (and their addresses) again.
    pub async fn retry_failed(&mut self) {
        let failed: Vec<PortKey> = self
            .ports
            .iter()
            .filter(|(_, p)| p.has_failed_listeners())
            .map(|(k, _)| k.clone())
            .collect();
        let mut services = BTreeSet::new();
        for k in failed {
            let ip = self.ports.get(&k).and_then(|p| p.spec.frontend.cluster_ip);
            if let Some(ip) = ip {
                self.ensure_address(ip).await;
            }
            if let Some(p) = self.ports.get_mut(&k) {
                p.reconcile_listeners(
                    &self.config.nodeport_addresses,
                    &self.announced,
                    &self.dataplane,
                );
                if !p.has_failed_listeners() {
                    tracing::info!(port = %k, "listening now");
                }
            }
            services.insert(k.service);
        }
        for s in services {
            self.report(&s);
        }
    }

    fn ports_of<'a>(
        &'a self,
        service: &'a str,
    ) -> impl Iterator<Item = (&'a PortKey, &'a ActivePort)> {
        let start = PortKey {
            service: service.to_string(),
            port: String::new(),
        };
        self.ports
            .range(start..)
            .take_while(move |(k, _)| k.service == service)
    }

    fn used_addresses(&self) -> BTreeSet<Ipv4Addr> {
        self.ports
            .values()
            .filter_map(|p| p.spec.frontend.cluster_ip)
            .collect()
    }

    async fn ensure_address(&mut self, ip: Ipv4Addr) {
        if self.addresses.contains(&ip) {
            return;
        }
        match self.iface.add(ip).await {
            Ok(()) => {
                tracing::debug!(%ip, interface = self.iface.name(), "address added");
                self.addresses.insert(ip);
            }
            Err(e) => tracing::warn!(%ip, error = %e, "cannot add the ClusterIP to the interface"),
        }
    }

    async fn release_address(&mut self, ip: Ipv4Addr) {
        match self.iface.remove(ip).await {
            Ok(()) => {
                tracing::debug!(%ip, interface = self.iface.name(), "address removed");
                self.addresses.remove(&ip);
            }
            Err(e) => {
                tracing::warn!(%ip, error = %e, "cannot remove the ClusterIP from the interface")
            }
        }
    }

    fn add_port(&mut self, spec: ServicePort) {
        let metrics = self
            .metrics
            .port(&spec.key, spec.frontend.protocol.as_str());
        let b = &spec.backends;
        let mut balancer = Balancer::new(b.policy, b.affinity);
        balancer.update(
            &b.endpoints,
            b.policy,
            b.affinity,
            self.config.endpoint_close_grace,
            Instant::now(),
        );
        metrics
            .endpoints
            .store(b.endpoints.len() as i64, Ordering::Relaxed);
        let live = Arc::new(LivePort {
            key: spec.key.clone(),
            balancer: Mutex::new(balancer),
            metrics,
            config: self.config.clone(),
        });
        tracing::info!(
            port = %spec.key,
            protocol = %spec.frontend.protocol,
            cluster_ip = ?spec.frontend.cluster_ip,
            port_number = spec.frontend.port,
            node_port = ?spec.frontend.node_port,
            endpoints = b.endpoints.len(),
            policy = %b.policy,
            affinity = ?b.affinity,
            "serving service port"
        );
        let mut port = ActivePort {
            spec,
            live,
            listeners: BTreeMap::new(),
        };
        port.reconcile_listeners(
            &self.config.nodeport_addresses,
            &self.announced,
            &self.dataplane,
        );
        self.ports.insert(port.spec.key.clone(), port);
    }

    fn move_port(&mut self, spec: ServicePort) {
        let protocol_changed = self
            .ports
            .get(&spec.key)
            .is_some_and(|p| p.spec.frontend.protocol != spec.frontend.protocol);
        if protocol_changed {
            // Different sockets, different counters: start over.
            self.remove_port(&spec.key);
            self.add_port(spec);
            return;
        }
        let Some(port) = self.ports.get_mut(&spec.key) else {
            self.add_port(spec);
            return;
        };
        tracing::info!(port = %spec.key, cluster_ip = ?spec.frontend.cluster_ip,
            port_number = spec.frontend.port, node_port = ?spec.frontend.node_port, "service port moved");
        port.spec.frontend = spec.frontend.clone();
        port.reconcile_listeners(
            &self.config.nodeport_addresses,
            &self.announced,
            &self.dataplane,
        );
        self.rebalance_port(spec);
    }

    fn rebalance_port(&mut self, spec: ServicePort) {
        let Some(port) = self.ports.get_mut(&spec.key) else {
            return;
        };
        let b = &spec.backends;
        let removed = port.live.balancer.lock().update(
            &b.endpoints,
            b.policy,
            b.affinity,
            self.config.endpoint_close_grace,
            Instant::now(),
        );
        port.live
            .metrics
            .endpoints
            .store(b.endpoints.len() as i64, Ordering::Relaxed);
        tracing::debug!(port = %spec.key, endpoints = ?b.endpoints, removed = ?removed, "endpoints updated");
        end_grace_later(&port.live, removed, &self.config);
        port.spec = spec;
    }

    fn remove_port(&mut self, key: &PortKey) {
        let Some(port) = self.ports.remove(key) else {
            return;
        };
        tracing::info!(port = %key, "service port removed");
        port.stop();
        let removed = port.live.balancer.lock().update(
            &[],
            port.spec.backends.policy,
            None,
            self.config.endpoint_close_grace,
            Instant::now(),
        );
        end_grace_later(&port.live, removed, &self.config);
        self.metrics.remove_port(key);
    }

    fn report(&mut self, key: &str) {
        let (svc, mut problems) = match self.services.get(key) {
            Some((s, p)) => (Some(s.clone()), p.clone()),
            None => (None, Vec::new()),
        };
        for (_, port) in self.ports_of(key) {
            for l in port.listeners.values() {
                if let Listener::Failed { reason, message } = l {
                    problems.push(Problem {
                        reason,
                        message: message.clone(),
                    });
                }
            }
        }
        self.reporter.report(key, svc.as_ref(), problems);
    }
}

/// Closes the connections of `removed` endpoints once the grace has passed
/// (unless they came back meanwhile).
fn end_grace_later(live: &Arc<LivePort>, removed: Vec<SocketAddr>, config: &ProxyConfig) {
    if removed.is_empty() {
        return;
    }
    let grace = config.endpoint_close_grace;
    let live = live.clone();
    let end = move |live: &LivePort| {
        let mut b = live.balancer.lock();
        for addr in &removed {
            b.end_grace(*addr, Instant::now());
        }
    };
    if grace.is_zero() {
        end(&live);
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        end(&live);
    });
}
