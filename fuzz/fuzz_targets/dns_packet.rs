//! DNS packet handling: the dns crate's UDP path (packet cache, parsing,
//! FORMERR, the request handler answering from the name index) fed
//! arbitrary datagrams, against an index holding a few services, endpoints
//! and pods.
//!
//! The input is split on the 4-byte marker `\xffSEP` into one batch of
//! datagrams (so the packet cache sees repeats); the batch is answered
//! twice. Invariants: nothing panics; every answer is at least a header,
//! echoes its query's ID and is marked a response; an answer from the
//! cache is byte for byte the answer computed the first time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parking_lot::RwLock;
use rkube_api::manifest;
use rkube_dns::forward::Forwarder;
use rkube_dns::handler::DnsHandler;
use rkube_dns::index::{NameIndex, ZoneConfig};
use rkube_dns::metrics::Metrics;
use rkube_dns::names::ClusterDomain;
use rkube_dns::records::ClusterRecords;
use rkube_dns::udp::BatchAnswerer;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: web}
  ports: [{name: http, protocol: TCP, port: 80}, {name: dns, protocol: UDP, port: 53}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, protocol: TCP, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: prod}
subsets:
- addresses: [{ip: 10.244.1.5, hostname: db-0}, {ip: 10.244.2.7}]
  ports: [{name: pg, protocol: TCP, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: prod}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: c, image: postgres}]
status:
  phase: Running
  podIP: 10.244.1.5
  podIPs: [{ip: 10.244.1.5}]
  conditions: [{type: Ready, status: "True"}]
"#;

struct Harness {
    rt: tokio::runtime::Runtime,
    answerer: Mutex<BatchAnswerer>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let index = Arc::new(RwLock::new(NameIndex::new(ZoneConfig {
            domain: ClusterDomain::new("cluster.local").expect("domain"),
            ttl: 5,
            nameserver_ip: Some("10.96.0.10".parse().expect("ip")),
            reverse_cidrs: vec![
                "10.96.0.0/12".parse().expect("cidr"),
                "10.244.0.0/16".parse().expect("cidr"),
            ],
        })));
        let mut records = ClusterRecords::new(index.clone());
        for obj in manifest::decode(OBJECTS, "objects").expect("objects") {
            records.upsert(&obj);
        }
        index.write().set_ready(true);
        // No upstreams: names outside the zone fail at once (SERVFAIL).
        let forwarder = Arc::new(Forwarder::new(Vec::new(), Duration::from_millis(10), 4));
        let metrics = Arc::new(Metrics::new(index.clone()));
        let handler = Arc::new(DnsHandler::new(index, forwarder, metrics));
        let socket = rt.block_on(async {
            Arc::new(
                tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("socket"),
            )
        });
        Harness {
            answerer: Mutex::new(BatchAnswerer::new(socket, handler)),
            rt,
        }
    })
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(4).position(|w| w == b"\xffSEP") {
        out.push(&rest[..i]);
        rest = &rest[i + 4..];
    }
    out.push(rest);
    out.truncate(16);
    out
}

fn check(queries: &[&[u8]], answers: &[Vec<u8>]) {
    for a in answers {
        assert!(a.len() >= 12, "an answer shorter than a header: {a:?}");
        assert!(a[2] & 0x80 != 0, "an answer not marked a response: {a:?}");
        assert!(
            queries.iter().any(|q| q.len() >= 2 && q[..2] == a[..2]),
            "an answer whose ID is no query's"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let queries = split(data);
    let src: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
    let mut answerer = h.answerer.lock().expect("lock");
    let (first, second) = h.rt.block_on(async {
        let first = answerer.answer(&queries, src);
        let second = answerer.answer(&queries, src);
        (first, second)
    });
    check(&queries, &first);
    check(&queries, &second);
    assert_eq!(
        first.len(),
        second.len(),
        "the cache answered a different number"
    );
    assert_eq!(first, second, "the cached answers differ");
});
