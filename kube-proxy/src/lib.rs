//! rkube's kube-proxy, userspace mode: makes Service addresses reach ready
//! endpoints on this node.
//!
//! - [`watch`]: list-then-watch loops for Services and Endpoints.
//! - [`cache`]: the objects they keep, and which Services an update touches.
//! - [`table`]: what one Service asks (ports, frontends, ready endpoints,
//!   policy, affinity) and how two such answers differ.
//! - [`sync`]: the loop from watch updates to the proxier.
//! - [`proxier`]: applies a Service's table: addresses, listeners, balancers.
//! - [`iface`]: the interface ClusterIPs live on.
//! - [`port`]: what the listeners of one service port share.
//! - [`balancer`]: round-robin, least-connections, client-IP affinity.
//! - [`dataplane`]: one single-threaded runtime per CPU carrying traffic.
//! - [`tcp`], [`udp`]: the data path; [`splice`]: zero-copy TCP relaying.
//! - [`metrics`]: per-port counters on `/metrics`; [`report`]: problems as
//!   logs and Events.
//! - [`config`]: the flags' meaning.
//! - [`netns`], [`testbed`]: throwaway network namespaces, echo pods and the
//!   proxy process, for the integration tests and the benchmark.
//!
//! - [`announce`]: LoadBalancer addresses (given by the control plane's
//!   `--lb-pool` controller): which one Ready node announces each, by Lease;
//!   that node puts the address on its interface and listens on
//!   ingress-IP:port. Their `nodePort`s listen on every node as well.

pub mod announce;
pub mod balancer;
pub mod cache;
pub mod config;
pub mod dataplane;
pub mod iface;
pub mod metrics;
pub mod netns;
pub mod port;
pub mod proxier;
pub mod report;
pub mod splice;
pub mod sync;
pub mod table;
pub mod tcp;
pub mod testbed;
pub mod udp;
pub mod watch;
