//! The `runc` command line, with the shim's own state directory (`--root`)
//! so its containers never mix with another runtime's.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct Runc {
    pub binary: PathBuf,
    /// runc's state directory (on a tmpfs: /run/rkube/runc).
    pub root: PathBuf,
}

/// What `runc state` reports.
#[derive(Debug, Deserialize)]
pub struct RuncState {
    pub pid: i32,
    pub status: String,
}

impl Runc {
    /// A blocking `runc --root <root>` command (the monitor is synchronous).
    pub fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// An async `runc --root <root>` command.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd.kill_on_drop(true);
        cmd
    }

    /// `runc kill <id> <signal>`; a container that is gone is not an error.
    pub async fn kill(&self, id: &str, signal: &str) -> anyhow::Result<()> {
        let out = self
            .command()
            .args(["kill", id, signal])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running runc kill")?;
        if out.status.success() || gone(&out.stderr) {
            return Ok(());
        }
        bail!("runc kill {id} {signal}: {}", last_error(&out.stderr))
    }

    /// `runc delete --force <id>`; a container that is gone is fine.
    pub async fn delete(&self, id: &str) -> anyhow::Result<()> {
        let out = self
            .command()
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running runc delete")?;
        if out.status.success() || gone(&out.stderr) {
            return Ok(());
        }
        bail!("runc delete {id}: {}", last_error(&out.stderr))
    }

    /// `runc state <id>`; None when runc does not know the container.
    pub async fn state(&self, id: &str) -> anyhow::Result<Option<RuncState>> {
        let out = self
            .command()
            .args(["state", id])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running runc state")?;
        if !out.status.success() {
            if gone(&out.stderr) {
                return Ok(None);
            }
            bail!("runc state {id}: {}", last_error(&out.stderr));
        }
        Ok(Some(
            serde_json::from_slice(&out.stdout).context("decoding runc state")?,
        ))
    }

    /// Where runc keeps a container's state (exists while runc knows it).
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

fn gone(stderr: &[u8]) -> bool {
    let s = String::from_utf8_lossy(stderr);
    s.contains("does not exist") || s.contains("not found") || s.contains("container not running")
}

/// runc's last error line, without its logrus decoration.
pub fn last_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match line.find("msg=\"") {
        Some(at) => line[at + 5..]
            .trim_end_matches('"')
            .replace("\\\"", "\"")
            .to_string(),
        None => line.to_string(),
    }
}

/// The last error message in a runc `--log-format json` log file.
pub fn last_logged_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        match v["level"].as_str() {
            Some("error") | Some("fatal") => v["msg"].as_str().map(str::to_string),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_logrus_decoration() {
        let err = b"time=\"2026\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(last_error(err), "container \"x\" does not exist");
        assert_eq!(last_error(b"plain failure\n\n"), "plain failure");
    }

    #[test]
    fn reads_the_last_logged_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"first\"}\n{\"level\":\"info\",\"msg\":\"x\"}\n\
             {\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": executable file not found in $PATH\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_logged_error(&log).unwrap(),
            "exec: \"nope\": executable file not found in $PATH"
        );
    }
}
