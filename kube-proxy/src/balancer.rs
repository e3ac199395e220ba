//! Choosing an endpoint for a new connection: round-robin or
//! least-connections, optionally sticky per client IP, skipping endpoints
//! that already failed this connection (the retry rule).
//!
//! A [`Backend`] outlives its place in the list: connections hold it, count
//! themselves on it, and watch its `closed` token. An endpoint that leaves
//! the Service is *draining* until its grace ends; if it comes back in time
//! it is the same `Backend` again, so its connections are never cut.

use crate::config::Policy;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One endpoint address as the data path sees it.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    active: AtomicUsize,
    closed: CancellationToken,
}

impl Backend {
    fn new(addr: SocketAddr) -> Arc<Backend> {
        Arc::new(Backend {
            addr,
            active: AtomicUsize::new(0),
            closed: CancellationToken::new(),
        })
    }

    /// Connections open to this endpoint through this proxy.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Cancelled when the endpoint's grace after removal ends: its
    /// connections close then.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }
}

/// Counts one connection on a backend for as long as it lives.
pub struct ConnectionGuard {
    backend: Arc<Backend>,
}

impl ConnectionGuard {
    pub fn new(backend: Arc<Backend>) -> ConnectionGuard {
        backend.active.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard { backend }
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Sticky {
    backend: SocketAddr,
    last_used: Instant,
}

/// `sessionAffinity: ClientIP`: a client stays on its endpoint until it
/// has made no new connection for `timeout`.
#[derive(Debug)]
struct Affinity {
    timeout: Duration,
    clients: HashMap<IpAddr, Sticky>,
    last_sweep: Instant,
}

impl Affinity {
    fn new(timeout: Duration, now: Instant) -> Affinity {
        Affinity {
            timeout,
            clients: HashMap::new(),
            last_sweep: now,
        }
    }

    /// Drops expired entries now and then, so idle clients cost nothing.
    fn sweep(&mut self, now: Instant) {
        let every = self.timeout.min(Duration::from_secs(60));
        if now.saturating_duration_since(self.last_sweep) < every {
            return;
        }
        let timeout = self.timeout;
        self.clients
            .retain(|_, s| now.saturating_duration_since(s.last_used) < timeout);
        self.last_sweep = now;
    }
}

/// The endpoints of one service port and the rule that picks among them.
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    backends: Vec<Arc<Backend>>,
    /// Where the next round-robin scan starts.
    cursor: usize,
    affinity: Option<Affinity>,
    /// Endpoints removed from the list whose grace has not ended: when the
    /// grace ends.
    draining: HashMap<SocketAddr, (Arc<Backend>, Instant)>,
}

impl Balancer {
    pub fn new(policy: Policy, affinity: Option<Duration>) -> Balancer {
        Balancer {
            policy,
            backends: Vec::new(),
            cursor: 0,
            affinity: affinity.map(|t| Affinity::new(t, Instant::now())),
            draining: HashMap::new(),
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// The current endpoints, in order.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(|b| b.addr).collect()
    }

    /// Replaces the endpoint set (and policy, affinity). Endpoints that left
    /// start draining until `now + grace`; their addresses are returned so
    /// the caller can end the grace with [`Balancer::end_grace`].
    pub fn update(
        &mut self,
        endpoints: &[SocketAddr],
        policy: Policy,
        affinity: Option<Duration>,
        grace: Duration,
        now: Instant,
    ) -> Vec<SocketAddr> {
        self.policy = policy;
        match (&mut self.affinity, affinity) {
            (Some(a), Some(t)) => a.timeout = t,
            (slot, t) => *slot = t.map(|t| Affinity::new(t, now)),
        }
        let mut old: HashMap<SocketAddr, Arc<Backend>> =
            self.backends.drain(..).map(|b| (b.addr, b)).collect();
        let mut next = Vec::with_capacity(endpoints.len());
        for addr in endpoints {
            if next.iter().any(|b: &Arc<Backend>| b.addr == *addr) {
                continue;
            }
            let b = old
                .remove(addr)
                .or_else(|| self.draining.remove(addr).map(|(b, _)| b))
                .unwrap_or_else(|| Backend::new(*addr));
            next.push(b);
        }
        self.backends = next;
        if !self.backends.is_empty() {
            self.cursor %= self.backends.len();
        } else {
            self.cursor = 0;
        }
        let mut removed: Vec<SocketAddr> = old.keys().copied().collect();
        removed.sort();
        for (addr, b) in old {
            self.draining.insert(addr, (b, now + grace));
        }
        removed
    }

    /// Ends the grace of a removed endpoint if it is still removed and its
    /// grace has passed: its connections are told to close. Returns whether
    /// it did.
    pub fn end_grace(&mut self, addr: SocketAddr, now: Instant) -> bool {
        match self.draining.get(&addr) {
            Some((_, until)) if *until <= now => {
                if let Some((b, _)) = self.draining.remove(&addr) {
                    b.closed.cancel();
                }
                true
            }
            _ => false,
        }
    }

    /// The endpoint for a new connection from `client`, skipping those in
    /// `tried` (they failed this connection already); `None` when none is
    /// left.
    pub fn pick(
        &mut self,
        client: IpAddr,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<Arc<Backend>> {
        if let Some(a) = self.affinity.as_mut() {
            a.sweep(now);
            if let Some(s) = a.clients.get_mut(&client) {
                let fresh = now.saturating_duration_since(s.last_used) < a.timeout;
                if fresh && !tried.contains(&s.backend) {
                    if let Some(b) = self.backends.iter().find(|b| b.addr == s.backend) {
                        s.last_used = now;
                        return Some(b.clone());
                    }
                }
            }
        }
        let chosen = self.choose(tried)?;
        if let Some(a) = self.affinity.as_mut() {
            a.clients.insert(
                client,
                Sticky {
                    backend: chosen.addr,
                    last_used: now,
                },
            );
        }
        Some(chosen)
    }

    /// The policy's choice among the endpoints not yet tried.
    fn choose(&mut self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let n = self.backends.len();
        let candidates = (0..n)
            .map(|i| (self.cursor + i) % n)
            .filter(|&i| !tried.contains(&self.backends[i].addr));
        let index = match self.policy {
            Policy::RoundRobin => candidates.into_iter().next(),
            // The first of the least loaded, scanning from the cursor, so
            // ties rotate like round-robin.
            Policy::LeastConn => candidates.min_by_key(|&i| self.backends[i].active()),
        }?;
        self.cursor = (index + 1) % n;
        Some(self.backends[index].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 244, 0, i], 8080)))
            .collect()
    }

    fn client(i: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, i])
    }

    fn balancer(policy: Policy, affinity: Option<Duration>, n: u8) -> (Balancer, Instant) {
        let now = Instant::now();
        let mut b = Balancer::new(policy, affinity);
        b.update(&addrs(n), policy, affinity, Duration::ZERO, now);
        (b, now)
    }

    fn last_octet(b: &Arc<Backend>) -> u8 {
        match b.addr.ip() {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => 0,
        }
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_order() {
        let (mut b, now) = balancer(Policy::RoundRobin, None, 3);
        let order: Vec<u8> = (0..7)
            .map(|_| last_octet(&b.pick(client(1), &[], now).unwrap()))
            .collect();
        assert_eq!(order, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn round_robin_skips_endpoints_that_failed_this_connection() {
        let (mut b, now) = balancer(Policy::RoundRobin, None, 3);
        let first = b.pick(client(1), &[], now).unwrap();
        assert_eq!(last_octet(&first), 1);
        let second = b.pick(client(1), &[first.addr], now).unwrap();
        assert_eq!(last_octet(&second), 2);
        let third = b.pick(client(1), &[first.addr, second.addr], now).unwrap();
        assert_eq!(last_octet(&third), 3);
        assert!(b
            .pick(client(1), &[first.addr, second.addr, third.addr], now)
            .is_none());
    }

    #[test]
    fn empty_balancer_picks_nothing() {
        let mut b = Balancer::new(Policy::RoundRobin, None);
        assert!(b.pick(client(1), &[], Instant::now()).is_none());
        assert!(b.is_empty());
    }

    #[test]
    fn least_conn_prefers_the_least_loaded_and_rotates_ties() {
        let (mut b, now) = balancer(Policy::LeastConn, None, 3);
        // Equal load: behaves like round-robin.
        let a = b.pick(client(1), &[], now).unwrap();
        let g1 = ConnectionGuard::new(a.clone());
        let c = b.pick(client(1), &[], now).unwrap();
        let g2 = ConnectionGuard::new(c.clone());
        assert_eq!((last_octet(&a), last_octet(&c)), (1, 2));
        // Endpoints 1 and 2 busy: 3 is chosen, and again while it is idle.
        let third = b.pick(client(1), &[], now).unwrap();
        assert_eq!(last_octet(&third), 3);
        assert_eq!(last_octet(&b.pick(client(1), &[], now).unwrap()), 3);
        // Load 3 twice; now 1 (one connection, freed later) wins.
        let g3 = ConnectionGuard::new(third.clone());
        let g4 = ConnectionGuard::new(third.clone());
        drop(g1);
        assert_eq!(last_octet(&b.pick(client(1), &[], now).unwrap()), 1);
        assert_eq!(third.active(), 2);
        drop((g2, g3, g4));
        assert_eq!(third.active(), 0);
    }

    #[test]
    fn affinity_keeps_a_client_until_the_timeout() {
        let t = Duration::from_secs(10);
        let (mut b, now) = balancer(Policy::RoundRobin, Some(t), 3);
        let first = last_octet(&b.pick(client(1), &[], now).unwrap());
        // Other clients move the cursor; client 1, coming back within the
        // timeout each time (each connection renews it), stays put.
        let mut at = now;
        for i in 0..5 {
            b.pick(client(2 + i), &[], at);
            at += Duration::from_secs(9);
            assert_eq!(last_octet(&b.pick(client(1), &[], at).unwrap()), first);
        }
        let later = at;
        // ...and after a quiet timeout the client is balanced afresh.
        let mut seen = std::collections::BTreeSet::new();
        let mut t2 = later;
        for _ in 0..3 {
            t2 += t + Duration::from_secs(1);
            seen.insert(last_octet(&b.pick(client(1), &[], t2).unwrap()));
        }
        assert!(
            seen.len() > 1,
            "expired affinity should rebalance: {seen:?}"
        );
    }

    #[test]
    fn affinity_moves_a_client_off_a_failed_or_removed_endpoint() {
        let t = Duration::from_secs(100);
        let (mut b, now) = balancer(Policy::RoundRobin, Some(t), 3);
        let first = b.pick(client(1), &[], now).unwrap();
        let moved = b.pick(client(1), &[first.addr], now).unwrap();
        assert_ne!(moved.addr, first.addr);
        // The new choice sticks.
        assert_eq!(b.pick(client(1), &[], now).unwrap().addr, moved.addr);
        // The endpoint leaves the Service: the client moves again.
        let rest: Vec<_> = addrs(3).into_iter().filter(|a| *a != moved.addr).collect();
        b.update(&rest, Policy::RoundRobin, Some(t), Duration::ZERO, now);
        let again = b.pick(client(1), &[], now).unwrap();
        assert!(rest.contains(&again.addr));
    }

    #[test]
    fn affinity_sweeps_expired_clients() {
        let t = Duration::from_secs(1);
        let (mut b, now) = balancer(Policy::RoundRobin, Some(t), 2);
        for i in 1..=50 {
            b.pick(client(i), &[], now);
        }
        assert_eq!(b.affinity.as_ref().unwrap().clients.len(), 50);
        b.pick(client(200), &[], now + Duration::from_secs(5));
        assert_eq!(b.affinity.as_ref().unwrap().clients.len(), 1);
    }

    #[test]
    fn removed_endpoints_drain_then_close_unless_they_return() {
        let grace = Duration::from_secs(5);
        let now = Instant::now();
        let mut b = Balancer::new(Policy::RoundRobin, None);
        b.update(&addrs(3), Policy::RoundRobin, None, grace, now);
        let held: Vec<_> = (0..3)
            .map(|_| b.pick(client(1), &[], now).unwrap())
            .collect();

        // Endpoints 2 and 3 leave.
        let removed = b.update(&addrs(1), Policy::RoundRobin, None, grace, now);
        assert_eq!(removed, vec![addrs(3)[1], addrs(3)[2]]);
        assert_eq!(b.endpoints(), addrs(1));
        // New connections only reach endpoint 1.
        for _ in 0..3 {
            assert_eq!(last_octet(&b.pick(client(1), &[], now).unwrap()), 1);
        }
        // Before the grace ends nothing closes.
        assert!(!b.end_grace(addrs(3)[1], now + Duration::from_secs(1)));
        assert!(!held[1].closed().is_cancelled());

        // Endpoint 3 comes back in time: same backend, never closed.
        b.update(
            &addrs(3)[..1]
                .iter()
                .chain(&addrs(3)[2..])
                .copied()
                .collect::<Vec<_>>(),
            Policy::RoundRobin,
            None,
            grace,
            now,
        );
        assert!(!b.end_grace(addrs(3)[2], now + grace));
        assert!(!held[2].closed().is_cancelled());
        assert!(Arc::ptr_eq(
            &b.pick(client(1), &[addrs(3)[0]], now).unwrap(),
            &held[2]
        ));

        // Endpoint 2's grace ends: its connections are told to close.
        assert!(b.end_grace(addrs(3)[1], now + grace));
        assert!(held[1].closed().is_cancelled());
        assert!(!held[0].closed().is_cancelled());
    }

    #[test]
    fn cursor_survives_shrinking() {
        let (mut b, now) = balancer(Policy::RoundRobin, None, 3);
        b.pick(client(1), &[], now);
        b.pick(client(1), &[], now);
        b.update(&addrs(1), Policy::RoundRobin, None, Duration::ZERO, now);
        assert_eq!(last_octet(&b.pick(client(1), &[], now).unwrap()), 1);
    }
}
