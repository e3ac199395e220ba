//! rkube's kubelet: the node agent. See docs/architecture.md ("Node").

pub mod server;

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
