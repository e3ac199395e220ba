//! rkube's container runtime shim: a CRI-shaped gRPC service on a unix
//! socket that runs pods as runc containers on a CNI pod network.
//!
//! - `server/` — the gRPC services (RuntimeService, ImageService) and the
//!   socket; `client` — how a kubelet connects.
//! - `runtime` — the node's state, adopted from disk at start; its verbs:
//!   `sandbox` (pod sandboxes), `container`, `exec`, `image_verbs`;
//!   `events` (container events); `users` (a container's uid/gid).
//! - `oci/` — bundles (`bundle`), `runc`, a task and its per-task
//!   `monitor` process, the CRI log format (`cri_log`).
//! - `network/` — the CNI client (`cni`) and the default pod network
//!   (`pod_network`: bridge cbr0, host-local, portmap, firewall, loopback).
//! - `images/` — references, the image store, layers, the registry client,
//!   OCI archives and the image builder.
//! - `host/` — netns, cgroups, mounts, processes; `pause` — the pause
//!   binary; `console` — exec terminals.
//! - `records`, `error`, `options`, `proto`.

pub mod client;
pub mod console;
pub mod container;
pub mod error;
pub mod events;
pub mod exec;
pub mod host;
pub mod image_verbs;
pub mod images;
pub mod network;
pub mod oci;
pub mod options;
pub mod pause;
pub mod proto;
pub mod records;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod users;
