//! Real nodes on one host, each in a network namespace of its own (the
//! design's "local mode"): a host bridge stands for the machines' network,
//! every node has a veth on it with its own address, its own runtime shim
//! (own state, runc root, CNI allocations, netns prefix, cgroup parent, and
//! a `cbr0` inside its namespace) and its own kubelet. Pods on two nodes
//! talk through the routes the kubelets install, as on separate machines.
//!
//! Needs root, runc, the CNI plugins, iptables and nsenter; without them
//! `NodeNet::create` prints `RKUBE-SKIP: node: <why>` and returns None.

use crate::{bin, Cluster};
use rkube_runtime::host::cgroups::Cgroups;
use rkube_runtime::host::{mounts, netns, procs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why nodes cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (namespaces, mounts and cgroups need it)".into());
    }
    if which("runc").is_none() {
        return Some("runc is not installed (apt-get install runc)".into());
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap", "firewall"] {
        if !Path::new("/usr/lib/cni").join(plugin).is_file() {
            return Some(format!(
                "CNI plugin {plugin} is missing (apt-get install containernetworking-plugins)"
            ));
        }
    }
    for tool in ["iptables", "ip", "nsenter", "busybox"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The project's image archives (busybox, nginx, echo), built once per
/// test process by scripts/build-images.sh (cached across runs).
pub fn images_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let binary = bin("rkube-runtime");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
        let out = Command::new(&script)
            .env("RKUBE_BIN_DIR", binary.parent().expect("bin dir"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/build-images.sh");
        assert!(out.status.success(), "scripts/build-images.sh failed");
        PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or(""),
        )
    })
    .clone()
}

/// The machines' network: a bridge on the host with an address of its own
/// (where the control plane listens), one slot per test.
pub struct NodeNet {
    pub k: u32,
    pub bridge: String,
    /// "172.31.<k>": the host is .1, node i is .(10+i).
    pub prefix: String,
}

impl NodeNet {
    pub fn create() -> Option<NodeNet> {
        if let Some(why) = skip_reason() {
            println!("RKUBE-SKIP: node: {why}");
            return None;
        }
        // Traffic to the cluster ranges never leaves the machine.
        for range in ["10.244.0.0/16", "10.96.0.0/12"] {
            let _ = sh(&["ip", "route", "replace", "unreachable", range]);
        }
        // A slot whose bridge exists belongs to another test running now
        // (or to one that was killed): skip it. `ip link add` fails when
        // the name is taken, so two tests never share a slot; what a killed
        // test left in the slot we win (namespaces, iptables rules) goes.
        let first = (std::process::id() % 10) * 10 + NEXT.fetch_add(1, Ordering::SeqCst) % 10;
        let k = (0..100)
            .map(|i| 100 + (first + i) % 100)
            .find(|k| {
                sh(&["ip", "link", "add", &format!("rkn{k}"), "type", "bridge"])
                    .status
                    .success()
            })
            .expect("a free node-network slot (bridges rkn100-rkn199 all exist)");
        let net = NodeNet {
            k,
            bridge: format!("rkn{k}"),
            prefix: format!("172.31.{k}"),
        };
        net.cleanup_stale();
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{}.1/24", net.prefix),
            "dev",
            &net.bridge,
        ]);
        must(&["ip", "link", "set", &net.bridge, "up"]);
        // Docker's FORWARD policy is DROP and bridged frames pass through
        // iptables (br_netfilter): let node-to-node traffic through.
        must(&[
            "iptables",
            "-I",
            "FORWARD",
            "-i",
            &net.bridge,
            "-o",
            &net.bridge,
            "-j",
            "ACCEPT",
        ]);
        Some(net)
    }

    pub fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    fn cleanup(&self) {
        self.cleanup_stale();
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }

    /// The slot's node namespaces and FORWARD rules (not its bridge).
    fn cleanup_stale(&self) {
        for i in 0..10 {
            let ns = format!("rkn{}-{}", self.k, i);
            let _ = sh(&["ip", "netns", "del", &ns]);
        }
        while sh(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ])
        .status
        .success()
        {}
    }
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Settings for the kubelets of a test (fast timings).
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub kubelet_args: Vec<String>,
    pub labels: Vec<String>,
    /// Also run kube-proxy in the node's namespace, with these extra flags
    /// (`None`: no proxy, the node tests' default). See
    /// [`NodeOptions::with_kube_proxy`].
    pub kube_proxy: Option<Vec<String>>,
}

impl NodeOptions {
    /// The default kubelet settings plus a kube-proxy (short endpoint
    /// grace, so removed endpoints' connections end within a test).
    pub fn with_kube_proxy() -> NodeOptions {
        NodeOptions {
            kube_proxy: Some(vec!["--endpoint-close-grace".into(), "2s".into()]),
            ..Default::default()
        }
    }
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            kubelet_args: vec![
                "--node-status-update-frequency".into(),
                "1".into(),
                "--node-lease-duration-seconds".into(),
                "4".into(),
                "--sync-frequency".into(),
                "2".into(),
                "--backoff-base".into(),
                "1".into(),
                "--backoff-max".into(),
                "8".into(),
            ],
            labels: vec![],
            kube_proxy: None,
        }
    }
}

/// Where each node's kube-proxy serves /metrics and /healthz (on the
/// node's own loopback).
pub const PROXY_METRICS: &str = "127.0.0.1:10249";

/// One node: a network namespace, a runtime shim and a kubelet.
pub struct LocalNode {
    pub name: String,
    pub index: u32,
    pub ip: String,
    pub netns: String,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    netns_prefix: String,
    cgroup_parent: String,
    servers: String,
    opts: NodeOptions,
    shim: Option<Child>,
    kubelet: Option<Child>,
    proxy: Option<Child>,
    /// Other processes a test runs in the node's namespace, by name.
    processes: Vec<(String, Child)>,
    starts: u32,
}

impl LocalNode {
    pub fn start(
        net: &NodeNet,
        cluster: &Cluster,
        name: &str,
        index: u32,
        opts: NodeOptions,
    ) -> LocalNode {
        let netns = format!("rkn{}-{}", net.k, index);
        let ip = format!("{}.{}", net.prefix, 10 + index);
        let host_veth = format!("rkn{}v{}", net.k, index);
        let _ = sh(&["ip", "netns", "del", &netns]);
        let _ = sh(&["ip", "link", "del", &host_veth]);
        must(&["ip", "netns", "add", &netns]);
        must(&[
            "ip", "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        must(&["ip", "link", "set", &host_veth, "master", &net.bridge, "up"]);
        let inns = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", netns.as_str()];
            v.extend_from_slice(args);
            must(&v);
        };
        inns(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        inns(&["ip", "link", "set", "eth0", "up"]);
        inns(&["ip", "link", "set", "lo", "up"]);
        // A node routes its pods' traffic.
        inns(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let dir = tempfile::Builder::new()
            .prefix(&format!("rkube-{name}-"))
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.53\n")
            .expect("resolv.conf");
        let mut node = LocalNode {
            name: name.into(),
            index,
            ip,
            socket: dir.path().join("runtime.sock"),
            netns_prefix: format!("rkn{}p{}-", net.k, index),
            cgroup_parent: format!("/rkube-node-{}-{}", net.k, index),
            netns,
            dir,
            servers: cluster.addresses(),
            opts,
            shim: None,
            kubelet: None,
            proxy: None,
            processes: Vec::new(),
            starts: 0,
        };
        node.spawn_shim();
        node.spawn_kubelet();
        if node.opts.kube_proxy.is_some() {
            node.spawn_proxy();
        }
        node
    }

    /// A command inside the node's network namespace only (mounts, /proc
    /// and the rest stay the host's, like processes on a real node).
    fn in_node(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        c
    }

    fn log_file(&self, what: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{what}.log")))
            .expect("log file")
    }

    pub fn spawn_shim(&mut self) {
        self.starts += 1;
        let d = self.dir.path();
        let child = self
            .in_node(&bin("rkube-runtime"))
            .args(["--socket", &self.socket.display().to_string()])
            .args(["--root", &d.join("runtime").display().to_string()])
            .args(["--runc-root", &d.join("runc").display().to_string()])
            .args(["--cni-data-dir", &d.join("ipam").display().to_string()])
            .args(["--netns-prefix", &self.netns_prefix])
            .args(["--cgroup-parent", &self.cgroup_parent])
            .args(["--preload", &images_dir().display().to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file("shim"))
            .spawn()
            .expect("spawning rkube-runtime");
        self.shim = Some(child);
    }

    pub fn spawn_kubelet(&mut self) {
        let d = self.dir.path();
        let mut cmd = self.in_node(&bin("kubelet"));
        cmd.args(["--server", &self.servers])
            .args(["--node-name", &self.name])
            .args(["--node-ip", &self.ip])
            .args(["--runtime-socket", &self.socket.display().to_string()])
            .args(["--root-dir", &d.join("kubelet").display().to_string()])
            .args(["--pod-log-dir", &d.join("pods").display().to_string()])
            .args(["--listen", &format!("{}:0", self.ip)])
            .args([
                "--resolv-conf",
                &d.join("resolv.conf").display().to_string(),
            ])
            .args(&self.opts.kubelet_args);
        if !self.opts.labels.is_empty() {
            cmd.args(["--node-labels", &self.opts.labels.join(",")]);
        }
        let child = cmd
            .env("RUST_LOG", "info,rkube_kubelet=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file("kubelet"))
            .spawn()
            .expect("spawning kubelet");
        self.kubelet = Some(child);
    }

    /// Starts kube-proxy in the node's namespace (its ClusterIPs go on the
    /// namespace's own `rkube-svc0`, an empty bridge where the kernel has
    /// no dummy driver), with the flags of [`NodeOptions::kube_proxy`].
    pub fn spawn_proxy(&mut self) {
        let extra = self.opts.kube_proxy.clone().unwrap_or_default();
        let child = self
            .in_node(&bin("kube-proxy"))
            .args(["--server", &self.servers])
            .args(["--hostname-override", &self.name])
            .args(["--metrics-listen", PROXY_METRICS])
            .args(&extra)
            .env("RUST_LOG", "info,rkube_kube_proxy=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file("kube-proxy"))
            .spawn()
            .expect("spawning kube-proxy");
        self.proxy = Some(child);
    }

    pub fn kill_proxy(&mut self) {
        if let Some(mut c) = self.proxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy.as_ref().map(|c| c.id())
    }

    /// Whether this node's kube-proxy has synced (its /healthz says 200).
    pub fn proxy_synced(&self) -> bool {
        in_netns(
            &self.netns,
            format!("http://{PROXY_METRICS}/healthz"),
            |url| http_get_now(&url),
        )
        .is_ok()
    }

    /// The proxy's /metrics page.
    pub fn proxy_metrics(&self) -> Option<String> {
        in_netns(
            &self.netns,
            format!("http://{PROXY_METRICS}/metrics"),
            |url| http_get_now(&url),
        )
        .ok()
    }

    /// Starts `program args` in the node's namespace as process `what`
    /// (like a host-network pod; its stderr goes to `<what>.log` in the
    /// node's directory). Stopped by [`LocalNode::stop_process`] or when the
    /// node is dropped.
    pub fn start_process(&mut self, what: &str, program: &Path, args: &[String]) {
        self.stop_process(what);
        let child = self
            .in_node(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file(what))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        self.processes.push((what.to_string(), child));
    }

    /// Kills process `what` (SIGKILL) and reaps it.
    pub fn stop_process(&mut self, what: &str) {
        while let Some(i) = self.processes.iter().position(|(n, _)| n == what) {
            let (_, mut c) = self.processes.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn process_pid(&self, what: &str) -> Option<u32> {
        self.processes
            .iter()
            .find(|(n, _)| n == what)
            .map(|(_, c)| c.id())
    }

    pub fn kubelet_pid(&self) -> Option<u32> {
        self.kubelet.as_ref().map(|c| c.id())
    }

    pub fn shim_pid(&self) -> Option<u32> {
        self.shim.as_ref().map(|c| c.id())
    }

    /// The cgroup (v1 memory hierarchy) holding this node's pods.
    pub fn pods_memory_cgroup(&self) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup/memory").join(self.cgroup_parent.trim_start_matches('/'))
    }

    pub fn kill_kubelet(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart_kubelet(&mut self) {
        self.kill_kubelet();
        self.spawn_kubelet();
    }

    pub fn kill_shim(&mut self) {
        if let Some(mut c) = self.shim.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a program in the node's network namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.in_node(Path::new(args[0]))
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// An HTTP/1.0 GET from inside the node's network namespace (a thread
    /// that joins the namespace); the response body, or None.
    pub fn http_get(&self, url: &str) -> Option<String> {
        let r = in_netns(&self.netns, url.to_string(), |url| http_get_now(&url));
        if let Err(e) = &r {
            eprintln!("{}: GET {url}: {e}", self.name);
        }
        r.ok()
    }

    pub fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{what}.log"))).unwrap_or_default()
    }

    /// What the node still holds of pods: netns, veths and bridge ports,
    /// cgroups, mounts, IP allocations, runc containers, processes.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for ns in netns::list(&self.netns_prefix) {
            left.push(format!("netns {ns}"));
        }
        let links = self.exec(&["ip", "-o", "link", "show"]);
        for l in String::from_utf8_lossy(&links.stdout).lines() {
            if l.contains("veth") {
                left.push(format!("link {}", l.split(':').nth(1).unwrap_or("").trim()));
            }
        }
        if let Ok(cg) = Cgroups::detect() {
            for p in cg.existing(&self.cgroup_parent) {
                // The parent itself may stay; anything below is a pod's.
                if std::fs::read_dir(&p)
                    .map(|d| d.filter_map(Result::ok).any(|e| e.path().is_dir()))
                    .unwrap_or(false)
                {
                    left.push(format!("cgroup children under {}", p.display()));
                }
            }
        }
        for m in mounts::mounts_under(&self.dir.path().join("runtime")) {
            left.push(format!("mount {}", m.display()));
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("ipam")) {
            for net in rd.filter_map(Result::ok) {
                if let Ok(files) = std::fs::read_dir(net.path()) {
                    for f in files.filter_map(Result::ok) {
                        let n = f.file_name().to_string_lossy().to_string();
                        if n.parse::<std::net::Ipv4Addr>().is_ok() {
                            left.push(format!("ip allocation {n}"));
                        }
                    }
                }
            }
        }
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.dir.path().join("runc"))
            .args(["list", "-q"])
            .output();
        if let Ok(o) = out {
            for id in String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.is_empty())
            {
                left.push(format!("runc container {id}"));
            }
        }
        left
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- kubelet log of {} ---\n{}",
                self.name,
                tail(&self.log("kubelet"), 150)
            );
            eprintln!(
                "--- shim log of {} ---\n{}",
                self.name,
                tail(&self.log("shim"), 60)
            );
            let mut extra: Vec<String> = self.processes.iter().map(|(n, _)| n.clone()).collect();
            if self.opts.kube_proxy.is_some() {
                extra.insert(0, "kube-proxy".into());
            }
            for what in extra {
                eprintln!(
                    "--- {what} log of {} ---\n{}",
                    self.name,
                    tail(&self.log(&what), 80)
                );
            }
            for cmd in [
                &["ip", "addr"][..],
                &["ip", "route"][..],
                &["iptables-save"][..],
            ] {
                let o = self.exec(cmd);
                eprintln!(
                    "--- {} in {} ---\n{}{}",
                    cmd.join(" "),
                    self.name,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        for (_, mut c) in self.processes.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_proxy();
        self.kill_kubelet();
        self.kill_shim();
        let runc_root = self.dir.path().join("runc");
        let runc = |args: &[&str]| {
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
        };
        if let Ok(out) = runc(&["list", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = runc(&["delete", "--force", id]);
            }
        }
        for pid in procs::find_by_cmdline(&self.dir.path().display().to_string()) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let mut mounted = mounts::mounts_under(self.dir.path());
        mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounted {
            let _ = mounts::unmount(&m);
        }
        for ns in netns::list(&self.netns_prefix) {
            let _ = netns::remove(&PathBuf::from(netns::NETNS_DIR).join(ns));
        }
        if let Ok(cg) = Cgroups::detect() {
            let _ = cg.remove_tree(&self.cgroup_parent);
        }
        let _ = sh(&["ip", "netns", "del", &self.netns]);
    }
}

/// Runs `f` on a thread inside network namespace `netns`.
pub fn in_netns<T: Send + 'static, A: Send + 'static>(
    netns: &str,
    arg: A,
    f: fn(A) -> Result<T, String>,
) -> Result<T, String> {
    let path = PathBuf::from("/run/netns").join(netns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        use std::os::fd::AsRawFd;
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        f(arg)
    })
    .join()
    .map_err(|_| "the netns thread panicked".to_string())?
}

/// A plain HTTP/1.0 GET of `http://host:port/path`; the body on a 2xx.
pub fn http_get_now(url: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = if hostport.contains(':') {
        hostport.parse().map_err(|e| format!("{hostport}: {e}"))?
    } else {
        format!("{hostport}:80")
            .parse()
            .map_err(|e| format!("{hostport}: {e}"))?
    };
    let t = std::time::Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, t).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(t)).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code.starts_with('2') {
        Ok(body.to_string())
    } else {
        Err(format!("HTTP status {code:?}"))
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
