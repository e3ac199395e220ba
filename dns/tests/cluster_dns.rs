//! Cluster DNS end to end: a real 3-replica control plane, the `dns` binary
//! watching it, and a stub upstream resolver on loopback. Objects are created
//! and changed through the API client; answers are checked with a small
//! hickory-proto client over UDP and TCP, and with `dig` where installed.
//! Every wait polls a condition against a deadline.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, Container, DeleteRequest, EndpointAddress, EndpointPort, EndpointSubset,
    Endpoints, ObjectMeta, Pod, PodCondition, PodIp, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use rkube_api::Object;
use rkube_integration::{bin, free_port, wait_for, Cluster, Options};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdp};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ objects

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    })
}

fn service(name: &str, cluster_ip: &str, ports: &[(&str, &str, i32)]) -> Object {
    Object {
        kind: Some(Body::Service(Service {
            metadata: meta(name),
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.into(),
                ports: ports
                    .iter()
                    .map(|(n, proto, p)| ServicePort {
                        name: n.to_string(),
                        protocol: proto.to_string(),
                        port: *p,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

fn endpoints(name: &str, addrs: &[(&str, &str)], port: (&str, i32)) -> Object {
    Object {
        kind: Some(Body::Endpoints(Endpoints {
            metadata: meta(name),
            subsets: vec![EndpointSubset {
                addresses: addrs
                    .iter()
                    .map(|(ip, host)| EndpointAddress {
                        ip: ip.to_string(),
                        hostname: host.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ports: vec![EndpointPort {
                    name: port.0.into(),
                    port: port.1,
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })),
    }
}

fn pod(name: &str, ip: &str, hostname: &str, subdomain: &str, ready: bool) -> Object {
    Object {
        kind: Some(Body::Pod(Pod {
            metadata: meta(name),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: "nginx".into(),
                    ..Default::default()
                }],
                hostname: hostname.into(),
                subdomain: subdomain.into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Running".into(),
                pod_ip: ip.into(),
                pod_ips: vec![PodIp { ip: ip.into() }],
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Replaces a pod's status (address, readiness) through UpdateStatus.
async fn set_pod_status(client: &Client, name: &str, ip: &str, ready: bool) {
    let mut cur = client.get("Pod", "default", name).await.expect("get pod");
    let Some(Body::Pod(p)) = &mut cur.kind else {
        panic!("not a pod")
    };
    if let Some(Body::Pod(want)) = pod(name, ip, "", "", ready).kind {
        p.status = want.status;
    }
    client.update_status(cur).await.expect("update pod status");
}

async fn delete(client: &Client, kind: &str, name: &str) {
    client
        .delete(DeleteRequest {
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .expect("delete");
}

// ------------------------------------------------------------------ processes

/// The `dns` binary under test; killed on drop.
struct Dns {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Dns {
    fn start(cluster: &Cluster, upstreams: &[SocketAddr], extra: &[&str]) -> Dns {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let upstream = upstreams
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(bin("dns"))
            .args(["--server", &cluster.addresses()])
            .args(["--listen", &addr.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(["--upstream", &upstream])
            .args(["--upstream-timeout-ms", "400"])
            .args(["--udp-sockets", "2"])
            .args(extra)
            .env(
                "RUST_LOG",
                "info,hickory_server=warn,hickory_net=warn,hickory_proto=warn",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().expect("log")))
            .spawn()
            .expect("spawning dns");
        Dns {
            child,
            addr,
            metrics,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ stub upstream

/// A resolver on loopback standing in for the host's: `outside.example.`
/// has an address, `big.example.` TXT only fits over TCP (UDP answers are
/// truncated), `slow.example.` never answers, everything else is NXDOMAIN.
async fn stub_upstream() -> SocketAddr {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("stub udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind(addr).await.expect("stub tcp");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            if let Some(reply) = stub_answer(&buf[..n], true) {
                let _ = udp.send_to(&reply, peer).await;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                if s.read_exact(&mut msg).await.is_err() {
                    return;
                }
                if let Some(reply) = stub_answer(&msg, false) {
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend(reply);
                    let _ = s.write_all(&framed).await;
                }
            });
        }
    });
    addr
}

fn stub_answer(bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(bytes).ok()?;
    let q = req.queries.first()?.clone();
    let name = q.name().to_lowercase().to_string();
    if name == "slow.example." {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, OpCode::Query);
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    match name.as_str() {
        "outside.example." => {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
        }
        "big.example." if udp => resp.metadata.truncation = true,
        "big.example." => {
            for i in 0..40 {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::TXT(TXT::new(vec![format!("{i:03}-{}", "x".repeat(60))])),
                ));
            }
        }
        _ => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    resp.to_vec().ok()
}

// ------------------------------------------------------------------ client

fn question(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    m
}

async fn exchange_udp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    s.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn exchange_tcp(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let talk = async {
        let mut s = TcpStream::connect(server).await.ok()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        s.write_all(&framed).await.ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(3), talk)
        .await
        .ok()?
}

async fn ask(server: SocketAddr, msg: &Message, tcp: bool) -> Option<Message> {
    let bytes = msg.to_vec().expect("encode");
    let reply = if tcp {
        exchange_tcp(server, &bytes).await?
    } else {
        exchange_udp(server, &bytes).await?
    };
    let m = Message::from_vec(&reply).expect("a parseable reply");
    assert_eq!(m.metadata.id, msg.metadata.id, "reply id");
    assert_eq!(m.metadata.message_type, MessageType::Response);
    Some(m)
}

async fn query(server: SocketAddr, name: &str, rtype: RecordType, tcp: bool) -> Message {
    ask(server, &question(name, rtype), tcp)
        .await
        .unwrap_or_else(|| panic!("no answer for {name} {rtype}"))
}

/// The answer section's data, sorted, as text.
fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// Asserts an authoritative answer with exactly `want` and the given TTL.
async fn expect_records(server: SocketAddr, name: &str, rtype: RecordType, want: &[&str]) {
    for tcp in [false, true] {
        let m = query(server, name, rtype, tcp).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{name} {rtype}"
        );
        assert!(m.metadata.authoritative, "{name} {rtype}: AA");
        assert_eq!(data(&m), want, "{name} {rtype} (tcp: {tcp})");
        for r in &m.answers {
            assert_eq!(r.ttl, 5, "{name} {rtype}: TTL");
        }
    }
}

/// Asserts NOERROR with no answers and the zone's SOA in authority.
async fn expect_nodata(server: SocketAddr, name: &str, rtype: RecordType) {
    let m = query(server, name, rtype, false).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "{name} {rtype}"
    );
    assert!(m.answers.is_empty(), "{name} {rtype}: {:?}", m.answers);
    assert_soa(&m, name);
}

async fn expect_nxdomain(server: SocketAddr, name: &str, rtype: RecordType) {
    let m = query(server, name, rtype, false).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "{name} {rtype}"
    );
    assert!(m.metadata.authoritative, "{name}: AA");
    assert_soa(&m, name);
}

fn assert_soa(m: &Message, name: &str) {
    let soa = m
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .unwrap_or_else(|| panic!("{name}: no SOA in authority: {m:?}"));
    assert_eq!(soa.ttl, 5, "{name}: SOA TTL");
    if let RData::SOA(s) = &soa.data {
        assert_eq!(s.minimum, 5, "{name}: negative TTL");
    }
}

/// Polls until `name` `rtype` answers `want` (or, for an empty `want`,
/// NXDOMAIN).
async fn eventually(server: SocketAddr, name: &str, rtype: RecordType, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(&format!("{name} {rtype} -> {want:?}"), WAIT, || {
        let want = want.clone();
        async move {
            let m = ask(server, &question(name, rtype), false).await?;
            let ok = if want.is_empty() {
                m.metadata.response_code == ResponseCode::NXDomain
            } else {
                m.metadata.response_code == ResponseCode::NoError && data(&m) == want
            };
            ok.then_some(())
        }
    })
    .await;
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_dns_end_to_end() {
    let mut cluster = Cluster::start(Options::default()).await;
    let client = cluster.client();
    let stub = stub_upstream().await;
    // A dead upstream first: the forwarder must move on to the stub.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");

    // Some objects exist before the server starts (the first list), others
    // arrive later (the watch).
    for o in [
        service(
            "web",
            "10.96.0.20",
            &[("http", "TCP", 80), ("dns", "UDP", 53)],
        ),
        service("db", "None", &[("pg", "TCP", 5432)]),
        endpoints(
            "db",
            &[("10.244.1.5", "db-0"), ("10.244.2.6", "")],
            ("pg", 5432),
        ),
        pod("plain", "10.244.3.7", "", "", true),
    ] {
        client.create(o).await.expect("create");
    }
    let mut dns = Dns::start(&cluster, &[dead, stub], &[]);
    let s = dns.addr;
    wait_for(
        "the dns server to answer from the index",
        WAIT,
        || async move {
            let m = ask(
                s,
                &question("web.default.svc.cluster.local.", RecordType::A),
                false,
            )
            .await?;
            (m.metadata.response_code == ResponseCode::NoError).then_some(())
        },
    )
    .await;

    // -------- records from the first list
    expect_records(
        s,
        "web.default.svc.cluster.local.",
        RecordType::A,
        &["10.96.0.20"],
    )
    .await;
    expect_records(
        s,
        "WEB.Default.SVC.cluster.local.",
        RecordType::A,
        &["10.96.0.20"],
    )
    .await;
    let srv = query(
        s,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        false,
    )
    .await;
    assert_eq!(data(&srv), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(
        srv.additionals
            .iter()
            .filter(|r| r.record_type() == RecordType::A)
            .map(|r| r.data.to_string())
            .collect::<Vec<_>>(),
        ["10.96.0.20"],
        "SRV glue"
    );
    expect_records(
        s,
        "_dns._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
        &["0 100 53 web.default.svc.cluster.local."],
    )
    .await;
    expect_records(
        s,
        "db.default.svc.cluster.local.",
        RecordType::A,
        &["10.244.1.5", "10.244.2.6"],
    )
    .await;
    expect_records(
        s,
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
        &["10.244.1.5"],
    )
    .await;
    expect_records(
        s,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        &[
            "0 50 5432 10-244-2-6.db.default.svc.cluster.local.",
            "0 50 5432 db-0.db.default.svc.cluster.local.",
        ],
    )
    .await;
    expect_records(
        s,
        "10-244-3-7.default.pod.cluster.local.",
        RecordType::A,
        &["10.244.3.7"],
    )
    .await;
    expect_records(
        s,
        "20.0.96.10.in-addr.arpa.",
        RecordType::PTR,
        &["web.default.svc.cluster.local."],
    )
    .await;
    expect_records(
        s,
        "5.1.244.10.in-addr.arpa.",
        RecordType::PTR,
        &["db-0.db.default.svc.cluster.local."],
    )
    .await;
    expect_records(
        s,
        "7.3.244.10.in-addr.arpa.",
        RecordType::PTR,
        &["10-244-3-7.default.pod.cluster.local."],
    )
    .await;
    expect_records(
        s,
        "cluster.local.",
        RecordType::NS,
        &["ns.dns.cluster.local."],
    )
    .await;
    let soa = query(s, "cluster.local.", RecordType::SOA, true).await;
    assert_eq!(soa.answers.len(), 1);
    assert!(soa.metadata.authoritative);

    // -------- NXDOMAIN versus NODATA
    expect_nodata(s, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    expect_nodata(s, "web.default.svc.cluster.local.", RecordType::TXT).await;
    expect_nodata(
        s,
        "web.default.svc.cluster.local.",
        RecordType::Unknown(65000),
    )
    .await;
    expect_nodata(s, "default.svc.cluster.local.", RecordType::A).await;
    expect_nodata(s, "svc.cluster.local.", RecordType::A).await;
    expect_nodata(s, "default.pod.cluster.local.", RecordType::A).await;
    expect_nodata(s, "_tcp.db.default.svc.cluster.local.", RecordType::SRV).await;
    expect_nodata(s, "cluster.local.", RecordType::A).await;
    expect_nxdomain(s, "nope.default.svc.cluster.local.", RecordType::A).await;
    expect_nxdomain(s, "nope.svc.cluster.local.", RecordType::A).await;
    expect_nxdomain(s, "10-244-3-8.default.pod.cluster.local.", RecordType::A).await;
    expect_nxdomain(
        s,
        "_https._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    expect_nxdomain(s, "99.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    expect_nxdomain(s, "anything.cluster.local.", RecordType::AAAA).await;

    // -------- the watch: changes show up
    client
        .create(service("stateful", "None", &[]))
        .await
        .expect("create");
    client
        .create(pod("s-0", "10.244.4.9", "s-0", "stateful", true))
        .await
        .expect("create");
    eventually(
        s,
        "s-0.stateful.default.svc.cluster.local.",
        RecordType::A,
        &["10.244.4.9"],
    )
    .await;
    expect_records(
        s,
        "9.4.244.10.in-addr.arpa.",
        RecordType::PTR,
        &["s-0.stateful.default.svc.cluster.local."],
    )
    .await;
    // Not ready: the hostname record goes, the pod record stays.
    set_pod_status(&client, "s-0", "10.244.4.9", false).await;
    eventually(
        s,
        "s-0.stateful.default.svc.cluster.local.",
        RecordType::A,
        &[],
    )
    .await;
    expect_records(
        s,
        "10-244-4-9.default.pod.cluster.local.",
        RecordType::A,
        &["10.244.4.9"],
    )
    .await;
    // A pod's new address replaces the old one.
    set_pod_status(&client, "plain", "10.244.3.8", true).await;
    eventually(
        s,
        "10-244-3-8.default.pod.cluster.local.",
        RecordType::A,
        &["10.244.3.8"],
    )
    .await;
    expect_nxdomain(s, "10-244-3-7.default.pod.cluster.local.", RecordType::A).await;
    // Endpoints shrink: the headless answer follows.
    let mut ep = client.get("Endpoints", "default", "db").await.expect("get");
    if let (Some(Body::Endpoints(e)), Some(Body::Endpoints(want))) = (
        &mut ep.kind,
        endpoints("db", &[("10.244.1.5", "db-0")], ("pg", 5432)).kind,
    ) {
        e.subsets = want.subsets;
    }
    client.update(ep).await.expect("update endpoints");
    eventually(
        s,
        "db.default.svc.cluster.local.",
        RecordType::A,
        &["10.244.1.5"],
    )
    .await;
    expect_nxdomain(s, "10-244-2-6.db.default.svc.cluster.local.", RecordType::A).await;
    // A new named port appears as SRV; a deleted service disappears.
    let mut web = client.get("Service", "default", "web").await.expect("get");
    if let Some(Body::Service(svc)) = &mut web.kind {
        if let Some(spec) = &mut svc.spec {
            spec.ports.push(ServicePort {
                name: "https".into(),
                protocol: "TCP".into(),
                port: 443,
                ..Default::default()
            });
        }
    }
    client.update(web).await.expect("update service");
    eventually(
        s,
        "_https._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        &["0 100 443 web.default.svc.cluster.local."],
    )
    .await;
    delete(&client, "Service", "web").await;
    eventually(s, "web.default.svc.cluster.local.", RecordType::A, &[]).await;
    expect_nxdomain(s, "20.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    client
        .create(service("web2", "10.96.0.21", &[("", "TCP", 80)]))
        .await
        .expect("create");
    eventually(
        s,
        "web2.default.svc.cluster.local.",
        RecordType::A,
        &["10.96.0.21"],
    )
    .await;

    // -------- the watch survives losing the replica it reads from: each
    // replica in turn is killed, a change is made, and it must show up.
    for i in 0..cluster.replicas.len() {
        cluster.kill(i);
        cluster.wait_ready().await;
        let name = format!("failover-{i}");
        let ip = format!("10.96.0.{}", 100 + i);
        client
            .create(service(&name, &ip, &[("", "TCP", 80)]))
            .await
            .expect("create during failover");
        eventually(
            s,
            &format!("{name}.default.svc.cluster.local."),
            RecordType::A,
            &[&ip],
        )
        .await;
        cluster.restart(i);
        cluster.wait_ready().await;
    }
    // Every replica died once, so the watches' own replica did: they resumed.
    let log = dns.log();
    assert!(log.contains("resuming"), "no watch resumed:\n{log}");

    // -------- forwarding
    for tcp in [false, true] {
        let m = query(s, "outside.example.", RecordType::A, tcp).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(
            !m.metadata.authoritative,
            "forwarded answers are not authoritative"
        );
        assert!(m.metadata.recursion_available);
        assert_eq!(data(&m), ["192.0.2.1"]);
    }
    let m = query(s, "missing.example.", RecordType::A, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Outside the reverse CIDRs, reverse names are forwarded too.
    let m = query(s, "1.2.0.192.in-addr.arpa.", RecordType::PTR, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(!m.metadata.authoritative);
    // Truncated upstream answers are fetched again over TCP.
    let m = query(s, "big.example.", RecordType::TXT, true).await;
    assert_eq!(m.answers.len(), 40, "big answer over TCP");
    let mut big = question("big.example.", RecordType::TXT);
    big.set_edns(Edns::new());
    let m = ask(s, &big, false).await.expect("udp answer");
    assert!(
        m.metadata.truncation,
        "a client with a 512-byte EDNS buffer sees TC"
    );
    let m = query(s, "slow.example.", RecordType::A, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);

    // -------- bad input: a correct error code each time, never a crash
    bad_input(s).await;
    let before = dns.rss_kib();
    for i in 0..3000u32 {
        let name = format!(
            "r{:08x}.default.svc.cluster.local.",
            i.wrapping_mul(2654435761)
        );
        let bytes = question(&name, RecordType::A).to_vec().expect("encode");
        let raw = StdUdp::bind("127.0.0.1:0").expect("bind");
        let _ = raw.send_to(&bytes, s);
        let _ = raw.send_to(&garbage(i), s);
    }
    expect_records(
        s,
        "web2.default.svc.cluster.local.",
        RecordType::A,
        &["10.96.0.21"],
    )
    .await;
    let after = dns.rss_kib();
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB under a flood"
    );
    assert!(dns.alive(), "dns died:\n{}", dns.log());

    // -------- metrics
    let text = http_get(dns.metrics, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for want in [
        "rkube_dns_queries_total{type=\"A\",rcode=\"NOERROR\"}",
        "rkube_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"}",
        "rkube_dns_queries_total{type=\"other\",rcode=\"REFUSED\"}",
        "rkube_dns_request_duration_seconds_bucket{le=\"+Inf\"}",
        "rkube_dns_forward_total{outcome=\"answered\"}",
        "rkube_dns_ready 1",
    ] {
        assert!(text.contains(want), "metrics lack {want}:\n{text}");
    }
    assert!(http_get(dns.metrics, "/readyz")
        .await
        .starts_with("HTTP/1.1 200"));

    // -------- dig, where installed
    dig_checks(s);
    assert!(dns.alive(), "dns died:\n{}", dns.log());

    // -------- hickory-server's own UDP server (kept for comparison) answers alike
    let mut alt = Dns::start(&cluster, &[stub], &["--udp-path", "hickory"]);
    let a = alt.addr;
    eventually(
        a,
        "web2.default.svc.cluster.local.",
        RecordType::A,
        &["10.96.0.21"],
    )
    .await;
    expect_nxdomain(a, "nope.default.svc.cluster.local.", RecordType::A).await;
    expect_nodata(a, "default.svc.cluster.local.", RecordType::A).await;
    for i in 0..50 {
        let raw = StdUdp::bind("127.0.0.1:0").expect("bind");
        let _ = raw.send_to(&garbage(i), a);
    }
    let m = query(a, "outside.example.", RecordType::A, false).await;
    assert_eq!(data(&m), ["192.0.2.1"]);
    assert!(alt.alive(), "dns (hickory UDP) died:\n{}", alt.log());
}

/// Deterministic junk of varying sizes, including a bare header.
fn garbage(i: u32) -> Vec<u8> {
    let len = [0usize, 1, 11, 12, 13, 40, 300, 1500, 4000][(i % 9) as usize];
    (0..len)
        .map(|j| (j as u32).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// Raw messages with a known right answer.
async fn bad_input(s: SocketAddr) {
    let rcode_of = |reply: &[u8]| -> ResponseCode {
        let m = Message::from_vec(reply).expect("parseable error reply");
        m.metadata.response_code
    };
    let web = "web2.default.svc.cluster.local.";

    // Junk: either dropped (shorter than a header) or FORMERR.
    for junk in [vec![], vec![1, 2, 3], vec![0xff; 11]] {
        assert!(
            exchange_udp(s, &junk).await.is_none(),
            "junk {junk:?} answered"
        );
    }
    let mut bad_question = question(web, RecordType::A).to_vec().expect("encode");
    bad_question.truncate(20);
    let reply = exchange_udp(s, &bad_question).await.expect("an answer");
    assert_eq!(&reply[..2], &bad_question[..2], "id echoed");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR for a cut question");

    // CHAOS class: REFUSED.
    let mut chaos = question("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        rcode_of(
            &exchange_udp(s, &chaos.to_vec().expect("e"))
                .await
                .expect("a")
        ),
        ResponseCode::Refused
    );
    // Other opcodes: NOTIMP.
    let mut status = question(web, RecordType::A);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(
        rcode_of(
            &exchange_udp(s, &status.to_vec().expect("e"))
                .await
                .expect("a")
        ),
        ResponseCode::NotImp
    );
    // Two questions: FORMERR.
    let mut two = question(web, RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii(web).expect("n"),
        RecordType::AAAA,
    ));
    assert_eq!(
        rcode_of(&exchange_udp(s, &two.to_vec().expect("e")).await.expect("a")),
        ResponseCode::FormErr
    );
    // No question: FORMERR.
    let mut none = question(web, RecordType::A);
    none.queries.clear();
    assert_eq!(
        rcode_of(
            &exchange_udp(s, &none.to_vec().expect("e"))
                .await
                .expect("a")
        ),
        ResponseCode::FormErr
    );
    // EDNS version 1: BADVERS (an extended code carried in the OPT record).
    let mut v1 = question(web, RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    v1.set_edns(edns);
    let m = ask(s, &v1, false).await.expect("answer");
    // 16 is BADVERS in an OPT record (hickory decodes it by its TSIG name, BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
    assert!(m.edns.is_some(), "BADVERS comes with an OPT record");
    // Zone transfers: REFUSED.
    let m = query(s, "cluster.local.", RecordType::AXFR, true).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // An oversized query (over TCP, padded with additional records): FORMERR.
    let mut fat = question(web, RecordType::A);
    for i in 0..40 {
        fat.add_additional(Record::from_rdata(
            Name::from_ascii(format!("pad{i}.example.")).expect("n"),
            0,
            RData::TXT(TXT::new(vec!["p".repeat(60)])),
        ));
    }
    let m = ask(s, &fat, true).await.expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // A response sent as a query is ignored (no reflection).
    let mut resp = question(web, RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert!(exchange_udp(s, &resp.to_vec().expect("e")).await.is_none());
    // And normal service goes on.
    expect_records(s, web, RecordType::A, &["10.96.0.21"]).await;
}

fn dig_checks(s: SocketAddr) {
    if Command::new("dig").arg("-v").output().is_err() {
        println!("RKUBE-SKIP: dns-dig: dig not installed");
        return;
    }
    let port = s.port().to_string();
    let dig = |args: &[&str]| -> String {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=2", "+tries=2"])
            .args(args)
            .output()
            .expect("running dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["+short"];
        all.extend_from_slice(args);
        let mut v: Vec<String> = dig(&all).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(
        short(&["web2.default.svc.cluster.local", "A"]),
        ["10.96.0.21"]
    );
    assert_eq!(
        short(&["+tcp", "web2.default.svc.cluster.local", "A"]),
        ["10.96.0.21"]
    );
    assert_eq!(
        short(&["db.default.svc.cluster.local", "A"]),
        ["10.244.1.5"]
    );
    assert_eq!(
        short(&["-x", "10.96.0.21"]),
        ["web2.default.svc.cluster.local."]
    );
    assert_eq!(
        short(&["_pg._tcp.db.default.svc.cluster.local", "SRV"]),
        ["0 100 5432 db-0.db.default.svc.cluster.local."]
    );
    assert_eq!(short(&["outside.example", "A"]), ["192.0.2.1"]);
    let full = dig(&["nope.default.svc.cluster.local", "A"]);
    assert!(full.contains("status: NXDOMAIN"), "{full}");
    assert!(full.contains("flags: qr aa rd ra"), "{full}");
    let full = dig(&["default.svc.cluster.local", "A"]);
    assert!(
        full.contains("status: NOERROR") && full.contains("ANSWER: 0"),
        "{full}"
    );
    assert!(full.contains("AUTHORITY: 1"), "{full}");
    let full = dig(&["web2.default.svc.cluster.local", "A"]);
    assert!(
        full.lines().any(
            |l| l.starts_with("web2.default.svc.cluster.local. 5 IN A 10.96.0.21")
                || l.split_whitespace().collect::<Vec<_>>()
                    == [
                        "web2.default.svc.cluster.local.",
                        "5",
                        "IN",
                        "A",
                        "10.96.0.21"
                    ]
        ),
        "TTL 5 expected:\n{full}"
    );
    let full = dig(&["-c", "CH", "version.bind", "TXT"]);
    assert!(full.contains("status: REFUSED"), "{full}");
}
