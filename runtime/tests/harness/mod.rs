//! The node tier's bench: each test gets a shim of its own (own --root,
//! bridge, pod subnet, netns prefix, cgroup parent, host-local directory),
//! so tests run side by side and every leak is attributable. Needs root,
//! runc, the CNI plugins and iptables; without them a test prints
//! `RKUBE-SKIP: node: <why>` and returns.

#![allow(dead_code)]

pub mod http;
pub mod node;
pub mod registry;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use node::Node;

/// Why the node tier cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
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
    for tool in ["iptables", "ip", "apt-get", "dpkg"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The directory of the project's image archives (busybox, nginx, echo),
/// built once per test run by scripts/build-images.sh (cached across runs).
pub fn images_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin = Path::new(env!("CARGO_BIN_EXE_rkube-runtime"))
            .parent()
            .expect("the binary has a directory")
            .to_path_buf();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
        let out = std::process::Command::new(&script)
            .env("RKUBE_BIN_DIR", &bin)
            .stderr(std::process::Stdio::inherit())
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

/// Waits until `check` yields a value, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
