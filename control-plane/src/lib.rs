//! rkube's control plane: a Raft-replicated object store served over gRPC.
//!
//! - [`disk`]: the write-ahead log and snapshots on disk (raft-rs `Storage`).
//! - [`state_machine`]: the key/object map, revisions and watch history.
//! - [`raft_node`]: the thread that drives raft-rs.
//! - [`transport`]: Raft messages between replicas.
//! - [`store`]: transactions, linearizable reads and notifications for the API.
//! - [`allocator`]: ClusterIP and NodePort allocation for Services.
//! - [`node_ipam`]: podCIDR allocation for Nodes.
//! - [`handlers`]: the API's verbs, independent of transport.
//! - [`grpc`]: the gRPC service over the handlers.
//! - [`leader`]: leader-only work: bootstrap, then [`scheduler`] and [`controllers`].
//! - [`server`]: wiring it all together from a configuration.

pub mod allocator;
pub mod auth;
pub mod controllers;
pub mod disk;
pub mod grpc;
pub mod handlers;
pub mod leader;
pub mod logging;
pub mod membership;
pub mod node_ipam;
pub mod raft_node;
pub mod scheduler;
pub mod server;
pub mod state_machine;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod transport;
