//! One service port as its listeners see it while it is being served: the
//! balancer over its endpoints, its counters and the proxy's settings.
//! Every listener of the port (ClusterIP, each NodePort address) and every
//! connection it accepted share one `LivePort`.

use crate::balancer::{Backend, Balancer, ConnectionGuard};
use crate::config::ProxyConfig;
use crate::metrics::PortMetrics;
use crate::table::PortKey;
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

pub struct LivePort {
    pub key: PortKey,
    pub balancer: Mutex<Balancer>,
    pub metrics: Arc<PortMetrics>,
    pub config: Arc<ProxyConfig>,
}

impl LivePort {
    /// The endpoint for a new connection or session from `client`, counted
    /// on the endpoint at once (so least-connections sees connections that
    /// are still connecting), skipping endpoints in `tried`.
    pub fn pick(&self, client: IpAddr, tried: &[SocketAddr]) -> Option<ConnectionGuard> {
        // Counted under the lock: concurrent picks see each other.
        let mut balancer = self.balancer.lock();
        let backend: Arc<Backend> = balancer.pick(client, tried, Instant::now())?;
        Some(ConnectionGuard::new(backend))
    }
}
