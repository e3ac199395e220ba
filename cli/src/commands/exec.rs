//! `exec`: runs a command in a container through the kubelet of the pod's
//! node (`rkube.kubelet.v1.Kubelet/Exec`, a bidi stream). Standard input is
//! copied to the stream with `-i`; the command's stdout and stderr go to
//! ours; rkubectl exits with the command's exit code, as kubectl does. With
//! `-t` (and `-i` on a terminal) the local terminal is put in raw mode for
//! the session and its size is sent at the start and on every SIGWINCH.

use super::logs::{kubelet_error, target};
use crate::args::ExecArgs;
use crate::context::Ctx;
use crate::output;
use anyhow::{bail, Result};
use rkube_api::proto::kubelet::{
    exec_request, exec_response, ExecRequest, ExecStart, TerminalSize,
};
use std::fmt;
use std::io::{Read, Write};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// The remote command ended with a non-zero code: rkubectl exits with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteExit(pub i32);

impl RemoteExit {
    /// The process exit code (1..=255).
    pub fn code(&self) -> u8 {
        if (1..=255).contains(&self.0) {
            self.0 as u8
        } else {
            1
        }
    }
}

impl fmt::Display for RemoteExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command terminated with exit code {}", self.0)
    }
}

impl std::error::Error for RemoteExit {}

fn is_terminal(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The terminal's size (columns, rows), if `fd` is a terminal that knows it.
fn terminal_size(fd: i32) -> Option<TerminalSize> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some(TerminalSize {
        width: ws.ws_col as u32,
        height: ws.ws_row as u32,
    })
}

/// The terminal in raw mode until dropped (then restored as it was).
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: i32) -> std::io::Result<RawMode> {
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved by `enter`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

fn request(msg: exec_request::Msg) -> ExecRequest {
    ExecRequest { msg: Some(msg) }
}

/// Copies our stdin to the stream until end of input (then `close_stdin`).
/// A plain thread, not a runtime task: a read blocked on a terminal must not
/// hold up the end of the program.
fn pump_stdin(tx: mpsc::Sender<ExecRequest>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(request(exec_request::Msg::CloseStdin(true)));
                    return;
                }
                Ok(n) => {
                    if tx
                        .blocking_send(request(exec_request::Msg::Stdin(buf[..n].to_vec())))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    let _ = tx.blocking_send(request(exec_request::Msg::CloseStdin(true)));
                    return;
                }
            }
        }
    });
}

/// Sends the terminal's new size on every SIGWINCH.
fn forward_resizes(tx: mpsc::Sender<ExecRequest>, fd: i32) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    tokio::spawn(async move {
        while winch.recv().await.is_some() {
            if let Some(size) = terminal_size(fd) {
                if tx
                    .send(request(exec_request::Msg::Resize(size)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
}

/// Writes output, remembering a reader that went away (further output is
/// dropped; the command still runs to its end).
struct Sink<W: Write> {
    w: W,
    closed: bool,
}

impl<W: Write> Sink<W> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.w.write_all(data).and_then(|_| self.w.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub async fn run(ctx: &Ctx, a: &ExecArgs) -> Result<()> {
    if a.command.is_empty() {
        bail!("you must specify at least one command for the container");
    }
    let mut t = target(ctx, &a.pod, a.container.as_deref()).await?;
    // As kubectl: a terminal only for interactive input from a terminal.
    let stdin_fd = libc::STDIN_FILENO;
    let mut tty = a.tty && a.stdin;
    if tty && !is_terminal(stdin_fd) {
        tty = false;
        if !a.quiet {
            output::eprint_line(
                "Unable to use a TTY - input is not a terminal or the right kind of file",
            );
        }
    }
    let (tx, rx) = mpsc::channel::<ExecRequest>(64);
    tx.send(request(exec_request::Msg::Start(ExecStart {
        namespace: t.namespace.clone(),
        pod: t.name.clone(),
        container: t.container.clone(),
        command: a.command.clone(),
        tty,
        stdin: a.stdin,
    })))
    .await?;
    if tty {
        if let Some(size) = terminal_size(stdin_fd) {
            tx.send(request(exec_request::Msg::Resize(size))).await?;
        }
    }
    let mut answers = t
        .kubelet
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| kubelet_error(&t.node, s))?
        .into_inner();
    // Raw mode only once the command is known to run: an error above is
    // printed on a normal terminal.
    let _raw = if tty {
        Some(RawMode::enter(stdin_fd)?)
    } else {
        None
    };
    if tty {
        forward_resizes(tx.clone(), stdin_fd);
    }
    if a.stdin {
        pump_stdin(tx.clone());
    }
    let mut out = Sink {
        w: std::io::stdout(),
        closed: false,
    };
    let mut err = Sink {
        w: std::io::stderr(),
        closed: false,
    };
    let mut exit = None;
    while let Some(answer) = answers
        .message()
        .await
        .map_err(|s| kubelet_error(&t.node, s))?
    {
        match answer.msg {
            Some(exec_response::Msg::Stdout(data)) => out.write(&data)?,
            Some(exec_response::Msg::Stderr(data)) => err.write(&data)?,
            Some(exec_response::Msg::Exit(e)) => {
                exit = Some(e.exit_code);
                break;
            }
            None => {}
        }
    }
    drop(tx);
    match exit {
        Some(0) => Ok(()),
        Some(code) => Err(RemoteExit(code).into()),
        None => bail!(
            "the kubelet of node {:?} ended the session before the command's exit code arrived",
            t.node
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> ExecArgs {
        let cli = Cli::try_parse_from(std::iter::once("rkubectl").chain(args.iter().copied()))
            .expect("parses");
        match cli.command {
            Command::Exec(a) => a,
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn exec_flags_parse_like_kubectl() {
        let a = parse(&[
            "exec", "-it", "web", "-c", "app", "--", "sh", "-c", "exit 3",
        ]);
        assert!(a.stdin && a.tty);
        assert_eq!(a.pod, "web");
        assert_eq!(a.container.as_deref(), Some("app"));
        assert_eq!(a.command, ["sh", "-c", "exit 3"]);
        // The old form without `--`: everything after the command is its.
        let a = parse(&["exec", "web", "ls", "-l", "/"]);
        assert!(!a.stdin && !a.tty);
        assert_eq!(a.command, ["ls", "-l", "/"]);
        let a = parse(&["exec", "-i", "pod/web", "--", "cat"]);
        assert!(a.stdin && !a.tty);
        assert_eq!(a.command, ["cat"]);
    }

    #[test]
    fn remote_exit_codes() {
        assert_eq!(RemoteExit(3).code(), 3);
        assert_eq!(RemoteExit(137).code(), 137);
        assert_eq!(RemoteExit(-1).code(), 1);
        assert_eq!(
            RemoteExit(3).to_string(),
            "command terminated with exit code 3"
        );
    }
}
