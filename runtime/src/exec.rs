//! Running a command in a running container (`runc exec`): ExecSync
//! collects its output; Exec streams stdin, stdout and stderr (or one
//! terminal) both ways and ends with the exit code.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::console::{resize, ConsoleSocket};
use crate::container::ContainerEntry;
use crate::error::{Result, RuntimeError};
use crate::proto::{
    exec_request, exec_response, ExecExit, ExecRequest, ExecResponse, ExecStart, ExecSyncResponse,
};
use crate::records;
use crate::runtime::Runtime;

/// Output beyond this is dropped (ExecSync answers in one message).
const MAX_OUTPUT: usize = 16 << 20;

impl Runtime {
    fn running_container(&self, id: &str) -> Result<std::sync::Arc<ContainerEntry>> {
        let c = self.container(id)?;
        if !c.task.is_running() {
            return Err(RuntimeError::precondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        Ok(c)
    }

    #[tracing::instrument(skip(self))]
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        if cmd.is_empty() {
            return Err(RuntimeError::invalid("cmd is empty"));
        }
        let c = self.running_container(id)?;
        let pid_file = self
            .opts
            .root
            .join("tmp")
            .join(format!("exec-{}.pid", records::new_id()));
        let mut child = self
            .runc
            .command()
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&c.id)
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running runc exec")?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut stderr = child.stderr.take().context("no stderr")?;
        let collect = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut out_reader = (&mut stdout).take(MAX_OUTPUT as u64);
            let mut err_reader = (&mut stderr).take(MAX_OUTPUT as u64);
            let (a, b) = tokio::join!(
                out_reader.read_to_end(&mut out),
                err_reader.read_to_end(&mut err)
            );
            a.and(b).map(|_| (out, err))
        };
        let run = async {
            let output = collect.await;
            let status = child.wait().await;
            (output, status)
        };
        let result = if timeout > 0 {
            tokio::time::timeout(Duration::from_secs(timeout as u64), run).await
        } else {
            Ok(run.await)
        };
        let answer = match result {
            Ok((output, status)) => {
                let (stdout, stderr) = output.context("reading exec output")?;
                let status = status.context("waiting for runc exec")?;
                Ok(ExecSyncResponse {
                    stdout,
                    stderr,
                    exit_code: exit_code(status),
                })
            }
            Err(_) => {
                kill_exec(&pid_file);
                Err(RuntimeError::DeadlineExceeded(format!(
                    "command {cmd:?} did not finish within {timeout}s and was killed"
                )))
            }
        };
        let _ = std::fs::remove_file(&pid_file);
        answer
    }

    /// Runs a streaming exec: `input` after the start message, answers on
    /// `output`. Returns when the process has exited (or failed to start).
    pub async fn exec_stream(
        &self,
        start: ExecStart,
        mut input: impl futures::Stream<Item = ExecRequest> + Unpin + Send + 'static,
        output: mpsc::Sender<std::result::Result<ExecResponse, tonic::Status>>,
    ) -> Result<()> {
        if start.cmd.is_empty() {
            return Err(RuntimeError::invalid("cmd is empty"));
        }
        let c = self.running_container(&start.container_id)?;
        let tmp = self.opts.root.join("tmp");
        let tag = records::new_id();
        let pid_file = tmp.join(format!("exec-{tag}.pid"));
        let (mut child, console) = if start.tty {
            // runc gives a terminal only to a detached process: the exec
            // monitor stays its parent and exits with its exit code.
            let sock = ConsoleSocket::bind(&tmp.join(format!("console-{}.sock", &tag[..16])))?;
            let exe = std::env::current_exe().context("finding the shim's own executable")?;
            let child = tokio::process::Command::new(exe)
                .arg("exec-monitor")
                .arg("--id")
                .arg(&c.id)
                .arg("--runc")
                .arg(&self.runc.binary)
                .arg("--runc-root")
                .arg(&self.runc.root)
                .arg("--console-socket")
                .arg(&sock.path)
                .arg("--pid-file")
                .arg(&pid_file)
                .arg("--")
                .args(&start.cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("running the exec monitor")?;
            (child, Some(sock))
        } else {
            let child = self
                .runc
                .command()
                .arg("exec")
                .arg("--pid-file")
                .arg(&pid_file)
                .arg(&c.id)
                .args(&start.cmd)
                .stdin(if start.stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("running runc exec")?;
            (child, None)
        };
        let sender = output.clone();
        let send = move |msg: exec_response::Msg| {
            let output = sender.clone();
            async move {
                output
                    .send(Ok(ExecResponse { msg: Some(msg) }))
                    .await
                    .is_ok()
            }
        };

        let mut pumps = Vec::new();
        if let Some(sock) = console {
            let receive =
                tokio::task::spawn_blocking(move || sock.receive_master(Duration::from_secs(30)));
            let failed = |why: String| {
                RuntimeError::precondition(format!("exec {:?}: {}", start.cmd, why.trim()))
            };
            let mut receive = receive;
            let ended_first = tokio::select! {
                got = &mut receive => Err(got),
                _ = child.wait() => Ok(()),
            };
            let master = match ended_first {
                Err(got) => got.context("waiting for the terminal")?,
                // The monitor ended first. Either the command was quick (runc
                // sent the terminal before starting it, so it is waiting in
                // the socket) or runc could not start it (and said why).
                Ok(()) => match tokio::time::timeout(Duration::from_secs(2), &mut receive).await {
                    Ok(got) => got.context("waiting for the terminal")?,
                    Err(_) => {
                        let mut why = String::new();
                        if let Some(mut err) = child.stderr.take() {
                            let _ = err.read_to_string(&mut why).await;
                        }
                        return Err(failed(why));
                    }
                },
            };
            let master = match master {
                Ok(m) => std::fs::File::from(m),
                Err(e) => {
                    let _ = child.kill().await;
                    return Err(failed(format!("{e:#}")));
                }
            };
            let reader = master.try_clone().context("cloning the terminal")?;
            let out = output.clone();
            pumps.push(tokio::task::spawn_blocking(move || {
                let mut reader = reader;
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match std::io::Read::read(&mut reader, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let msg = ExecResponse {
                                msg: Some(exec_response::Msg::Stdout(buf[..n].to_vec())),
                            };
                            if out.blocking_send(Ok(msg)).is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
            // Input: keystrokes and window sizes go to the terminal.
            tokio::spawn(async move {
                let mut writer = master;
                while let Some(req) = input.next().await {
                    let written = match req.msg {
                        Some(exec_request::Msg::Stdin(data)) => {
                            std::io::Write::write_all(&mut writer, &data)
                        }
                        Some(exec_request::Msg::Resize(size)) => {
                            let _ = resize(&writer, size.width as u16, size.height as u16);
                            Ok(())
                        }
                        // End of input on a terminal is ^D.
                        Some(exec_request::Msg::CloseStdin(true)) => {
                            std::io::Write::write_all(&mut writer, &[4])
                        }
                        _ => Ok(()),
                    };
                    if written.is_err() {
                        break;
                    }
                }
            });
        } else {
            if let Some(mut stdin) = child.stdin.take() {
                tokio::spawn(async move {
                    while let Some(req) = input.next().await {
                        let written = match req.msg {
                            Some(exec_request::Msg::Stdin(data)) => stdin.write_all(&data).await,
                            Some(exec_request::Msg::CloseStdin(true)) => break,
                            _ => Ok(()),
                        };
                        if written.is_err() {
                            break;
                        }
                    }
                    // Dropping stdin closes it: the process sees end of input.
                });
            }
            if let Some(mut stdout) = child.stdout.take() {
                let send = send.clone();
                pumps.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = stdout.read(&mut buf).await {
                        if n == 0 || !send(exec_response::Msg::Stdout(buf[..n].to_vec())).await {
                            break;
                        }
                    }
                }));
            }
        }
        if let Some(mut stderr) = child.stderr.take() {
            let send = send.clone();
            pumps.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 || !send(exec_response::Msg::Stderr(buf[..n].to_vec())).await {
                        break;
                    }
                }
            }));
        }
        // A client that goes away takes its process with it.
        let status = tokio::select! {
            status = child.wait() => status.context("waiting for runc exec")?,
            _ = output.closed() => {
                kill_exec(&pid_file);
                child.wait().await.context("waiting for runc exec")?
            }
        };
        for pump in pumps {
            let _ = pump.await;
        }
        let _ = std::fs::remove_file(&pid_file);
        send(exec_response::Msg::Exit(ExecExit {
            exit_code: exit_code(status),
        }))
        .await;
        Ok(())
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Kills the exec'd process (runc exec then exits with it).
fn kill_exec(pid_file: &std::path::Path) {
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
