//! The exec monitor (`rkube-runtime exec-monitor`): runs one `exec -t` in
//! a container. runc hands a terminal only to a detached process (through
//! the console socket), so something must stay the parent of that process
//! to learn its exit code: this small subreaper runs `runc exec --detach
//! --tty`, waits for the process and exits with its exit code.

use std::process::{Command, Stdio};

use anyhow::Context;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Arguments of the exec monitor.
#[derive(Clone, Debug, clap::Args)]
pub struct ExecMonitorArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub runc: std::path::PathBuf,
    #[arg(long)]
    pub runc_root: std::path::PathBuf,
    #[arg(long)]
    pub console_socket: std::path::PathBuf,
    #[arg(long)]
    pub pid_file: std::path::PathBuf,
    /// The command to run in the container.
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

/// Exit code when runc could not start the command (its stderr says why).
pub const EXEC_FAILED: i32 = 255;

pub fn run(args: ExecMonitorArgs) -> ! {
    let code = match exec(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            EXEC_FAILED
        }
    };
    std::process::exit(code)
}

fn exec(args: &ExecMonitorArgs) -> anyhow::Result<i32> {
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    let status = Command::new(&args.runc)
        .arg("--root")
        .arg(&args.runc_root)
        .args(["exec", "--detach", "--tty", "--console-socket"])
        .arg(&args.console_socket)
        .arg("--pid-file")
        .arg(&args.pid_file)
        .arg(&args.id)
        .args(&args.cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("running runc exec")?;
    anyhow::ensure!(status.success(), "runc exec failed ({status})");
    let pid: i32 = std::fs::read_to_string(&args.pid_file)
        .context("reading runc's pid file")?
        .trim()
        .parse()
        .context("runc's pid file holds no pid")?;
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => anyhow::bail!("waiting for pid {pid}: {e}"),
        }
    }
}
