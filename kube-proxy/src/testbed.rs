//! The pieces the integration tests and the benchmark build a proxied
//! Service from: a network namespace entered by the current thread, the
//! `kube-proxy` process, echo "pods" that name themselves, Service and
//! Endpoints objects, and a client that asks one question per connection.
//!
//! Everything runs inside the namespace: pods are addresses on its `lo`
//! (10.244.0.x), ClusterIPs go on the proxy's interface there, and the
//! guard routes make any other 10.96/12 or 10.244/16 address unreachable.

use crate::netns::{self, Netns};
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{
    ClientIpConfig, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectMeta, Service,
    ServicePort, ServiceSpec, SessionAffinityConfig,
};
use rkube_api::Object;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Creates a namespace for `what` and moves the calling thread into it;
/// `None` (after printing `RKUBE-SKIP: proxy: <why>`) when this machine
/// cannot make one. Keep the result alive for the whole test: dropping it
/// deletes the namespace.
pub fn enter_netns(what: &str) -> Option<Netns> {
    if let Some(why) = netns::missing_prerequisite() {
        println!("RKUBE-SKIP: proxy: {what}: {why}");
        return None;
    }
    let ns = Netns::create("rkube-kp").unwrap_or_else(|e| panic!("creating a netns: {e}"));
    ns.enter()
        .unwrap_or_else(|e| panic!("entering netns {}: {e}", ns.name()));
    Some(ns)
}

/// A runtime on the current thread (so every socket lives in the thread's
/// namespace).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("building a tokio runtime: {e}"))
}

// ------------------------------------------------------------------ the proxy

/// A running `kube-proxy`; killed on drop, its log printed when the thread
/// is panicking.
pub struct ProxyProcess {
    child: Option<Child>,
    pub metrics: SocketAddr,
    log: PathBuf,
}

impl ProxyProcess {
    /// Starts `binary` against `servers` with `extra` flags, logging at
    /// debug level to a file in `dir`.
    pub fn start(binary: &Path, servers: &str, dir: &Path, extra: &[&str]) -> ProxyProcess {
        Self::start_logging(binary, servers, dir, extra, "info,rkube_kube_proxy=debug")
    }

    /// As [`ProxyProcess::start`], with a `RUST_LOG` filter (a benchmark
    /// wants `warn`: per-connection debug spans cost throughput).
    pub fn start_logging(
        binary: &Path,
        servers: &str,
        dir: &Path,
        extra: &[&str],
        filter: &str,
    ) -> ProxyProcess {
        Self::start_with_env(binary, servers, dir, extra, filter, &[])
    }

    /// As [`ProxyProcess::start_logging`], with extra environment
    /// variables for the process.
    pub fn start_with_env(
        binary: &Path,
        servers: &str,
        dir: &Path,
        extra: &[&str],
        filter: &str,
        envs: &[(&str, &str)],
    ) -> ProxyProcess {
        let metrics: SocketAddr = ([127, 0, 0, 1], rkube_integration::free_port()).into();
        let log = dir.join(format!("kube-proxy-{}.log", metrics.port()));
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = Command::new(binary)
            .args([
                "--server",
                servers,
                "--metrics-listen",
                &metrics.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", filter)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
        ProxyProcess {
            child: Some(child),
            metrics,
            log,
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the proxy has synced with the control plane.
    pub async fn wait_synced(&self, timeout: Duration) {
        let addr = self.metrics;
        rkube_integration::wait_for("kube-proxy /healthz", timeout, || async move {
            http_get(addr, "/healthz")
                .await
                .filter(|(status, _)| *status == 200)
        })
        .await;
    }

    /// The `/metrics` page.
    pub async fn metrics_text(&self) -> Option<String> {
        http_get(self.metrics, "/metrics")
            .await
            .filter(|(s, _)| *s == 200)
            .map(|(_, body)| body)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- kube-proxy log (last 80 lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A one-shot HTTP/1.0 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|x| x.1)?.to_string();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

/// The value of the sample `name{...}` whose labels contain every one of
/// `labels` (e.g. `service="default/web"`).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|want| rest.contains(want))
                .then(|| value.parse().ok())?
        })
        .next()
}

// ------------------------------------------------------------------ pods

/// An echo "pod": answers each line `L` with `<name> L`, over TCP and (when
/// asked) UDP on the same address.
pub struct Echo {
    pub name: String,
    pub addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    udp: Option<JoinHandle<()>>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// Lines answered.
    pub hits: Arc<AtomicUsize>,
}

impl Echo {
    /// A TCP echo on `addr`.
    pub async fn tcp(name: &str, addr: SocketAddr) -> Echo {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("echo {name} binding {addr}: {e}"));
        let hits = Arc::new(AtomicUsize::new(0));
        let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (name, hits, conns) = (name.to_string(), hits.clone(), conns.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let task = tokio::spawn(serve_lines(stream, name.clone(), hits.clone()));
                    if let Ok(mut c) = conns.lock() {
                        c.retain(|t| !t.is_finished());
                        c.push(task);
                    }
                }
            }
        });
        Echo {
            name: name.to_string(),
            addr,
            accept: Some(accept),
            udp: None,
            conns,
            hits,
        }
    }

    /// A UDP echo on `addr` (datagram `P` is answered `<name> P`).
    pub async fn udp(name: &str, addr: SocketAddr) -> Echo {
        let socket = UdpSocket::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("udp echo {name} binding {addr}: {e}"));
        let hits = Arc::new(AtomicUsize::new(0));
        let udp = tokio::spawn({
            let (name, hits) = (name.to_string(), hits.clone());
            async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    hits.fetch_add(1, Ordering::Relaxed);
                    let mut reply = format!("{name} ").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Echo {
            name: name.to_string(),
            addr,
            accept: None,
            udp: Some(udp),
            conns: Arc::default(),
            hits,
        }
    }

    /// Closes the listening socket (new connects are refused); connections
    /// already accepted go on being served, as a terminating pod's would.
    pub async fn stop_accepting(&mut self) {
        if let Some(t) = self.accept.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Closes everything at once, open connections too.
    pub async fn kill(&mut self) {
        self.stop_accepting().await;
        if let Some(t) = self.udp.take() {
            t.abort();
            let _ = t.await;
        }
        let conns: Vec<JoinHandle<()>> = self
            .conns
            .lock()
            .map(|mut c| c.drain(..).collect())
            .unwrap_or_default();
        for t in conns {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        for t in [self.accept.take(), self.udp.take()].into_iter().flatten() {
            t.abort();
        }
        if let Ok(mut c) = self.conns.lock() {
            for t in c.drain(..) {
                t.abort();
            }
        }
    }
}

async fn serve_lines(stream: TcpStream, name: String, hits: Arc<AtomicUsize>) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        hits.fetch_add(1, Ordering::Relaxed);
        if w.write_all(format!("{name} {line}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

// ------------------------------------------------------------------ clients

/// A connection through the proxy that can ask several questions.
pub struct Conversation {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Conversation {
    /// Connects to `addr`, from `source` when given (a loopback address,
    /// to look like another client).
    pub async fn open(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Conversation> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Conversation {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    /// Sends `line` and returns the name of the pod that answered.
    pub async fn ask(&mut self, line: &str) -> io::Result<String> {
        let fut = async {
            self.writer
                .write_all(format!("{line}\n").as_bytes())
                .await?;
            let mut answer = String::new();
            let n = self.reader.read_line(&mut answer).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed without an answer",
                ));
            }
            let (name, echoed) = answer
                .trim_end()
                .split_once(' ')
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, answer.clone()))?;
            if echoed != line {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("echoed {echoed:?} for {line:?}"),
                ));
            }
            Ok(name.to_string())
        };
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?
    }

    /// Waits for the other side to close (EOF or reset).
    pub async fn closed(&mut self) {
        let mut s = String::new();
        while let Ok(n) = self.reader.read_line(&mut s).await {
            if n == 0 {
                return;
            }
        }
    }
}

/// One question on a new connection: the name of the pod that answered.
pub async fn ask(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<String> {
    Conversation::open(addr, source).await?.ask("ping").await
}

/// Counts answers by pod name.
pub fn tally(names: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for n in names {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

// ------------------------------------------------------------------ objects

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        ..Default::default()
    })
}

/// A selector-less Service (its Endpoints are made by hand) of `ty` with
/// `(name, protocol, port)` ports.
pub fn service(name: &str, ty: &str, ports: &[(&str, &str, i32)]) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            r#type: ty.into(),
            ports: ports
                .iter()
                .map(|(n, proto, port)| ServicePort {
                    name: n.to_string(),
                    protocol: proto.to_string(),
                    port: *port,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `svc` with `sessionAffinity: ClientIP` and the timeout.
pub fn with_affinity(mut svc: Service, timeout_seconds: i32) -> Service {
    if let Some(spec) = svc.spec.as_mut() {
        spec.session_affinity = "ClientIP".into();
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIpConfig {
                timeout_seconds: Some(timeout_seconds),
            }),
        });
    }
    svc
}

/// `svc` with an annotation.
pub fn annotated(mut svc: Service, key: &str, value: &str) -> Service {
    if let Some(m) = svc.metadata.as_mut() {
        m.annotations.insert(key.into(), value.into());
    }
    svc
}

pub fn service_object(svc: Service) -> Object {
    Object::from_body(Body::Service(svc))
}

/// Endpoints `name` with one subset: `ready` and `not_ready` IPs serving
/// `(name, protocol, port)` ports.
pub fn endpoints(
    name: &str,
    ready: &[&str],
    not_ready: &[&str],
    ports: &[(&str, &str, i32)],
) -> Object {
    let addr = |ip: &&str| EndpointAddress {
        ip: ip.to_string(),
        ..Default::default()
    };
    let subsets = if ready.is_empty() && not_ready.is_empty() {
        Vec::new()
    } else {
        vec![EndpointSubset {
            addresses: ready.iter().map(addr).collect(),
            not_ready_addresses: not_ready.iter().map(addr).collect(),
            ports: ports
                .iter()
                .map(|(n, proto, port)| EndpointPort {
                    name: n.to_string(),
                    protocol: proto.to_string(),
                    port: *port,
                    ..Default::default()
                })
                .collect(),
        }]
    };
    Object::from_body(Body::Endpoints(Endpoints {
        metadata: meta(name),
        subsets,
        ..Default::default()
    }))
}

/// The ClusterIP and per-port NodePorts the control plane gave a Service.
pub fn addresses_of(created: &Object) -> (IpAddr, Vec<u16>) {
    let Some(Body::Service(s)) = created.kind.as_ref() else {
        panic!("not a Service: {created:?}");
    };
    let spec = s.spec.clone().unwrap_or_default();
    let ip = spec
        .cluster_ip
        .parse()
        .unwrap_or_else(|e| panic!("clusterIP {:?}: {e}", spec.cluster_ip));
    let node_ports = spec.ports.iter().map(|p| p.node_port as u16).collect();
    (ip, node_ports)
}
