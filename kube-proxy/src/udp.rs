//! UDP service ports: a session per client address.
//!
//! The first datagram from a client picks an endpoint (policy and affinity
//! as for TCP) and opens a connected socket to it; later datagrams from the
//! same client follow it, and replies come back through the service socket,
//! so the client sees them from the address it wrote to. A session ends
//! when the client has been silent for `--udp-idle-timeout` (30 s), when
//! the endpoint refuses (ICMP port unreachable; the next datagram opens a
//! new session), or when the endpoint left the Service and its grace ended.
//! With no ready endpoint the datagram is dropped.
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
use tokio::time::Instant;

/// Sessions per service port at most; datagrams of further clients are
/// dropped until some expire (each session holds a socket).
pub const MAX_SESSIONS: usize = 16 * 1024;

const DATAGRAM_MAX: usize = 64 * 1024;

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
    _active: ActiveGuard,
}

impl Session {
    fn touch(&self) {
        *self.last_active.lock() = Instant::now();
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
            None => match open(&port, client, &socket, &sessions).await {
                Some(s) => s,
                None => {
                    PortMetrics::add(&port.metrics.rejected, 1);
                    continue;
                }
            },
        };
        session.touch();
        match session.upstream.send(&buf[..n]).await {
            Ok(sent) => PortMetrics::add(&port.metrics.bytes_in, sent as u64),
            Err(e) => {
                tracing::debug!(port = %port.key, %client, error = %e, "udp send to endpoint failed");
                PortMetrics::add(&port.metrics.endpoint_errors, 1);
            }
        }
    }
}

/// Opens a session for `client`: an endpoint, a socket connected to it, and
/// the task that relays its replies.
async fn open(
    port: &Arc<LivePort>,
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    sessions: &Sessions,
) -> Option<Arc<Session>> {
    if sessions.lock().len() >= MAX_SESSIONS {
        tracing::warn!(port = %port.key, "too many UDP sessions; dropping a new client's datagram");
        return None;
    }
    let mut tried = Vec::new();
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
        _active: ActiveGuard::new(port.metrics.clone()),
    });
    sessions.lock().insert(client, session.clone());
    tokio::spawn(replies(
        session.clone(),
        socket.clone(),
        client,
        port.clone(),
        sessions.clone(),
    ));
    Some(session)
}

/// Relays an endpoint's replies to the client until the session ends.
async fn replies(
    session: Arc<Session>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    port: Arc<LivePort>,
    sessions: Sessions,
) {
    let idle = port.config.udp_idle_timeout;
    let closed = session.conn.backend().closed().clone();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let deadline = *session.last_active.lock() + idle;
        tokio::select! {
            r = session.upstream.recv(&mut buf) => match r {
                Ok(n) => {
                    session.touch();
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
                    break;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                if session.last_active.lock().elapsed() >= idle {
                    break;
                }
            }
            _ = closed.cancelled() => {
                PortMetrics::add(&port.metrics.drained, 1);
                break;
            }
        }
    }
    let mut map = sessions.lock();
    if map.get(&client).is_some_and(|s| Arc::ptr_eq(s, &session)) {
        map.remove(&client);
    }
}
