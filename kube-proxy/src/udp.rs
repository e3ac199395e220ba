//! UDP service ports: a session per client address.
//!
//! The first datagram from a client picks an endpoint (policy and affinity
//! as for TCP) and opens a connected socket to it; later datagrams from the
//! same client follow it, and replies come back through the service socket,
//! so the client sees them from the address it wrote to. A session ends
//! when the client has been silent for `--udp-idle-timeout` (30 s), when
//! the endpoint refuses (ICMP port unreachable), or when the endpoint left
//! the Service and its grace ended. With no ready endpoint the datagram is
//! dropped.
//!
//! The retry rule, for UDP: a session keeps the datagrams its endpoint has
//! not answered yet (since its last reply; at most [`RETRY_DATAGRAMS`]).
//! When the endpoint refuses them, they go to the next endpoint this
//! client's datagrams were not refused by, in a new session — so a dead
//! pod still listed in the Endpoints (a DNS replica that just died) costs
//! the client no lost query. This needs the refusal, which the kernel
//! rate-limits (ICMP: a burst of 6, then one a second per peer); beyond
//! that a datagram is lost as before, until the Endpoints drop the pod.
//!
//! Limit: a NodePort socket bound to 0.0.0.0 answers from the address the
//! kernel's route picks, which on a multi-homed node may differ from the
//! address the client wrote to; list node addresses in
//! `--nodeport-addresses` to pin them.

use crate::balancer::ConnectionGuard;
use crate::metrics::{ActiveGuard, PortMetrics};
use crate::port::LivePort;
use parking_lot::Mutex;
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Sessions per service port at most; datagrams of further clients are
/// dropped until some expire (each session holds a socket).
pub const MAX_SESSIONS: usize = 16 * 1024;

const DATAGRAM_MAX: usize = 64 * 1024;

/// Unanswered datagrams a session keeps for the retry rule, at most (and
/// at most [`RETRY_BYTES`] of them).
pub const RETRY_DATAGRAMS: usize = 8;
const RETRY_BYTES: usize = 64 * 1024;

/// A UDP socket bound to `addr` (std's: [`serve`] registers it with the
/// runtime it runs on).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

struct Session {
    upstream: UdpSocket,
    conn: ConnectionGuard,
    last_active: Mutex<Instant>,
    /// Datagrams sent since the endpoint last answered (bounded).
    unanswered: Mutex<Unanswered>,
    /// A send saw the endpoint's refusal (the kernel reports an ICMP error
    /// once, to whichever call on the socket comes first).
    refused: Notify,
    /// Endpoints that refused this client's datagrams before this one.
    tried: Vec<SocketAddr>,
    _active: ActiveGuard,
}

impl Session {
    fn touch(&self) {
        *self.last_active.lock() = Instant::now();
    }

    /// Sends one client datagram to the endpoint, keeping it until the
    /// endpoint answers.
    async fn forward(&self, datagram: &[u8], metrics: &PortMetrics) {
        self.unanswered.lock().push(datagram);
        match self.upstream.send(datagram).await {
            Ok(sent) => PortMetrics::add(&metrics.bytes_in, sent as u64),
            Err(e) => {
                tracing::debug!(endpoint = %self.conn.backend().addr, error = %e,
                    "udp send to endpoint failed");
                PortMetrics::add(&metrics.endpoint_errors, 1);
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                ) {
                    self.refused.notify_one();
                }
            }
        }
    }
}

/// Datagrams the endpoint has not answered yet, oldest first.
#[derive(Default)]
struct Unanswered {
    datagrams: Vec<Vec<u8>>,
    bytes: usize,
}

impl Unanswered {
    fn push(&mut self, d: &[u8]) {
        if self.datagrams.len() < RETRY_DATAGRAMS && self.bytes + d.len() <= RETRY_BYTES {
            self.bytes += d.len();
            self.datagrams.push(d.to_vec());
        }
    }

    fn clear(&mut self) {
        self.datagrams.clear();
        self.bytes = 0;
    }

    fn take(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.datagrams)
    }
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>;

/// Receives client datagrams until the task is aborted; sessions already
/// open end by their own rules.
pub async fn serve(socket: std::net::UdpSocket, port: Arc<LivePort>) {
    let socket = match UdpSocket::from_std(socket) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(port = %port.key, error = %e, "cannot register a UDP socket");
            return;
        }
    };
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(port = %port.key, error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let existing = sessions.lock().get(&client).cloned();
        let session = match existing {
            Some(s) => s,
            None => match open(&port, client, &socket, &sessions, Vec::new()).await {
                Some(s) => s,
                None => {
                    PortMetrics::add(&port.metrics.rejected, 1);
                    continue;
                }
            },
        };
        session.touch();
        session.forward(&buf[..n], &port.metrics).await;
    }
}

/// Opens a session for `client` and starts the task that relays its
/// replies.
async fn open(
    port: &Arc<LivePort>,
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    sessions: &Sessions,
    tried: Vec<SocketAddr>,
) -> Option<Arc<Session>> {
    let session = new_session(port, client, sessions, tried).await?;
    tokio::spawn(replies(
        session.clone(),
        socket.clone(),
        client,
        port.clone(),
        sessions.clone(),
    ));
    Some(session)
}

/// A session for `client` (registered in `sessions`): an endpoint not in
/// `tried` and a socket connected to it.
async fn new_session(
    port: &Arc<LivePort>,
    client: SocketAddr,
    sessions: &Sessions,
    mut tried: Vec<SocketAddr>,
) -> Option<Arc<Session>> {
    if sessions.lock().len() >= MAX_SESSIONS {
        tracing::warn!(port = %port.key, "too many UDP sessions; dropping a new client's datagram");
        return None;
    }
    let (upstream, conn) = loop {
        let conn = port.pick(client.ip(), &tried)?;
        let addr = conn.backend().addr;
        let local: SocketAddr = match addr.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let attempt = async {
            let s = UdpSocket::bind(local).await?;
            s.connect(addr).await?;
            Ok::<_, io::Error>(s)
        };
        match attempt.await {
            Ok(s) => break (s, conn),
            Err(e) => {
                tracing::debug!(endpoint = %addr, error = %e, "endpoint unreachable; trying the next");
                PortMetrics::add(&port.metrics.endpoint_errors, 1);
                tried.push(addr);
            }
        }
    };
    PortMetrics::add(&port.metrics.connections, 1);
    let session = Arc::new(Session {
        upstream,
        conn,
        last_active: Mutex::new(Instant::now()),
        unanswered: Mutex::default(),
        refused: Notify::new(),
        tried,
        _active: ActiveGuard::new(port.metrics.clone()),
    });
    sessions.lock().insert(client, session.clone());
    Some(session)
}

/// How a session ended.
#[derive(PartialEq)]
enum End {
    Idle,
    Drained,
    Refused,
}

/// Relays an endpoint's replies to the client until the session ends. When
/// the endpoint refused, its unanswered datagrams go to the next endpoint
/// (the retry rule), whose session this task then relays.
async fn replies(
    mut session: Arc<Session>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    port: Arc<LivePort>,
    sessions: Sessions,
) {
    loop {
        let end = relay_replies(&session, &socket, client, &port).await;
        {
            let mut map = sessions.lock();
            if map.get(&client).is_some_and(|s| Arc::ptr_eq(s, &session)) {
                map.remove(&client);
            }
        }
        if end != End::Refused {
            return;
        }
        let pending = session.unanswered.lock().take();
        if pending.is_empty() {
            return;
        }
        let from = session.conn.backend().addr;
        // A later datagram may have opened the client's next session
        // already; its own task relays it.
        let existing = sessions.lock().get(&client).cloned();
        let (next, ours) = match existing {
            Some(s) => (s, false),
            None => {
                let mut tried = session.tried.clone();
                tried.push(from);
                match new_session(&port, client, &sessions, tried).await {
                    Some(s) => (s, true),
                    None => {
                        tracing::debug!(port = %port.key, %client, datagrams = pending.len(),
                            "no other endpoint for datagrams a refusing endpoint did not answer");
                        PortMetrics::add(&port.metrics.rejected, 1);
                        return;
                    }
                }
            }
        };
        tracing::debug!(port = %port.key, %client, datagrams = pending.len(),
            %from, to = %next.conn.backend().addr,
            "resending unanswered datagrams to the next endpoint");
        for d in &pending {
            next.forward(d, &port.metrics).await;
        }
        if !ours {
            return;
        }
        session = next;
    }
}

/// Relays one session's replies until it ends.
async fn relay_replies(
    session: &Session,
    socket: &UdpSocket,
    client: SocketAddr,
    port: &LivePort,
) -> End {
    let idle = port.config.udp_idle_timeout;
    let closed = session.conn.backend().closed().clone();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let deadline = *session.last_active.lock() + idle;
        tokio::select! {
            r = session.upstream.recv(&mut buf) => match r {
                Ok(n) => {
                    session.touch();
                    session.unanswered.lock().clear();
                    match socket.send_to(&buf[..n], client).await {
                        Ok(sent) => PortMetrics::add(&port.metrics.bytes_out, sent as u64),
                        Err(e) => tracing::debug!(%client, error = %e, "udp reply to client failed"),
                    }
                }
                Err(e) => {
                    // ICMP port unreachable shows up here on a connected socket.
                    tracing::debug!(endpoint = %session.conn.backend().addr, error = %e,
                        "endpoint refused; ending the session");
                    PortMetrics::add(&port.metrics.endpoint_errors, 1);
                    return End::Refused;
                }
            },
            _ = session.refused.notified() => {
                tracing::debug!(endpoint = %session.conn.backend().addr,
                    "endpoint refused; ending the session");
                return End::Refused;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if session.last_active.lock().elapsed() >= idle {
                    return End::Idle;
                }
            }
            _ = closed.cancelled() => {
                PortMetrics::add(&port.metrics.drained, 1);
                return End::Drained;
            }
        }
    }
}
