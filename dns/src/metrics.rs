//! Query metrics and the Prometheus text endpoint that serves them.
//!
//! Counters are fixed arrays of atomics (query type x response code, latency
//! buckets), so recording a query takes no lock and allocates nothing. The
//! endpoint is a plain HTTP/1 GET over tokio: `/metrics`, and `/readyz`
//! (200 once every watched kind has been listed, else 503).

use crate::index::SharedIndex;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Query types counted by name; everything else is `other`.
const TYPES: [(&str, RecordType); 10] = [
    ("A", RecordType::A),
    ("AAAA", RecordType::AAAA),
    ("SRV", RecordType::SRV),
    ("PTR", RecordType::PTR),
    ("SOA", RecordType::SOA),
    ("NS", RecordType::NS),
    ("CNAME", RecordType::CNAME),
    ("TXT", RecordType::TXT),
    ("MX", RecordType::MX),
    ("ANY", RecordType::ANY),
];
const OTHER_TYPE: usize = TYPES.len();

const RCODES: [(&str, ResponseCode); 6] = [
    ("NOERROR", ResponseCode::NoError),
    ("FORMERR", ResponseCode::FormErr),
    ("SERVFAIL", ResponseCode::ServFail),
    ("NXDOMAIN", ResponseCode::NXDomain),
    ("NOTIMP", ResponseCode::NotImp),
    ("REFUSED", ResponseCode::Refused),
];
const OTHER_RCODE: usize = RCODES.len();

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// How forwarding to an upstream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardOutcome {
    Answered,
    Failed,
    /// Too many forwards in flight: answered SERVFAIL without trying.
    Overloaded,
}

const FORWARD_OUTCOMES: [(&str, ForwardOutcome); 3] = [
    ("answered", ForwardOutcome::Answered),
    ("failed", ForwardOutcome::Failed),
    ("overloaded", ForwardOutcome::Overloaded),
];

pub struct Metrics {
    queries: [[AtomicU64; OTHER_RCODE + 1]; OTHER_TYPE + 1],
    buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
    forwards: [AtomicU64; FORWARD_OUTCOMES.len()],
    index: SharedIndex,
}

impl Metrics {
    pub fn new(index: SharedIndex) -> Metrics {
        Metrics {
            queries: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_ns: AtomicU64::new(0),
            forwards: std::array::from_fn(|_| AtomicU64::new(0)),
            index,
        }
    }

    /// Counts one answered query.
    pub fn observe(&self, qtype: Option<RecordType>, rcode: ResponseCode, took: Duration) {
        let t = qtype
            .and_then(|q| TYPES.iter().position(|(_, t)| *t == q))
            .unwrap_or(OTHER_TYPE);
        let r = RCODES
            .iter()
            .position(|(_, c)| *c == rcode)
            .unwrap_or(OTHER_RCODE);
        self.queries[t][r].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn forwarded(&self, outcome: ForwardOutcome) {
        if let Some(i) = FORWARD_OUTCOMES.iter().position(|(_, o)| *o == outcome) {
            self.forwards[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP rkube_dns_queries_total DNS queries answered, by query type and response code.\n\
             # TYPE rkube_dns_queries_total counter"
        );
        for (t, row) in self.queries.iter().enumerate() {
            let tname = TYPES.get(t).map(|(n, _)| *n).unwrap_or("other");
            for (r, n) in row.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let rname = RCODES.get(r).map(|(n, _)| *n).unwrap_or("other");
                let _ = writeln!(
                    out,
                    "rkube_dns_queries_total{{type=\"{tname}\",rcode=\"{rname}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP rkube_dns_request_duration_seconds Time from a parsed query to its answer being sent.\n\
             # TYPE rkube_dns_request_duration_seconds histogram"
        );
        let mut cumulative = 0u64;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "rkube_dns_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let sum = self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "rkube_dns_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             rkube_dns_request_duration_seconds_sum {sum}\n\
             rkube_dns_request_duration_seconds_count {cumulative}"
        );
        let _ = writeln!(
            out,
            "# HELP rkube_dns_forward_total Queries for names outside the zone, by outcome.\n\
             # TYPE rkube_dns_forward_total counter"
        );
        for (i, (name, _)) in FORWARD_OUTCOMES.iter().enumerate() {
            let n = self.forwards[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "rkube_dns_forward_total{{outcome=\"{name}\"}} {n}");
        }
        let (names, ready) = {
            let i = self.index.read();
            (i.name_count(), i.is_ready())
        };
        let _ = writeln!(
            out,
            "# HELP rkube_dns_index_names Names in the index, including empty non-terminals.\n\
             # TYPE rkube_dns_index_names gauge\n\
             rkube_dns_index_names {names}\n\
             # HELP rkube_dns_ready Whether every watched kind has been listed.\n\
             # TYPE rkube_dns_ready gauge\n\
             rkube_dns_ready {}",
            u8::from(ready)
        );
        out
    }
}

/// Serves `/metrics` and `/readyz` until the listener fails.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    // A scrape endpoint needs few connections; more wait in the backlog.
    let slots = Arc::new(Semaphore::new(32));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(stream, &metrics).await {
                tracing::debug!(%peer, error = %e, "metrics request failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let read = async {
        while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            if len == buf.len() {
                return Err(std::io::Error::other("request head too large"));
            }
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed before the request head"));
            }
            len += n;
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::other("timed out reading the request"))??;
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", metrics.render()),
        ("GET", "/readyz") | ("GET", "/healthz") => {
            if metrics.index.read().is_ready() {
                ("200 OK", "ok\n".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    "not ready: objects not listed yet\n".to_string(),
                )
            }
        }
        ("GET", _) => ("404 Not Found", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{NameIndex, ZoneConfig};
    use crate::names::ClusterDomain;
    use parking_lot::RwLock;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let index = Arc::new(RwLock::new(NameIndex::new(ZoneConfig {
            domain: ClusterDomain::new("cluster.local").expect("domain"),
            ttl: 5,
            nameserver_ip: None,
            reverse_cidrs: vec![],
        })));
        let m = Metrics::new(index);
        m.observe(
            Some(RecordType::A),
            ResponseCode::NoError,
            Duration::from_micros(30),
        );
        m.observe(
            Some(RecordType::A),
            ResponseCode::NXDomain,
            Duration::from_millis(2),
        );
        m.observe(
            Some(RecordType::HINFO),
            ResponseCode::Refused,
            Duration::from_secs(3),
        );
        m.observe(None, ResponseCode::FormErr, Duration::from_micros(1));
        m.forwarded(ForwardOutcome::Failed);
        let text = m.render();
        for line in [
            "rkube_dns_queries_total{type=\"A\",rcode=\"NOERROR\"} 1",
            "rkube_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"} 1",
            "rkube_dns_queries_total{type=\"other\",rcode=\"REFUSED\"} 1",
            "rkube_dns_queries_total{type=\"other\",rcode=\"FORMERR\"} 1",
            "rkube_dns_request_duration_seconds_bucket{le=\"0.00005\"} 2",
            "rkube_dns_request_duration_seconds_bucket{le=\"0.0025\"} 3",
            "rkube_dns_request_duration_seconds_bucket{le=\"+Inf\"} 4",
            "rkube_dns_request_duration_seconds_count 4",
            "rkube_dns_forward_total{outcome=\"failed\"} 1",
            "rkube_dns_ready 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
