//! Test harness: starts real control-plane replicas as processes on loopback,
//! kills and restarts them, and runs rkubectl against them.
//!
//! Binaries come from the workspace's target directory (`cargo build
//! --workspace --bins` first; the test script does). Every wait is a
//! condition polled against a deadline, never a fixed sleep.

pub mod nemesis;
pub mod nodes;

use rkube_api::client::Client;
use rkube_api::proto::ClusterStatusResponse;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the workspace's binaries are: next to the test executable's
/// `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        p.display()
    );
    p
}

/// The seed folder shared with the project (`../shared/seed`).
pub fn seed_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RKUBE_SEED_DIR") {
        return PathBuf::from(d);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for cand in [root.join("../shared/seed"), root.join("shared/seed")] {
        if cand.exists() {
            return cand;
        }
    }
    panic!(
        "the seed folder ../shared/seed was not found next to the repository; \
         set RKUBE_SEED_DIR"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Knobs for a test cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub replicas: usize,
    pub snapshot_interval: u64,
    pub snapshot_keep: u64,
    pub history: usize,
    pub tick_ms: u64,
    /// Extra control-plane flags (controller timings, ...).
    pub extra_args: Vec<String>,
    /// The address replicas listen on (a bridge address when nodes in
    /// network namespaces must reach them).
    pub host: String,
    /// Per replica (by index), the address it listens on instead of
    /// `host` (replicas in network namespaces of their own).
    pub hosts: Vec<String>,
    /// Per replica, the network namespace (`/run/netns/NAME`) it runs in;
    /// empty or missing: the test's own.
    pub netns: Vec<String>,
    /// TLS everywhere with a PKI made for the test (`rkube-pki`); `false`
    /// runs the replicas with `--insecure`.
    pub secure: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 3,
            snapshot_interval: 10_000,
            snapshot_keep: 5_000,
            history: 100_000,
            tick_ms: 50,
            extra_args: Vec::new(),
            host: "127.0.0.1".into(),
            hosts: Vec::new(),
            netns: Vec::new(),
            secure: false,
        }
    }
}

pub struct Replica {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Started with `--join` (added to a running cluster).
    pub join: bool,
    child: Option<Child>,
}

/// A control plane of real processes.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    peers: String,
    opts: Options,
    /// The PKI directory of a secure cluster.
    pki: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(opts: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let replicas: Vec<Replica> = (1..=opts.replicas as u64)
            .map(|id| Replica {
                id,
                addr: format!(
                    "{}:{}",
                    opts.hosts.get(id as usize - 1).unwrap_or(&opts.host),
                    free_port()
                ),
                data_dir: dir.path().join(format!("cp{id}")),
                join: false,
                child: None,
            })
            .collect();
        let peers = replicas
            .iter()
            .map(|r| format!("{}={}", r.id, r.addr))
            .collect::<Vec<_>>()
            .join(",");
        let pki = opts.secure.then(|| {
            let pki = dir.path().join("pki");
            rkube_pki::bootstrap(
                &pki,
                &rkube_pki::Plan {
                    replicas: replicas
                        .iter()
                        .map(|r| (r.id, vec![r.addr.rsplit_once(':').unwrap().0.to_string()]))
                        .collect(),
                    nodes: Vec::new(),
                    servers: replicas.iter().map(|r| r.addr.clone()).collect(),
                },
            )
            .expect("making the test PKI");
            pki
        });
        let mut c = Cluster {
            replicas,
            peers,
            opts,
            pki,
            _dir: dir,
        };
        for i in 0..c.replicas.len() {
            c.spawn(i);
        }
        c.wait_ready().await;
        c
    }

    fn spawn(&mut self, i: usize) {
        let r = &self.replicas[i];
        // Appended to, so a restarted replica's log keeps the earlier run's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(r.data_dir.with_extension("log"))
            .ok();
        let mut cmd = match self.opts.netns.get(i).filter(|n| !n.is_empty()) {
            // nsenter enters the namespace and execs: the child's pid is
            // the replica's own (signals reach it directly).
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(bin("control-plane"));
                c
            }
            None => Command::new(bin("control-plane")),
        };
        let child = cmd
            .args([
                "--id",
                &r.id.to_string(),
                "--peers",
                &self.peers,
                "--listen",
                &r.addr,
                "--data-dir",
                r.data_dir.to_str().expect("utf-8 path"),
                "--tick-ms",
                &self.opts.tick_ms.to_string(),
                "--snapshot-interval",
                &self.opts.snapshot_interval.to_string(),
                "--snapshot-keep",
                &self.opts.snapshot_keep.to_string(),
                "--history",
                &self.opts.history.to_string(),
            ])
            .args(&self.opts.extra_args)
            .args(r.join.then_some("--join"))
            .args(self.security_args(r.id))
            .env("RUST_LOG", "info,raft=warn")
            .stdout(Stdio::null())
            .stderr(match log {
                Some(f) => Stdio::from(f),
                None => Stdio::null(),
            })
            .spawn()
            .expect("spawning control-plane");
        self.replicas[i].child = Some(child);
    }

    fn security_args(&self, id: u64) -> Vec<String> {
        match &self.pki {
            None => vec!["--insecure".into()],
            Some(pki) => {
                let (cert, key) = rkube_pki::replica_cert(pki, id);
                vec![
                    "--tls-cert".into(),
                    cert.display().to_string(),
                    "--tls-key".into(),
                    key.display().to_string(),
                    "--client-ca".into(),
                    pki.join("ca.crt").display().to_string(),
                    "--token-auth-file".into(),
                    pki.join(rkube_pki::TOKENS_FILE).display().to_string(),
                ]
            }
        }
    }

    /// Starts a new replica with `--join` (the next unused id, a fresh data
    /// directory, a certificate of its own in a secure cluster) and returns
    /// its index. It serves nothing until a member add makes it a member.
    pub fn add_replica(&mut self) -> usize {
        let id = self.replicas.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let host = self.opts.host.clone();
        let addr = format!("{host}:{}", free_port());
        if let Some(pki) = &self.pki {
            let mut servers: Vec<String> = self.replicas.iter().map(|r| r.addr.clone()).collect();
            servers.push(addr.clone());
            rkube_pki::bootstrap(
                pki,
                &rkube_pki::Plan {
                    replicas: vec![(id, vec![host.clone()])],
                    servers,
                    ..Default::default()
                },
            )
            .expect("issuing the new replica's certificate");
        }
        self.peers.push_str(&format!(",{id}={addr}"));
        let data_dir = self._dir.path().join(format!("cp{id}"));
        self.replicas.push(Replica {
            id,
            addr,
            data_dir,
            join: true,
            child: None,
        });
        let i = self.replicas.len() - 1;
        self.spawn(i);
        i
    }

    /// The PKI directory of a secure cluster.
    pub fn pki_dir(&self) -> Option<&std::path::Path> {
        self.pki.as_deref()
    }

    /// The kubeconfig of `who` (`admin`, `admin-token`, `kube-proxy`,
    /// `kube-dns`, or `node-<name>`: node credentials are issued on first
    /// use) in a secure cluster.
    pub fn kubeconfig(&self, who: &str) -> PathBuf {
        let pki = self
            .pki
            .as_ref()
            .expect("a secure cluster (Options::secure)");
        if let Some(node) = who.strip_prefix("node-") {
            rkube_pki::bootstrap(
                pki,
                &rkube_pki::Plan {
                    nodes: vec![node.to_string()],
                    servers: self.replicas.iter().map(|r| r.addr.clone()).collect(),
                    ..Default::default()
                },
            )
            .expect("issuing a node credential");
        }
        rkube_pki::kubeconfig_path(pki, who)
    }

    /// How `who` connects (see [`Cluster::kubeconfig`]); the admin of an
    /// insecure cluster is anyone.
    pub fn connect_config(&self, who: &str) -> rkube_api::kubeconfig::ConnectConfig {
        match &self.pki {
            None => rkube_api::kubeconfig::ConnectConfig::insecure(&self.addresses()),
            Some(_) => rkube_api::kubeconfig::load_connect_config(&self.kubeconfig(who))
                .expect("loading a test kubeconfig"),
        }
    }

    /// A failover client of `who` over every replica.
    pub fn client_as(&self, who: &str) -> Client {
        Client::connect(&self.connect_config(who)).expect("client")
    }

    /// The replica's log file (stderr), for failure messages.
    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.replicas[i].data_dir.with_extension("log")).unwrap_or_default()
    }

    pub fn addresses(&self) -> String {
        self.replicas
            .iter()
            .map(|r| r.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A failover client over every replica.
    pub fn client(&self) -> Client {
        self.client_as("admin")
    }

    /// A client that talks to replica `i` only (no other addresses).
    pub fn client_of(&self, i: usize) -> Client {
        let mut cfg = self.connect_config("admin");
        cfg.servers = vec![self.replicas[i].addr.clone()];
        Client::connect(&cfg).expect("client")
    }

    pub async fn status_of(&self, i: usize) -> Option<ClusterStatusResponse> {
        let c = self.client_of(i);
        let mut stub = c.stub();
        tokio::time::timeout(
            Duration::from_millis(500),
            stub.cluster_status(rkube_api::proto::ClusterStatusRequest {}),
        )
        .await
        .ok()?
        .ok()
        .map(|r| r.into_inner())
    }

    /// Waits until every running replica agrees on a leader and the leader
    /// has bootstrapped the default namespace.
    pub async fn wait_ready(&self) -> u64 {
        let leader = wait_for(
            "a leader known to all running replicas",
            Duration::from_secs(20),
            || async {
                let mut leader = None;
                for (i, r) in self.replicas.iter().enumerate() {
                    if r.child.is_none() {
                        continue;
                    }
                    let s = self.status_of(i).await?;
                    if s.leader_id == 0 || leader.is_some_and(|l| l != s.leader_id) {
                        return None;
                    }
                    leader = Some(s.leader_id);
                }
                leader
            },
        )
        .await;
        let c = self.client();
        wait_for("namespace default", Duration::from_secs(20), || {
            let c = c.clone();
            async move { c.get("Namespace", "", "default").await.ok() }
        })
        .await;
        leader
    }

    /// The index of the current leader replica.
    pub async fn leader_index(&self) -> usize {
        let id = self.wait_ready().await;
        self.replicas
            .iter()
            .position(|r| r.id == id)
            .expect("leader among replicas")
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.replicas[i].child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Stops replica `i` with SIGSTOP (it keeps its sockets and answers
    /// nothing) until [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        }
    }

    /// Continues a paused replica (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        }
    }

    /// Starts replica `i` again after [`Cluster::kill`] (or a failed
    /// start), without waiting for it.
    pub fn start_replica(&mut self, i: usize) {
        if self.replicas[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// Whether replica `i`'s process has exited, and how: `None` while it
    /// runs (or was never started).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let c = self.replicas[i].child.as_mut()?;
        let st = c.try_wait().ok().flatten()?;
        self.replicas[i].child = None;
        Some(st)
    }

    /// The process id of replica `i`, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.replicas[i].child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.replicas[i].child.is_some()
    }

    /// Waits until replica `i` has applied at least `revision`.
    pub async fn wait_revision(&self, i: usize, revision: i64) -> ClusterStatusResponse {
        wait_for(
            &format!("replica {} to reach revision {revision}", i + 1),
            Duration::from_secs(30),
            || async { self.status_of(i).await.filter(|s| s.revision >= revision) },
        )
        .await
    }

    /// Runs rkubectl against replica `i`'s address (or all, with `None`).
    pub fn rkubectl(&self, target: Option<usize>, args: &[&str]) -> CmdResult {
        let server = match target {
            Some(i) => self.replicas[i].addr.clone(),
            None => self.addresses(),
        };
        let mut cmd = Command::new(bin("rkubectl"));
        if self.pki.is_some() {
            cmd.arg("--kubeconfig").arg(self.kubeconfig("admin"));
        }
        let out = cmd
            .arg("-s")
            .arg(&server)
            .args(args)
            .env_remove("RKUBE_SERVER")
            .env_remove("RKUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("running rkubectl");
        CmdResult::from(out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.replicas.len() {
            self.kill(i);
        }
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct CmdResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CmdResult {
    fn from(o: Output) -> Self {
        CmdResult {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl CmdResult {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts failure and returns stderr.
    pub fn err(self) -> String {
        assert_ne!(
            self.code, 0,
            "command unexpectedly succeeded\nstdout:\n{}",
            self.stdout
        );
        self.stderr
    }
}

/// A `hollow-nodes` process simulating some nodes; killing it is a power
/// failure of those nodes.
pub struct HollowNodes {
    child: Option<Child>,
    args: Vec<String>,
}

impl HollowNodes {
    pub fn start(cluster: &Cluster, names: &[&str], extra: &[&str]) -> HollowNodes {
        let mut args = vec!["-s".to_string(), cluster.addresses()];
        if cluster.pki_dir().is_some() {
            // One process plays many nodes: it cannot hold one node's
            // credential, so it acts as the admin.
            args.push("--kubeconfig".into());
            args.push(cluster.kubeconfig("admin").display().to_string());
        }
        args.extend([
            "--names".to_string(),
            names.join(","),
            "--heartbeat".to_string(),
            "0.5".to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut h = HollowNodes { child: None, args };
        h.spawn();
        h
    }

    fn spawn(&mut self) {
        let child = Command::new(bin("hollow-nodes"))
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning hollow-nodes");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        self.kill();
    }
}
