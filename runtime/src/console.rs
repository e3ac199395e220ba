//! Terminals for `exec -t`: runc hands the pseudo-terminal's master end to
//! a unix socket we listen on (`--console-socket`), as SCM_RIGHTS.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket, removed when dropped.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> anyhow::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// Waits (blocking, up to `timeout`) for runc to send the master fd.
    pub fn receive_master(&self, timeout: Duration) -> anyhow::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        bail!("runc did not send the terminal within {timeout:?}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("accepting runc's console connection"),
            }
        };
        stream.set_nonblocking(false)?;
        receive_fd(&stream)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn receive_fd(stream: &UnixStream) -> anyhow::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .context("receiving the terminal from runc")?;
    for cmsg in msg.cmsgs().context("reading control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us
                // and nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("runc's console message carried no file descriptor")
}

/// Sets the terminal's window size.
pub fn resize(master: &impl AsRawFd, width: u16, height: u16) -> anyhow::Result<()> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("resizing the terminal");
    }
    Ok(())
}
