//! Liveness, readiness and startup probes (exec, httpGet, tcpSocket), one
//! task per container and probe kind, publishing results to the pod's
//! worker.

use rkube_api::proto::{ContainerPort, Probe};
use rkube_runtime::client::RuntimeClient;
use rkube_runtime::proto as rt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No verdict yet (before the first result past the threshold).
    Unknown,
    Success,
    /// With the last failure's message.
    Failure(String),
}

/// Where one pod's probe results meet: written by probe tasks, read by the
/// worker, which is woken on every change.
#[derive(Default)]
pub struct Board {
    results: Mutex<HashMap<(String, ProbeKind), Outcome>>,
    pub wake: Arc<Notify>,
}

impl Board {
    pub fn new(wake: Arc<Notify>) -> Board {
        Board {
            results: Default::default(),
            wake,
        }
    }
    pub fn get(&self, container_id: &str, kind: ProbeKind) -> Outcome {
        self.results
            .lock()
            .unwrap()
            .get(&(container_id.to_string(), kind))
            .cloned()
            .unwrap_or(Outcome::Unknown)
    }
    fn set(&self, container_id: &str, kind: ProbeKind, o: Outcome) {
        let prev = self
            .results
            .lock()
            .unwrap()
            .insert((container_id.to_string(), kind), o.clone());
        if prev.as_ref() != Some(&o) {
            self.wake.notify_one();
        }
    }
    /// Forgets the results of containers not in `keep`.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.results.lock().unwrap().retain(|(id, _), _| keep(id));
    }
}

/// What a probe talks to.
#[derive(Clone, Debug)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: String,
    pub ports: Vec<ContainerPort>,
}

fn resolve_port(port: &str, ports: &[ContainerPort]) -> Result<u16, String> {
    if let Ok(n) = port.parse::<u16>() {
        if n > 0 {
            return Ok(n);
        }
    }
    ports
        .iter()
        .find(|p| p.name == port)
        .map(|p| p.container_port as u16)
        .ok_or_else(|| format!("port {port:?} is not a number nor a named port of the container"))
}

/// Runs one probe once.
pub async fn probe_once(
    probe: &Probe,
    target: &Target,
    runtime: &mut RuntimeClient,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.max(1) as u64);
    if let Some(exec) = &probe.exec {
        let r = runtime
            .exec_sync(rt::ExecSyncRequest {
                container_id: target.container_id.clone(),
                cmd: exec.command.clone(),
                timeout: timeout.as_secs() as i64,
            })
            .await;
        return match r {
            Ok(r) => {
                let r = r.into_inner();
                if r.exit_code == 0 {
                    Ok(())
                } else {
                    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stderr));
                    Err(format!(
                        "command {:?} exited with {}: {}",
                        exec.command.join(" "),
                        r.exit_code,
                        out.trim()
                    ))
                }
            }
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => Err(format!(
                "command {:?} timed out after {timeout:?}",
                exec.command.join(" ")
            )),
            Err(s) => Err(format!("exec: {}", s.message())),
        };
    }
    if let Some(h) = &probe.http_get {
        let port = resolve_port(&h.port, &target.ports)?;
        let host = if h.host.is_empty() {
            target.pod_ip.clone()
        } else {
            h.host.clone()
        };
        if h.scheme.eq_ignore_ascii_case("HTTPS") {
            return Err("HTTPS probes are not supported by this kubelet".into());
        }
        let path = if h.path.is_empty() {
            "/".to_string()
        } else {
            h.path.clone()
        };
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/rkube\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for hd in &h.http_headers {
            req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
        }
        req.push_str("\r\n");
        let addr = format!("{host}:{port}");
        let fut = async {
            let mut s = tokio::net::TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 1024];
            let mut got = 0;
            while got < 12 {
                let n = s.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            let head = String::from_utf8_lossy(&buf[..got]).to_string();
            let code: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("Get \"http://{addr}{path}\": malformed HTTP response"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        };
        return tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "Get \"http://{addr}{path}\": context deadline exceeded"
                ))
            });
    }
    if let Some(t) = &probe.tcp_socket {
        let port = resolve_port(&t.port, &target.ports)?;
        let host = if t.host.is_empty() {
            target.pod_ip.clone()
        } else {
            t.host.clone()
        };
        let addr = format!("{host}:{port}");
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
            Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    Err("the probe has no handler (exec, httpGet or tcpSocket)".into())
}

/// Probes forever (until aborted), publishing verdicts to `board`.
pub async fn run(
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    mut runtime: RuntimeClient,
    board: Arc<Board>,
) {
    let period = Duration::from_secs(probe.period_seconds.max(1) as u64);
    let success_threshold = probe.success_threshold.max(1);
    let failure_threshold = probe.failure_threshold.max(1);
    if probe.initial_delay_seconds > 0 {
        tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds as u64)).await;
    }
    let (mut ok_run, mut fail_run) = (0, 0);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match probe_once(&probe, &target, &mut runtime).await {
            Ok(()) => {
                fail_run = 0;
                ok_run += 1;
                if ok_run >= success_threshold {
                    board.set(&target.container_id, kind, Outcome::Success);
                }
            }
            Err(msg) => {
                ok_run = 0;
                fail_run += 1;
                tracing::debug!(container = %target.container_id, kind = kind.name(), %msg, "probe failed");
                if fail_run >= failure_threshold {
                    board.set(&target.container_id, kind, Outcome::Failure(msg));
                    if kind == ProbeKind::Startup || kind == ProbeKind::Liveness {
                        // The worker restarts the container; this task ends
                        // with it.
                        fail_run = 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_numeric_ports() {
        let ports = vec![ContainerPort {
            name: "http".into(),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(resolve_port("80", &ports), Ok(80));
        assert_eq!(resolve_port("http", &ports), Ok(8080));
        assert!(resolve_port("grpc", &ports).is_err());
    }
}
