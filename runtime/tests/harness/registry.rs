//! Debian's docker-registry (the CNCF distribution registry) on loopback,
//! with its storage in a temporary directory, for pull tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, http, which};

pub struct Registry {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; None (with a skip line) if it is not installed.
    pub async fn start() -> Option<Registry> {
        let Some(bin) = which("docker-registry") else {
            println!("RKUBE-SKIP: node: docker-registry is not installed (apt-get install docker-registry)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        // Ask the kernel for a free port, then hand it to the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log"))
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            addr: addr.clone(),
            child,
            _dir: dir,
        };
        eventually(
            "the registry to answer /v2/",
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move {
                    match http::get(&addr, "/v2/") {
                        Ok((200, _)) => Some(()),
                        _ => None,
                    }
                }
            },
        )
        .await;
        Some(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
