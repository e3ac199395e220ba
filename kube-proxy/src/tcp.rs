//! TCP service ports: accept, choose an endpoint with the retry rule, relay.
//!
//! The retry rule: when an endpoint refuses the connect, is unreachable or
//! does not answer within `--connect-timeout`, the next endpoint is tried,
//! until every ready endpoint has been; a pod that stopped accepting costs
//! the client nothing. A connection no endpoint takes (none ready, or all
//! failed) is reset at once (RST), as promptly as a refused connect.
//!
//! Accepting: every data-plane thread has its own listening socket on the
//! address (SO_REUSEPORT), so the kernel wakes one thread per connection
//! instead of every thread racing for it. The thread that accepted keeps
//! the connection unless it carries more than `SLACK` connections above
//! the least loaded thread, in which case the connection (not yet
//! registered with any runtime) is handed to that thread: long-lived
//! connections end up spread evenly, whatever the kernel's hash did.
//!
//! Syscalls per connection are kept few: accepted sockets inherit
//! TCP_NODELAY from the listening socket; the endpoint socket gets it
//! before its SYN; a connect's success is read off the readiness event
//! (`SO_ERROR` is read only after a failure); and the last direction to
//! see EOF closes instead of shutting down first (see `splice.rs`).
//!
//! Bytes move with splice(2) (see `splice.rs`) or, where it is unavailable
//! or `--copy-mode copy` asks, with `tokio::io::copy_bidirectional`. A
//! connection also ends when its endpoint left the Service and the grace
//! (`--endpoint-close-grace`) ran out.

use crate::balancer::ConnectionGuard;
use crate::config::CopyMode;
use crate::dataplane::{DataPlane, LoadGuard};
use crate::metrics::{ActiveGuard, PortMetrics};
use crate::port::LivePort;
use crate::splice;
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Listen backlog of a service port.
const BACKLOG: i32 = 4096;

/// How many connections a data-plane thread may carry above the least
/// loaded one before it hands a new connection over (see
/// [`DataPlane::place`]). Small enough that 64 keep-alive connections split
/// within a few of even; not 0, so short connections rarely move.
const SLACK: usize = 2;

/// A listening socket on `addr`. Address reuse is on, so a restarted proxy
/// rebinds at once; port reuse too, so each data-plane thread has its own
/// socket on the address, and an exact address (a ClusterIP) and a
/// wildcard NodePort with the same number can both listen. Still std's:
/// [`serve`] registers it with the runtime it runs on.
pub fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit it: no setsockopt per connection.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Accepts connections until the task is aborted (the port went away or
/// moved); connections already accepted live on in their own tasks. Every
/// data-plane thread runs one of these (`me` is its index); a connection
/// stays on the thread that accepted it unless that thread carries more
/// than its share (see [`DataPlane::place`]).
pub async fn serve(
    listener: std::net::TcpListener,
    port: Arc<LivePort>,
    dataplane: Arc<DataPlane>,
    me: usize,
) {
    // SAFETY: the Socket owns its descriptor, which is neither replaced nor
    // closed while the AsyncFd holds it.
    let registered =
        unsafe { AsyncFd::register_with_interest(Socket::from(listener), Interest::READABLE) };
    let listener = match registered {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(port = %port.key, error = %e, "cannot register a listener");
            return;
        }
    };
    loop {
        let mut ready = match listener.readable().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(port = %port.key, error = %e, "listener failed");
                return;
            }
        };
        match ready.try_io(|l| {
            l.get_ref()
                .accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        }) {
            Ok(Ok((client, peer))) => {
                let Some(peer) = peer.as_socket() else {
                    continue;
                };
                let client = std::net::TcpStream::from(client);
                let (to, load) = dataplane.place(me, SLACK);
                let task = start(client, peer, port.clone(), load);
                if to == me {
                    tokio::spawn(task);
                } else {
                    dataplane.handles()[to].spawn(task);
                }
            }
            Ok(Err(e)) => {
                // Out of descriptors and the like: back off a little
                // instead of spinning.
                tracing::warn!(port = %port.key, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Drained; readiness cleared.
            Err(_would_block) => {}
        }
    }
}

/// A connection's task, on the thread that carries it.
async fn start(
    client: std::net::TcpStream,
    peer: SocketAddr,
    port: Arc<LivePort>,
    _load: LoadGuard,
) {
    match TcpStream::from_std(client) {
        Ok(client) => handle(client, peer, port).await,
        Err(e) => tracing::warn!(port = %port.key, error = %e, "cannot register a connection"),
    }
}

async fn handle(client: TcpStream, peer: SocketAddr, port: Arc<LivePort>) {
    let m = &port.metrics;
    PortMetrics::add(&m.connections, 1);
    let Some((upstream, conn)) = connect(&port, peer.ip()).await else {
        PortMetrics::add(&m.rejected, 1);
        tracing::debug!(port = %port.key, %peer, "no endpoint took the connection; resetting it");
        let _ = client.set_zero_linger();
        return;
    };
    let _active = ActiveGuard::new(m.clone());
    let backend = conn.backend().clone();
    tokio::select! {
        r = relay(client, upstream, &port) => {
            if let Err(e) = r {
                tracing::debug!(port = %port.key, %peer, endpoint = %backend.addr, error = %e,
                    "connection ended with an error");
            }
        }
        _ = backend.closed().cancelled() => {
            PortMetrics::add(&m.drained, 1);
            tracing::debug!(port = %port.key, %peer, endpoint = %backend.addr,
                "endpoint left the service and its grace ended; closing");
        }
    }
}

/// Connects to an endpoint, trying the next one on failure.
async fn connect(port: &LivePort, client: IpAddr) -> Option<(TcpStream, ConnectionGuard)> {
    let mut tried = Vec::new();
    loop {
        let conn = port.pick(client, &tried)?;
        let addr = conn.backend().addr;
        match tokio::time::timeout(port.config.connect_timeout, connect_to(addr)).await {
            Ok(Ok(stream)) => return Some((stream, conn)),
            Ok(Err(e)) => {
                tracing::debug!(port = %port.key, endpoint = %addr, error = %e,
                    "endpoint failed; trying the next");
            }
            Err(_) => {
                tracing::debug!(port = %port.key, endpoint = %addr, timeout = ?port.config.connect_timeout,
                    "endpoint did not answer; trying the next");
            }
        }
        PortMetrics::add(&port.metrics.endpoint_errors, 1);
        tried.push(addr);
    }
}

/// A connection to `addr`, with TCP_NODELAY set before the SYN. Success
/// is read off the readiness (a failed connect reports an error and a
/// hang-up), so `SO_ERROR` is only read when it failed.
async fn connect_to(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking(), None)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(socket.into())?;
    let ready = stream.ready(Interest::WRITABLE).await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream, port: &LivePort) -> io::Result<()> {
    let m = &port.metrics;
    match port.config.copy_mode {
        CopyMode::Splice => splice::relay(&mut client, &mut upstream, m)
            .await
            .map(|_| ()),
        CopyMode::Copy | CopyMode::Auto => {
            let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            PortMetrics::add(&m.bytes_in, up);
            PortMetrics::add(&m.bytes_out, down);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused connect is an error (so the next endpoint is tried), a
    /// listening endpoint a connected stream with TCP_NODELAY; accepted
    /// sockets inherit TCP_NODELAY from the listening socket.
    #[tokio::test]
    async fn connect_reports_refusal_and_sockets_have_nodelay() {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let up = connect_to(addr).await.unwrap();
        assert!(up.nodelay().unwrap());
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
        drop(l);
        // Nothing listens there any more.
        let e = connect_to(addr).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }
}
