//! kubelet: registers this node, keeps its Lease and status fresh, routes
//! to other nodes' pods, and runs the pods bound here through the runtime
//! shim. Stopping the kubelet leaves every pod running; the next kubelet
//! adopts them.

use anyhow::{Context, Result};
use clap::Parser;
use rkube_api::client::Client;
use rkube_kubelet::config::Config;
use rkube_kubelet::{dns, events, manager, node, routes, server, Ctx};
use rkube_runtime::proto as rt;
use std::sync::Arc;
use std::time::Duration;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::parse();
    let node_name = cfg.node_name.clone().unwrap_or_else(hostname);
    let node_ip = match &cfg.node_ip {
        Some(ip) => ip.clone(),
        None => {
            node::default_ip().context("no --node-ip given and no default route to take it from")?
        }
    };
    let connect =
        rkube_api::kubeconfig::daemon_connect_config(cfg.kubeconfig.as_deref(), &cfg.server)
            .map_err(anyhow::Error::msg)?;
    let client = Client::connect(&connect).map_err(anyhow::Error::msg)?;

    // The runtime: wait for its socket and RuntimeReady.
    let (mut runtime, images) = loop {
        match rkube_runtime::client::clients(&cfg.runtime_socket).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "waiting for the container runtime");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let version = loop {
        match runtime.version(rt::VersionRequest::default()).await {
            Ok(v) => break v.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the container runtime");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };

    // The endpoint for logs and exec.
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let port = listener.local_addr()?.port();
    tokio::spawn({
        let ctx = server::ServerContext {
            runtime: runtime.clone(),
            node_name: node_name.clone(),
            tls: connect.tls.as_ref().and_then(|t| {
                Some(server::EndpointTls {
                    cert_pem: t.cert_pem.clone()?,
                    key_pem: t.key_pem.clone()?,
                    ca_pem: t.ca_pem.clone(),
                })
            }),
        };
        async move {
            if let Err(e) = server::serve(listener, ctx).await {
                tracing::error!(error = %format!("{e:#}"), "kubelet endpoint stopped");
            }
        }
    });

    let mut info = node::NodeInfo::gather(&cfg, &node_name, &node_ip, port)?;
    info.system.container_runtime_version =
        format!("{}://{}", version.runtime_name, version.runtime_version);
    let ready = node::runtime_ready(&mut runtime).await;
    let registered = loop {
        match node::register(&client, &info, ready.clone()).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "registering the node; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(node = %node_name, ip = %node_ip, port, "node registered");
    routes::install_guards(&cfg.unreachable_routes);
    tokio::spawn(node::lease_loop(
        client.clone(),
        node_name.clone(),
        cfg.node_lease_duration_seconds,
        cfg.lease_renew_period(),
    ));

    // The pod network needs the node's pod CIDR.
    let cidr = match registered
        .spec
        .as_ref()
        .map(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
    {
        Some(c) => c,
        None => node::wait_pod_cidr(&client, &node_name).await,
    };
    runtime
        .update_runtime_config(rt::UpdateRuntimeConfigRequest {
            network_config: Some(rt::NetworkConfig {
                pod_cidr: cidr.clone(),
            }),
        })
        .await
        .context("handing the pod CIDR to the runtime")?;
    tracing::info!(pod_cidr = %cidr, "pod network configured");
    info.pod_cidr = Some(cidr.clone());
    tokio::spawn(node::status_loop(
        client.clone(),
        runtime.clone(),
        info.clone(),
        cfg.node_status_period(),
    ));
    if !cfg.no_routes {
        tokio::spawn(routes::run(client.clone(), node_name.clone()));
    }

    let host_resolv =
        dns::parse_resolv_conf(&std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default());
    let ctx = Arc::new(Ctx {
        recorder: events::Recorder::new(client.clone(), &node_name),
        cfg,
        client,
        runtime,
        images,
        node_name,
        node_ip,
        host_resolv,
        sandbox_owner: Default::default(),
    });
    tokio::spawn(manager::Manager::new(ctx).run());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("kubelet stopping; pods keep running");
    Ok(())
}
