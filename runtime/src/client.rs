//! Connecting to a shim's unix socket (for the kubelet and tests).

use std::path::{Path, PathBuf};

use anyhow::Context;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::image_service_client::ImageServiceClient;
use crate::proto::runtime_service_client::RuntimeServiceClient;

pub type RuntimeClient = RuntimeServiceClient<Channel>;
pub type ImageClient = ImageServiceClient<Channel>;

/// A channel to the shim listening on `socket`.
pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let path: PathBuf = socket.to_path_buf();
    // The URI is required by the transport but unused: the connector dials
    // the socket.
    Endpoint::try_from("http://rkube-runtime.local")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| format!("connecting to the runtime at {}", socket.display()))
}

/// Both clients over one channel, with room for large messages.
pub async fn clients(socket: &Path) -> anyhow::Result<(RuntimeClient, ImageClient)> {
    let channel = connect(socket).await?;
    let max = 64 << 20;
    Ok((
        RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        ImageServiceClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    ))
}
