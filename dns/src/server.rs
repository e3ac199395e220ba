//! Binds the DNS listeners: TCP through hickory-server's `Server` (with an
//! idle timeout), UDP through several SO_REUSEPORT sockets so the kernel
//! spreads datagrams over them, each read by its own loop — the direct loop
//! in `udp.rs` by default, or hickory-server's UDP server for comparison.

use crate::handler::DnsHandler;
use crate::udp;
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// Outgoing responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// A receive buffer large enough to absorb bursts (the kernel caps it at
/// `net.core.rmem_max`).
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Which code reads the UDP sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UdpPath {
    /// `udp.rs`: answers from the index inline, spawns only forwards.
    Direct,
    /// hickory-server's UDP server: a task per datagram.
    Hickory,
}

/// Binds `udp_sockets` UDP sockets and a TCP listener on `listen` and starts
/// serving. The returned server (TCP, and UDP on the hickory path) runs until
/// shut down; direct UDP loops run until the runtime ends.
pub fn start(
    handler: DnsHandler,
    listen: SocketAddr,
    udp_sockets: usize,
    udp_path: UdpPath,
    tcp_idle_timeout: Duration,
) -> io::Result<Server<DnsHandler>> {
    let shared = Arc::new(handler.clone());
    let mut server = Server::new(handler);
    for _ in 0..udp_sockets.max(1) {
        let socket = udp_socket(listen)?;
        match udp_path {
            UdpPath::Direct => {
                tokio::spawn(udp::serve(Arc::new(socket), shared.clone()));
            }
            UdpPath::Hickory => server.register_socket(socket),
        }
    }
    let tcp = std::net::TcpListener::bind(listen)?;
    tcp.set_nonblocking(true)?;
    server.register_listener(
        TcpListener::from_std(tcp)?,
        tcp_idle_timeout,
        TCP_RESPONSE_BUFFER,
    );
    Ok(server)
}

fn udp_socket(listen: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::debug!(error = %e, "could not enlarge the UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    UdpSocket::from_std(socket.into())
}
