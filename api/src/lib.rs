//! rkube's shared API library.
//!
//! - [`proto`]: the generated object types and gRPC stubs (`proto/`).
//! - [`kinds`]: what each kind is called, where it lives, how to reach its metadata.
//! - [`manifest`]: strict YAML/JSON decoding with line and field-path errors, and encoding.
//! - [`selector`]: label selectors (`-l` syntax, matchLabels/matchExpressions) and field selectors.
//! - [`validation`]: field-path validation of objects before they are stored.
//! - [`defaults`]: defaulting applied on create.
//! - [`client`]: a client that knows every control-plane replica and fails over.

pub mod auth;
pub mod client;
pub mod defaults;
pub mod kinds;
pub mod kubeconfig;
pub mod manifest;
pub mod quantity;
pub mod selector;
pub mod serde_support;
pub mod validation;

/// Generated from `proto/`.
pub mod proto {
    /// The generated packages, nested as protobuf names them.
    pub mod rkube {
        pub mod v1 {
            tonic::include_proto!("rkube.v1");
        }
        /// Replica-to-replica messages and the state machine's commands.
        pub mod internal {
            tonic::include_proto!("rkube.internal");
        }
        /// The kubelet's endpoint (logs and exec for rkubectl).
        pub mod kubelet {
            pub mod v1 {
                tonic::include_proto!("rkube.kubelet.v1");
            }
        }
    }
    pub use rkube::internal;
    pub use rkube::kubelet::v1 as kubelet;
    pub use rkube::v1::*;
}

pub use proto::Object;
