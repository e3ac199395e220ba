//! The generated runtime API (`proto/rkube/runtime/v1/runtime.proto`):
//! messages, the two services' server traits and their clients.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("rkube.runtime.v1");
