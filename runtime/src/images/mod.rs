//! The node's OCI image store and the ways images get into it: pulls from a
//! registry, OCI archives, and the project's own image builder.

pub mod archive;
pub mod builder;
pub mod digest;
pub mod layers;
pub mod reference;
pub mod registry;
pub mod store;
