//! Wires a replica together: disk, Raft driver, transport, API, leader work.

use crate::controllers::ControllerConfig;
use crate::grpc::GrpcApi;
use crate::handlers::Handlers;
use crate::leader;
use crate::node_ipam::CidrConfig;
use crate::raft_node::{self, Command, RaftConfig};
use crate::store::Store;
use crate::transport::{RaftPeerService, Transport, MAX_MESSAGE_BYTES};
use anyhow::{bail, Context, Result};
use rkube_api::auth::{Authenticator, Tokens};
use rkube_api::proto::api_server::ApiServer;
use rkube_api::proto::internal::raft_peer_server::RaftPeerServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub id: u64,
    /// Every replica: (id, host:port). The initial configuration; once
    /// membership changes, the replicated member list replaces it.
    pub peers: Vec<(u64, String)>,
    /// Join an existing cluster (`--join`): a new data directory starts with
    /// no configuration and waits to be added (`rkubectl member add`).
    pub join: bool,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub snapshot_interval: u64,
    pub snapshot_keep: u64,
    pub history_limit: usize,
    /// Where node podCIDRs are allocated from (the same on every replica).
    pub pod_cidrs: CidrConfig,
    pub controllers: ControllerConfig,
    /// TLS and authentication; `None` is `--insecure` (plaintext, no
    /// authentication: tests and benchmarks only).
    pub security: Option<Security>,
}

/// PEM material and tokens of a secure replica.
#[derive(Clone, Debug)]
pub struct Security {
    /// This replica's certificate (serving, and client to its peers).
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The cluster CA: client certificates and peers are verified with it.
    pub ca_pem: Vec<u8>,
    pub tokens: Tokens,
}

impl Security {
    /// Reads `--tls-cert`, `--tls-key`, `--client-ca` and the optional
    /// `--token-auth-file`.
    pub fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        tokens: Option<&std::path::Path>,
    ) -> Result<Security> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).with_context(|| format!("{what} {}", p.display()))
        };
        let tokens = match tokens {
            Some(p) => Tokens::parse(&String::from_utf8_lossy(&read(p, "--token-auth-file")?))
                .map_err(|e| anyhow::anyhow!("--token-auth-file {}: {e}", p.display()))?,
            None => Tokens::default(),
        };
        Ok(Security {
            cert_pem: read(cert, "--tls-cert")?,
            key_pem: read(key, "--tls-key")?,
            ca_pem: read(ca, "--client-ca")?,
            tokens,
        })
    }

    /// How this replica dials its peers.
    pub fn peer_tls(&self) -> rkube_api::kubeconfig::TlsConfig {
        rkube_api::kubeconfig::TlsConfig {
            ca_pem: self.ca_pem.clone(),
            cert_pem: Some(self.cert_pem.clone()),
            key_pem: Some(self.key_pem.clone()),
            server_name: rkube_api::kubeconfig::CONTROL_PLANE_SERVER_NAME.into(),
        }
    }
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_peers(s: &str) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("peer {part:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .with_context(|| format!("peer {part:?}: the id must be a positive number"))?;
        if id == 0 {
            bail!("peer {part:?}: id 0 is reserved");
        }
        if out.iter().any(|(i, _)| *i == id) {
            bail!("peer id {id} appears twice");
        }
        out.push((id, addr.to_string()));
    }
    if out.is_empty() {
        bail!("no peers given");
    }
    Ok(out)
}

/// Runs a replica until `shutdown` resolves.
pub async fn run(cfg: ServerConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    if !cfg.join && !cfg.peers.iter().any(|(id, _)| *id == cfg.id) {
        bail!(
            "--id {} is not among the peers (a replica joining an existing cluster is \
             started with --join)",
            cfg.id
        );
    }
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let peer_tls = cfg.security.as_ref().map(Security::peer_tls);
    let transport = Transport::start(cfg.id, &cfg.peers, cmd_tx.clone(), peer_tls);
    let raft_cfg = RaftConfig {
        id: cfg.id,
        voters: cfg.peers.iter().map(|(id, _)| *id).collect(),
        peers: cfg.peers.clone(),
        join: cfg.join,
        data_dir: cfg.data_dir.clone(),
        tick: cfg.tick,
        election_ticks: cfg.election_ticks,
        heartbeat_ticks: cfg.heartbeat_ticks,
        snapshot_interval: cfg.snapshot_interval,
        snapshot_keep: cfg.snapshot_keep,
        history_limit: cfg.history_limit,
    };
    let (shared, driver) = raft_node::start(raft_cfg, transport, cmd_rx)?;
    let removed = shared.removed.clone();
    let store = Store::new(cfg.id, cmd_tx.clone(), shared);
    let handlers = Handlers::new(store).with_pod_cidrs(cfg.pod_cidrs.clone());
    tokio::spawn(leader::run(
        handlers.clone(),
        leader::default_tasks(cfg.controllers.clone()),
    ));

    let auth = Authenticator {
        secure: cfg.security.is_some(),
        tokens: cfg
            .security
            .as_ref()
            .map(|s| s.tokens.clone())
            .unwrap_or_default(),
    };
    let api = ApiServer::new(GrpcApi {
        handlers: handlers.clone(),
        auth: auth.clone(),
    })
    .max_decoding_message_size(8 * 1024 * 1024)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let peer_svc = RaftPeerServer::new(RaftPeerService {
        commands: cmd_tx.clone(),
        auth,
        removed,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tracing::info!(id = cfg.id, listen = %cfg.listen, data = %cfg.data_dir.display(), "control-plane replica starting");
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(sec) = &cfg.security {
        builder = builder
            .tls_config(
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(&sec.cert_pem, &sec.key_pem))
                    .client_ca_root(Certificate::from_pem(&sec.ca_pem))
                    // Token clients have no certificate; the API refuses
                    // callers with neither.
                    .client_auth_optional(true),
            )
            .context("TLS settings (--tls-cert, --tls-key, --client-ca)")?;
    }
    builder
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(api)
        .add_service(peer_svc)
        .serve_with_incoming_shutdown(
            // Nagle's algorithm with delayed ACKs would add ~40 ms to every
            // small response; a custom listener does not inherit
            // `tcp_nodelay`, so set it on each connection.
            tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |s| {
                    s.inspect(|s| {
                        let _ = s.set_nodelay(true);
                    })
                },
            ),
            {
                let handlers = handlers.clone();
                async move {
                    shutdown.await;
                    handlers.shutdown();
                }
            },
        )
        .await
        .context("serving gRPC")?;
    let _ = cmd_tx.send(Command::Shutdown);
    let _ = tokio::task::spawn_blocking(move || driver.join()).await;
    Ok(())
}
