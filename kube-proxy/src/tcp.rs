//! TCP service ports: accept, choose an endpoint with the retry rule, relay.
//!
//! The retry rule: when an endpoint refuses the connect, is unreachable or
//! does not answer within `--connect-timeout`, the next endpoint is tried,
//! until every ready endpoint has been; a pod that stopped accepting costs
//! the client nothing. A connection no endpoint takes (none ready, or all
//! failed) is reset at once (RST), as promptly as a refused connect.
//!
//! Bytes move with splice(2) (see `splice.rs`) or, where it is unavailable
//! or `--copy-mode copy` asks, with `tokio::io::copy_bidirectional`. A
//! connection also ends when its endpoint left the Service and the grace
//! (`--endpoint-close-grace`) ran out.

use crate::balancer::ConnectionGuard;
use crate::config::CopyMode;
use crate::metrics::{ActiveGuard, PortMetrics};
use crate::port::LivePort;
use crate::splice;
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Listen backlog of a service port.
const BACKLOG: i32 = 4096;

/// A listening socket on `addr`. Address reuse is on, so a restarted proxy
/// rebinds at once; port reuse too, so an exact address (a ClusterIP) and a
/// wildcard NodePort with the same number can both listen. Still std's:
/// [`serve`] registers it with the runtime it runs on.
pub fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Accepts connections until the task is aborted (the port went away or
/// moved); connections already accepted live on in their own tasks, on
/// this thread. Every data-plane thread runs one of these on its own
/// descriptor of the same socket.
pub async fn serve(listener: std::net::TcpListener, port: Arc<LivePort>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(port = %port.key, error = %e, "cannot register a listener");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(handle(client, peer, port.clone()));
            }
            Err(e) => {
                // Out of descriptors and the like: back off a little
                // instead of spinning.
                tracing::warn!(port = %port.key, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
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
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
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
        match tokio::time::timeout(port.config.connect_timeout, TcpStream::connect(addr)).await {
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
