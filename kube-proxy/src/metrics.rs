//! Per-service-port counters and the plain HTTP endpoint that serves them in
//! Prometheus' text format (`GET /metrics`), plus `GET /healthz` (200 once
//! the first full sync is done, 503 before).
//!
//! The data path touches only atomics of its own port; the registry's lock
//! is taken when ports come and go and when the page is rendered.

use crate::table::PortKey;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Counters of one service port.
#[derive(Debug, Default)]
pub struct PortMetrics {
    /// TCP connections accepted, UDP sessions opened.
    pub connections: AtomicU64,
    /// Bytes from clients to endpoints.
    pub bytes_in: AtomicU64,
    /// Bytes from endpoints to clients.
    pub bytes_out: AtomicU64,
    /// Connects to an endpoint that failed (refused, unreachable, timed
    /// out) and UDP sessions an endpoint refused.
    pub endpoint_errors: AtomicU64,
    /// Connections closed at once because no endpoint was ready or every
    /// endpoint failed; UDP datagrams dropped for the same reason.
    pub rejected: AtomicU64,
    /// Connections to removed endpoints closed when their grace ended.
    pub drained: AtomicU64,
    /// Open TCP connections and UDP sessions.
    pub active: AtomicI64,
    /// Ready endpoints.
    pub endpoints: AtomicI64,
    pub protocol: &'static str,
}

impl PortMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts one open connection or session for as long as it lives.
pub struct ActiveGuard(Arc<PortMetrics>);

impl ActiveGuard {
    pub fn new(m: Arc<PortMetrics>) -> ActiveGuard {
        m.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(m)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Everything `/metrics` shows.
#[derive(Debug, Default)]
pub struct Metrics {
    ports: Mutex<BTreeMap<PortKey, Arc<PortMetrics>>>,
    /// Current problems per Service: `(service, reason) -> count`.
    problems: Mutex<BTreeMap<(String, String), u64>>,
    syncs: AtomicU64,
    synced: AtomicBool,
    copy_mode: Mutex<&'static str>,
}

impl Metrics {
    pub fn new(copy_mode: &'static str) -> Arc<Metrics> {
        let m = Metrics::default();
        *m.copy_mode.lock() = copy_mode;
        Arc::new(m)
    }

    /// The counters of a port, created on first use (a port that moves
    /// keeps its counters).
    pub fn port(&self, key: &PortKey, protocol: &'static str) -> Arc<PortMetrics> {
        self.ports
            .lock()
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(PortMetrics {
                    protocol,
                    ..Default::default()
                })
            })
            .clone()
    }

    pub fn remove_port(&self, key: &PortKey) {
        self.ports.lock().remove(key);
    }

    /// Replaces the problems shown for one Service.
    pub fn set_problems(&self, service: &str, reasons: &[&str]) {
        let mut p = self.problems.lock();
        p.retain(|(s, _), _| s != service);
        for r in reasons {
            *p.entry((service.to_string(), r.to_string())).or_default() += 1;
        }
    }

    pub fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// The page, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let ports: Vec<(PortKey, Arc<PortMetrics>)> = self
            .ports
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = String::with_capacity(1024 + ports.len() * 1024);
        let families: [Family; 6] = [
            (
                "rkube_proxy_connections_total",
                "counter",
                "TCP connections accepted and UDP sessions opened, per service port.",
                |m| load(&m.connections),
            ),
            (
                "rkube_proxy_endpoint_errors_total",
                "counter",
                "Connects to endpoints that failed (the next endpoint was tried).",
                |m| load(&m.endpoint_errors),
            ),
            (
                "rkube_proxy_rejected_total",
                "counter",
                "Connections reset at once (and datagrams dropped) because no endpoint took them.",
                |m| load(&m.rejected),
            ),
            (
                "rkube_proxy_drained_connections_total",
                "counter",
                "Connections to removed endpoints closed when their grace ended.",
                |m| load(&m.drained),
            ),
            (
                "rkube_proxy_active_connections",
                "gauge",
                "Open TCP connections and UDP sessions, per service port.",
                |m| m.active.load(Ordering::Relaxed),
            ),
            (
                "rkube_proxy_ready_endpoints",
                "gauge",
                "Ready endpoints, per service port.",
                |m| m.endpoints.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (k, m) in &ports {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k, m), get(m));
            }
        }
        let name = "rkube_proxy_bytes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes relayed per service port; direction \"in\" is client to endpoint.\n# TYPE {name} counter"
        );
        for (k, m) in &ports {
            let l = labels(k, m);
            let _ = writeln!(out, "{name}{{{l},direction=\"in\"}} {}", load(&m.bytes_in));
            let _ = writeln!(
                out,
                "{name}{{{l},direction=\"out\"}} {}",
                load(&m.bytes_out)
            );
        }
        let name = "rkube_proxy_service_problems";
        let _ = writeln!(
            out,
            "# HELP {name} Things a Service asks that are not served as asked, by reason.\n# TYPE {name} gauge"
        );
        for ((svc, reason), n) in self.problems.lock().iter() {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\",reason=\"{}\"}} {n}",
                escape(svc),
                escape(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP rkube_proxy_syncs_total Service changes applied.\n# TYPE rkube_proxy_syncs_total counter\nrkube_proxy_syncs_total {}",
            self.syncs.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rkube_proxy_copy_mode How TCP bytes are copied.\n# TYPE rkube_proxy_copy_mode gauge\nrkube_proxy_copy_mode{{mode=\"{}\"}} 1",
            self.copy_mode.lock()
        );
        out
    }
}

fn load(a: &AtomicU64) -> i64 {
    a.load(Ordering::Relaxed) as i64
}

/// One per-port metric family: name, type, help, value.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PortMetrics) -> i64,
);

fn labels(k: &PortKey, m: &PortMetrics) -> String {
    format!(
        "service=\"{}\",port=\"{}\",protocol=\"{}\"",
        escape(&k.service),
        escape(&k.port),
        m.protocol
    )
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics` and `/healthz` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &metrics).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and answers it; one request per connection.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/healthz") if metrics.is_synced() => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            "not synced yet\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_per_port() {
        let m = Metrics::new("splice");
        let key = PortKey {
            service: "default/web".into(),
            port: "http".into(),
        };
        let p = m.port(&key, "TCP");
        PortMetrics::add(&p.connections, 3);
        PortMetrics::add(&p.bytes_in, 10);
        let _g = ActiveGuard::new(p.clone());
        m.set_problems("default/web", &["EndpointPortNotFound"]);
        let text = m.render();
        assert!(text.contains(
            "rkube_proxy_connections_total{service=\"default/web\",port=\"http\",protocol=\"TCP\"} 3"
        ));
        assert!(text.contains(
            "rkube_proxy_bytes_total{service=\"default/web\",port=\"http\",protocol=\"TCP\",direction=\"in\"} 10"
        ));
        assert!(text.contains(
            "rkube_proxy_active_connections{service=\"default/web\",port=\"http\",protocol=\"TCP\"} 1"
        ));
        assert!(text.contains(
            "rkube_proxy_service_problems{service=\"default/web\",reason=\"EndpointPortNotFound\"} 1"
        ));
        assert!(text.contains("rkube_proxy_copy_mode{mode=\"splice\"} 1"));
        m.set_problems("default/web", &[]);
        assert!(!m.render().contains("reason=\"EndpointPortNotFound\""));
    }
}
