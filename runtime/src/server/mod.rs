//! The gRPC face of the runtime: the two services on a unix socket.

pub mod image_service;
pub mod runtime_service;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_stream::wrappers::UnixListenerStream;

use crate::proto::image_service_server::ImageServiceServer;
use crate::proto::runtime_service_server::RuntimeServiceServer;
use crate::runtime::Runtime;

/// ExecSync output and streamed archives can be large.
const MAX_MESSAGE: usize = 64 << 20;

/// Serves the API on `socket` until `shutdown` completes. Containers keep
/// running after the shim stops; the next shim adopts them.
pub async fn serve(
    rt: Arc<Runtime>,
    socket: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", socket.display())),
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    // Only root (the kubelet) may drive the runtime.
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "serving");
    tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(runtime_service::RuntimeApi::new(rt.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(image_service::ImageApi::new(rt))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serving gRPC")?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}
