//! The monitor: a small detached process per task (`rkube-runtime monitor`),
//! like conmon. It creates and starts the container with runc, becomes the
//! parent of the container's first process (as a child subreaper), copies
//! the container's stdout and stderr into its log file, and records how the
//! container ended (exit code, OOM kill) in `exit.json`. It lives in its
//! own session, so the shim can stop, crash or restart without touching the
//! containers; the next shim reads what the monitor wrote.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::cri_log::{tail_text, LogWriter};
use super::runc::last_logged_error;
use super::task::{ExitRecord, MonitorArgs, StartReport, StartedRecord};
use crate::host::cgroups::Cgroups;
use crate::host::procs::ProcessIdentity;
use crate::proto::LogStream;
use crate::records;

/// Exit code of a container whose process never ran (as containerd).
const START_ERROR_CODE: i32 = 128;
/// How much of the log a failed container's message carries.
const MESSAGE_BYTES: usize = 2048;
/// How long output may keep flowing after the first process ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the monitor and exits the process.
pub fn run(args: MonitorArgs) -> ! {
    let code = match monitor(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("monitor {}: {e:#}", args.id);
            1
        }
    };
    std::process::exit(code)
}

fn monitor(args: &MonitorArgs) -> anyhow::Result<()> {
    nix::unistd::setsid().context("setsid")?;
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    // Diagnostics go to monitor.log; stdout is the report channel to the
    // shim, closed (pointed at /dev/null) once the report is written.
    let diag = File::create(args.task_dir.join("monitor.log")).context("creating monitor.log")?;
    nix::unistd::dup2_stderr(&diag).context("redirecting stderr")?;
    // A close-on-exec copy, so runc and the container never hold it.
    let mut report_channel = File::from(
        std::os::fd::AsFd::as_fd(&std::io::stdout())
            .try_clone_to_owned()
            .context("dup stdout")?,
    );
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    nix::unistd::dup2_stdout(&devnull).context("redirecting stdout")?;

    let mut output = Output::open(args.log.as_deref())?;
    let started = match start(args, &mut output) {
        Ok(started) => started,
        Err(e) => {
            let message = format!("{e:#}");
            record_exit(
                args,
                ExitRecord {
                    exit_code: START_ERROR_CODE,
                    finished_at: records::now_nanos(),
                    reason: "StartError".into(),
                    message: message.clone(),
                    started_at: 0,
                },
            )?;
            report(
                &mut report_channel,
                StartReport {
                    ok: false,
                    process: None,
                    error: message,
                },
            );
            return Ok(());
        }
    };
    records::write(&args.task_dir.join("started.json"), &started)?;
    report(
        &mut report_channel,
        StartReport {
            ok: true,
            process: Some(started.process),
            error: String::new(),
        },
    );
    drop(report_channel);

    let status = wait_for(started.process.pid);
    let drained = output.drain(DRAIN_TIMEOUT);
    let exit_code = match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 255,
    };
    let oom_killed = Cgroups::detect()
        .ok()
        .and_then(|cg| cg.oom_kills(&args.cgroup))
        .unwrap_or(0)
        > 0;
    let (reason, message) = if oom_killed {
        ("OOMKilled", String::new())
    } else if exit_code == 0 {
        ("Completed", String::new())
    } else {
        let tail = args
            .log
            .as_deref()
            .map(|l| tail_text(l, MESSAGE_BYTES))
            .unwrap_or_default();
        ("Error", tail)
    };
    if !drained {
        eprintln!("output was still open {DRAIN_TIMEOUT:?} after the container's exit");
    }
    record_exit(
        args,
        ExitRecord {
            exit_code,
            finished_at: records::now_nanos(),
            reason: reason.into(),
            message,
            started_at: started.started_at,
        },
    )
}

/// runc create, then runc start; the container's first process is then our
/// child (runc create's child, reparented to us as the subreaper).
fn start(args: &MonitorArgs, output: &mut Output) -> anyhow::Result<StartedRecord> {
    let runc_log = args.task_dir.join("runc.log");
    let pid_file = args.task_dir.join("pid");
    let bundle = args.task_dir.join("bundle");
    let runc = |sub: &str| {
        let mut cmd = Command::new(&args.runc);
        cmd.arg("--root")
            .arg(&args.runc_root)
            .arg("--log")
            .arg(&runc_log)
            .arg("--log-format")
            .arg("json")
            .arg(sub);
        cmd
    };
    // Without a terminal runc passes its own stdio to the container.
    let (stdout, stderr) = output.stdio()?;
    let created = runc("create")
        .arg("--bundle")
        .arg(&bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .context("running runc create")?;
    // Our copies of the pipes' write ends went with the Command; from here
    // the container holds the only ones.
    output.spawn_copiers();
    if !created.success() {
        anyhow::bail!("{}", runc_failure(&runc_log, "runc create", created));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .context("reading runc's pid file")?
        .trim()
        .parse()
        .context("runc's pid file holds no pid")?;
    let process = ProcessIdentity::of(pid).context("the container process vanished")?;
    let started = runc("start")
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running runc start")?;
    if !started.success() {
        let why = runc_failure(&runc_log, "runc start", started);
        let _ = runc("delete").arg("--force").arg(&args.id).status();
        anyhow::bail!("{why}");
    }
    Ok(StartedRecord {
        process,
        started_at: records::now_nanos(),
    })
}

fn runc_failure(log: &Path, what: &str, status: std::process::ExitStatus) -> String {
    last_logged_error(log).unwrap_or_else(|| format!("{what} failed ({status})"))
}

/// Reaps children until `pid` is among them; returns its status.
fn wait_for(pid: i32) -> WaitStatus {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(Pid::from_raw(pid)) => return status,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("waiting for pid {pid}: {e}");
                return WaitStatus::StillAlive;
            }
        }
    }
}

fn record_exit(args: &MonitorArgs, exit: ExitRecord) -> anyhow::Result<()> {
    records::write(&args.task_dir.join("exit.json"), &exit)
}

fn report(channel: &mut File, report: StartReport) {
    if let Ok(mut line) = serde_json::to_vec(&report) {
        line.push(b'\n');
        if let Err(e) = channel.write_all(&line) {
            eprintln!("reporting to the shim: {e}");
        }
    }
}

/// The container's stdout and stderr: pipes copied into the log file, or
/// /dev/null when the task keeps no log.
struct Output {
    log: Option<Arc<Mutex<File>>>,
    readers: Vec<(std::io::PipeReader, LogStream)>,
    done: Option<mpsc::Receiver<()>>,
    copiers: usize,
}

impl Output {
    fn open(log: Option<&Path>) -> anyhow::Result<Output> {
        let log = match log {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening log {}", path.display()))?;
                Some(Arc::new(Mutex::new(file)))
            }
            None => None,
        };
        Ok(Output {
            log,
            readers: Vec::new(),
            done: None,
            copiers: 0,
        })
    }

    /// The container's stdout and stderr.
    fn stdio(&mut self) -> anyhow::Result<(Stdio, Stdio)> {
        if self.log.is_none() {
            return Ok((Stdio::null(), Stdio::null()));
        }
        let (out_r, out_w) = std::io::pipe().context("creating the stdout pipe")?;
        let (err_r, err_w) = std::io::pipe().context("creating the stderr pipe")?;
        self.readers.push((out_r, LogStream::Stdout));
        self.readers.push((err_r, LogStream::Stderr));
        Ok((Stdio::from(out_w), Stdio::from(err_w)))
    }

    fn spawn_copiers(&mut self) {
        let Some(log) = self.log.clone() else {
            return;
        };
        let (tx, rx) = mpsc::channel();
        for (mut reader, stream) in self.readers.drain(..) {
            let mut writer = LogWriter::new(log.clone(), stream);
            let tx = tx.clone();
            self.copiers += 1;
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Err(e) = writer.write(&buf[..n]) {
                                eprintln!("writing the log: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            eprintln!("reading container output: {e}");
                            break;
                        }
                    }
                }
                let _ = writer.finish();
                let _ = tx.send(());
            });
        }
        self.done = Some(rx);
    }

    /// Waits (up to `timeout`) for every copier to reach end of output.
    fn drain(&mut self, timeout: Duration) -> bool {
        let Some(rx) = self.done.take() else {
            return true;
        };
        let deadline = std::time::Instant::now() + timeout;
        for _ in 0..self.copiers {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if rx.recv_timeout(left).is_err() {
                return false;
            }
        }
        true
    }
}
