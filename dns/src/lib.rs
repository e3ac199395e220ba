//! rkube's cluster DNS: an authoritative server for `cluster.local` built on
//! hickory-server, fed by watches of Services, Endpoints and Pods.
//!
//! - [`names`]: where objects live in the DNS tree (built once per change).
//! - [`index`]: the in-memory name index: claims per source, record sets,
//!   empty non-terminals, NXDOMAIN versus NODATA.
//! - [`records`]: which records each Service, Endpoints and Pod implies.
//! - [`watch`]: list-then-watch loops feeding the records.
//! - [`handler`]: hickory-server's request handler: checks, answers, forwards.
//! - [`forward`]: names outside the zone, sent to upstream resolvers.
//! - [`metrics`]: query counters, latency histogram, the /metrics endpoint.
//! - [`udp`]: the UDP loop: read a batch, answer inline, send the batch.
//! - [`mmsg`]: batched datagram I/O (`recvmmsg`/`sendmmsg`).
//! - [`server`]: the UDP and TCP listeners.
//! - [`config`], [`resolv_conf`]: flags, and the host's nameservers.

pub mod config;
pub mod forward;
pub mod handler;
pub mod index;
pub mod metrics;
pub mod mmsg;
pub mod names;
pub mod records;
pub mod resolv_conf;
pub mod server;
pub mod udp;
pub mod watch;
