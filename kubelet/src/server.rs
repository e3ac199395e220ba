//! The kubelet's gRPC endpoint (`rkube.kubelet.v1.Kubelet`): container logs
//! and exec for rkubectl, relayed to the runtime shim.
//! (Being written; see docs/architecture.md.)

use rkube_runtime::client::RuntimeClient;

/// What the endpoint needs.
#[derive(Clone)]
pub struct ServerContext {
    pub runtime: RuntimeClient,
    pub node_name: String,
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, ctx: ServerContext) -> anyhow::Result<()> {
    let _ = (listener, ctx);
    std::future::pending::<()>().await;
    Ok(())
}
