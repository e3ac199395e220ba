//! Pod networking: a CNI client (spec 1.x) and the node's default pod
//! network built on the reference plugins.

pub mod cni;
pub mod pod_network;
