//! A task: one runc container (a pod's pause process or one of its
//! containers) with its bundle and the files its monitor writes. The task's
//! state is read from those files and from /proc, never held only in
//! memory, so a restarted shim sees exactly what the last one left.
//!
//! Files in a task directory:
//! - `bundle/config.json` — the OCI spec (and `bundle/rootfs` for containers)
//! - `monitor.json` — the monitor process (pid + start time)
//! - `started.json` — the container's first process, once it runs
//! - `exit.json` — how it ended (exit code, reason, message)
//! - `runc.log`, `monitor.log` — diagnostics

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::runc::Runc;
use crate::host::procs::ProcessIdentity;
use crate::records;

/// How long a start (runc create + start) may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartedRecord {
    pub process: ProcessIdentity,
    pub started_at: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub finished_at: i64,
    /// Completed, Error, OOMKilled, StartError, Unknown.
    pub reason: String,
    pub message: String,
    pub started_at: i64,
}

#[derive(Clone, Debug)]
pub enum TaskStatus {
    Created,
    Running(StartedRecord),
    Exited(ExitRecord),
}

/// What the monitor tells the shim once the container runs or cannot.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartReport {
    pub ok: bool,
    pub process: Option<ProcessIdentity>,
    pub error: String,
}

/// Everything the monitor needs, passed on its command line.
#[derive(Clone, Debug, clap::Args)]
pub struct MonitorArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub task_dir: PathBuf,
    #[arg(long)]
    pub runc: PathBuf,
    #[arg(long)]
    pub runc_root: PathBuf,
    /// The container's log file; without it output goes to /dev/null.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The container's cgroupsPath (to read its OOM-kill counter).
    #[arg(long)]
    pub cgroup: String,
}

#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub dir: PathBuf,
}

impl Task {
    pub fn new(id: &str, dir: PathBuf) -> Task {
        Task {
            id: id.to_string(),
            dir,
        }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The task's state as its files and /proc say.
    pub fn status(&self) -> TaskStatus {
        if let Ok(Some(exit)) = records::read::<ExitRecord>(&self.file("exit.json")) {
            return TaskStatus::Exited(exit);
        }
        let monitor_alive = self.monitor().map(|m| m.is_alive()).unwrap_or(false);
        match records::read::<StartedRecord>(&self.file("started.json")) {
            Ok(Some(started)) => {
                if started.process.is_alive() || monitor_alive {
                    // A live monitor is about to record the exit.
                    TaskStatus::Running(started)
                } else {
                    TaskStatus::Exited(ExitRecord {
                        exit_code: 255,
                        finished_at: records::now_nanos(),
                        reason: "Unknown".into(),
                        message: "the container's monitor ended without recording how the \
                                  container exited (was the host restarted?)"
                            .into(),
                        started_at: started.started_at,
                    })
                }
            }
            _ => TaskStatus::Created,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.status(), TaskStatus::Running(_))
    }

    /// The monitor process, if one was started.
    pub fn monitor(&self) -> Option<ProcessIdentity> {
        records::read(&self.file("monitor.json")).ok().flatten()
    }

    /// Starts the container through a monitor of its own (a detached
    /// `rkube-runtime monitor` process) and waits until it runs. On failure
    /// the monitor has already recorded a StartError exit.
    pub async fn start(
        &self,
        runc: &Runc,
        log: Option<&Path>,
        cgroup: &str,
    ) -> anyhow::Result<(ProcessIdentity, tokio::process::Child)> {
        let exe = std::env::current_exe().context("finding the shim's own executable")?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("monitor")
            .arg("--id")
            .arg(&self.id)
            .arg("--task-dir")
            .arg(&self.dir)
            .arg("--runc")
            .arg(&runc.binary)
            .arg("--runc-root")
            .arg(&runc.root)
            .arg("--cgroup")
            .arg(cgroup);
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the container monitor")?;
        let pid = child.id().context("the monitor exited at once")? as i32;
        if let Some(identity) = ProcessIdentity::of(pid) {
            records::write(&self.file("monitor.json"), &identity)?;
        }
        let stdout = child.stdout.take().context("monitor has no stdout")?;
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .map_err(|_| anyhow::anyhow!("the container did not start within {START_TIMEOUT:?}"))?
            .context("reading the monitor's report")?;
        if read == 0 {
            // The monitor died before reporting; its log says why.
            let why = std::fs::read_to_string(self.file("monitor.log")).unwrap_or_default();
            anyhow::bail!(
                "the container monitor ended before the start: {}",
                why.trim()
            );
        }
        let report: StartReport =
            serde_json::from_str(line.trim()).context("decoding the monitor's report")?;
        match report.process {
            Some(process) if report.ok => Ok((process, child)),
            _ => anyhow::bail!("{}", report.error),
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the container's first
    /// process.
    pub async fn signal(&self, runc: &Runc, signal: &str) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        runc.kill(&self.id, signal).await
    }

    /// Waits until the task has exited (its exit recorded) or `deadline`.
    pub async fn wait_exited(&self, deadline: Instant) -> bool {
        let mut pause = Duration::from_millis(5);
        loop {
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Kills the task if it runs and waits for its exit to be recorded.
    pub async fn kill(&self, runc: &Runc, wait: Duration) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        self.signal(runc, "KILL").await?;
        if !self.wait_exited(Instant::now() + wait).await {
            anyhow::bail!(
                "container {} did not exit within {wait:?} of SIGKILL",
                self.id
            );
        }
        Ok(())
    }

    /// Removes the container from runc (and with it its cgroup).
    pub async fn delete(&self, runc: &Runc) -> anyhow::Result<()> {
        runc.delete(&self.id).await
    }
}
