//! `dns`: the cluster DNS server. Wires the index, the watches, the
//! forwarder, the metrics endpoint and the listeners, then runs until
//! SIGINT or SIGTERM.

use anyhow::{Context, Result};
use clap::Parser;
use parking_lot::{Mutex, RwLock};
use rkube_api::client::Client;
use rkube_dns::config::Config;
use rkube_dns::forward::Forwarder;
use rkube_dns::handler::DnsHandler;
use rkube_dns::index::{NameIndex, SharedIndex, ZoneConfig};
use rkube_dns::metrics::{self, Metrics};
use rkube_dns::names::ClusterDomain;
use rkube_dns::records::ClusterRecords;
use rkube_dns::{server, watch};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// hickory logs every request at `info`; keep it to warnings unless asked.
const DEFAULT_LOG: &str = "info,hickory_server=warn,hickory_net=warn,hickory_proto=warn";

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();

    let domain = ClusterDomain::new(&config.domain)
        .with_context(|| format!("--domain {:?} is not a domain name", config.domain))?;
    let index: SharedIndex = Arc::new(RwLock::new(NameIndex::new(ZoneConfig {
        domain,
        ttl: config.ttl,
        nameserver_ip: Some(config.nameserver_ip),
        reverse_cidrs: config.reverse_cidrs.clone(),
    })));
    let records = Arc::new(Mutex::new(ClusterRecords::new(index.clone())));
    let client = Client::for_daemon(config.kubeconfig.as_deref(), &config.server)
        .map_err(anyhow::Error::msg)
        .context("--server")?;
    watch::spawn_all(client, records);

    let upstreams = config.upstreams();
    if upstreams.is_empty() {
        tracing::warn!("no upstream resolvers: names outside the zone will SERVFAIL");
    }
    let forwarder = Arc::new(Forwarder::new(
        upstreams.clone(),
        config.upstream_timeout(),
        config.max_forwards,
    ));
    let metrics = Arc::new(Metrics::new(index.clone()));
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding --metrics-listen {}", config.metrics_listen))?;
    tokio::spawn(metrics::serve(metrics_listener, metrics.clone()));

    let handler = DnsHandler::new(index, forwarder, metrics);
    let mut dns = server::start(
        handler,
        config.listen,
        config.udp_sockets(),
        config.udp_path,
        Duration::from_secs(config.tcp_idle_timeout_secs.max(1)),
    )
    .with_context(|| format!("binding --listen {}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        metrics = %config.metrics_listen,
        domain = %config.domain,
        upstreams = ?upstreams,
        "serving DNS"
    );

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = dns.block_until_done() => {
            r.context("the DNS server stopped")?;
            return Ok(());
        }
    }
    tracing::info!("shutting down");
    dns.shutdown_gracefully().await.context("shutting down")?;
    Ok(())
}
