//! rkube's kubelet: the node agent. See docs/architecture.md ("Node").

pub mod config;
pub mod convert;
pub mod dns;
pub mod events;
pub mod manager;
pub mod node;
pub mod probes;
pub mod routes;
pub mod server;
pub mod worker;

use std::collections::HashMap;
use std::sync::Mutex;

/// Labels the kubelet puts on sandboxes and containers in the runtime, so it
/// (and its endpoint) can find a pod's sandbox and containers again, also
/// after a restart.
pub mod labels {
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// On containers only.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// What every part of the kubelet shares.
pub struct Ctx {
    pub cfg: config::Config,
    pub client: rkube_api::client::Client,
    pub runtime: rkube_runtime::client::RuntimeClient,
    pub images: rkube_runtime::client::ImageClient,
    pub node_name: String,
    pub node_ip: String,
    pub recorder: events::Recorder,
    pub host_resolv: dns::HostResolv,
    /// Sandbox id -> pod uid, for routing runtime events.
    pub sandbox_owner: Mutex<HashMap<String, String>>,
}
