//! Relaying one TCP connection with as little copying as the traffic allows.
//!
//! Each direction reads into a small user-space buffer first (16 KiB). A
//! read that does not fill it is a small message (a request, a short
//! response): it is written out as is, one read and one write, the cheapest
//! path for small payloads (splice(2) pays for page handling and pipe
//! bookkeeping that a 100-byte copy does not need). A read that fills the
//! buffer means a bulk transfer: the rest of the burst moves with splice(2)
//! socket -> pipe -> socket inside the kernel, the payload never entering
//! user space, until the socket is drained; then reads start over.
//!
//! The sockets stay tokio's: reads and writes go through tokio (which
//! clears readiness after a short read, saving the EAGAIN call), and
//! splice runs on the raw descriptors inside `try_io`, so an `EAGAIN`
//! clears the readiness tokio cached. The pipe is always drained before the
//! next splice, so an `EAGAIN` from the socket side means "no data", never
//! "pipe full". Pipes and read buffers come from per-thread pools.
//!
//! A FIN from one side is passed on as `shutdown(SHUT_WR)` to the other, so
//! half-closed connections behave; the second FIN is not (both sockets are
//! closed right after, which sends it, and saves a syscall per
//! connection). An error on either side ends both.

use crate::metrics::PortMetrics;
use std::io;
use std::sync::atomic::AtomicU64;
use tokio::net::TcpStream;

/// Whether splice(2) works on this kernel (probed once on a socket pair).
pub fn available() -> bool {
    imp::available()
}

/// Relays until both directions have seen EOF or one fails; counts bytes
/// on the port's metrics as they move. Returns (client->upstream,
/// upstream->client) byte counts.
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    metrics: &PortMetrics,
) -> io::Result<(u64, u64)> {
    imp::relay(client, upstream, &metrics.bytes_in, &metrics.bytes_out).await
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
    use tokio::net::tcp::{ReadHalf, WriteHalf};

    /// Bytes asked of one splice call: a default pipe's capacity.
    const CHUNK: usize = 64 * 1024;
    /// The user-space buffer: reads shorter than this are small messages.
    const SMALL: usize = 16 * 1024;

    /// Empty pipes (and read buffers) kept per thread for the next
    /// connections, at most.
    const POOL_MAX: usize = 128;

    thread_local! {
        static POOL: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    thread_local! {
        static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A read buffer of `SMALL` capacity from the per-thread pool (reads go
    /// into spare capacity, so nothing is zeroed), back to the pool on drop.
    struct PooledBuffer(Vec<u8>);

    impl PooledBuffer {
        fn take() -> PooledBuffer {
            let b = BUFFERS.with(|p| p.borrow_mut().pop());
            PooledBuffer(b.unwrap_or_else(|| Vec::with_capacity(SMALL)))
        }
    }

    impl Drop for PooledBuffer {
        fn drop(&mut self) {
            let mut b = std::mem::take(&mut self.0);
            b.clear();
            BUFFERS.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_MAX {
                    p.push(b);
                }
            });
        }
    }

    /// A pipe used as the kernel-side buffer of one direction.
    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    /// A pipe from the pool (or a new one); back to the pool on drop when
    /// it is known to be empty. Saves a pipe2 and two closes per direction
    /// of every connection.
    struct PooledPipe {
        pipe: Option<Pipe>,
        empty: bool,
    }

    impl PooledPipe {
        fn take() -> io::Result<PooledPipe> {
            let pooled = POOL.with(|p| p.borrow_mut().pop());
            let pipe = match pooled {
                Some(p) => p,
                None => Pipe::new()?,
            };
            Ok(PooledPipe {
                pipe: Some(pipe),
                empty: true,
            })
        }

        fn get(&self) -> &Pipe {
            // Always Some until drop.
            self.pipe.as_ref().unwrap_or_else(|| unreachable!())
        }
    }

    impl Drop for PooledPipe {
        fn drop(&mut self) {
            if let Some(p) = self.pipe.take() {
                if self.empty {
                    POOL.with(|pool| {
                        let mut pool = pool.borrow_mut();
                        if pool.len() < POOL_MAX {
                            pool.push(p);
                        }
                    });
                }
            }
        }
    }

    impl Pipe {
        fn new() -> io::Result<Pipe> {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe2 writes two descriptors into the array we pass.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: both descriptors are fresh and owned by nobody else.
            Ok(unsafe {
                Pipe {
                    read: OwnedFd::from_raw_fd(fds[0]),
                    write: OwnedFd::from_raw_fd(fds[1]),
                }
            })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: plain syscall on descriptors that stay open for the call;
        // null offsets mean "current position" (required for pipes/sockets).
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub fn available() -> bool {
        let probe = || -> io::Result<bool> {
            let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
            a.write_all(b"x")?;
            let pipe = Pipe::new()?;
            Ok(splice(b.as_raw_fd(), pipe.write.as_raw_fd(), 1)? == 1)
        };
        match probe() {
            Ok(ok) => ok,
            Err(e) => {
                tracing::info!(error = %e, "splice(2) is not available");
                false
            }
        }
    }

    pub async fn relay(
        client: &mut TcpStream,
        upstream: &mut TcpStream,
        bytes_in: &AtomicU64,
        bytes_out: &AtomicU64,
    ) -> io::Result<(u64, u64)> {
        let (client_r, client_w) = client.split();
        let (upstream_r, upstream_w) = upstream.split();
        // Directions that reached EOF: the last one need not pass its FIN
        // on with shutdown(2), since both sockets close right after.
        let done = AtomicUsize::new(0);
        tokio::try_join!(
            pump(client_r, upstream_w, bytes_in, &done),
            pump(upstream_r, client_w, bytes_out, &done)
        )
    }

    /// One direction: src -> dst until EOF on src.
    async fn pump(
        mut src: ReadHalf<'_>,
        mut dst: WriteHalf<'_>,
        counter: &AtomicU64,
        done: &AtomicUsize,
    ) -> io::Result<u64> {
        let mut buf = PooledBuffer::take();
        let buf = &mut buf.0;
        let mut pipe: Option<PooledPipe> = None;
        let mut total = 0u64;
        loop {
            buf.clear();
            let n = src.read_buf(buf).await?;
            if n == 0 {
                return finish(&mut dst, total, done).await;
            }
            dst.write_all(buf).await?;
            total += n as u64;
            counter.fetch_add(n as u64, Ordering::Relaxed);
            if n < SMALL {
                continue;
            }
            // The buffer filled: a bulk transfer. Splice until drained.
            let pipe = match &mut pipe {
                Some(p) => p,
                None => pipe.insert(PooledPipe::take()?),
            };
            let (src_fd, dst_fd) = (src.as_ref().as_raw_fd(), dst.as_ref().as_raw_fd());
            let (pipe_r, pipe_w) = (pipe.get().read.as_raw_fd(), pipe.get().write.as_raw_fd());
            loop {
                let filled = match src
                    .as_ref()
                    .try_io(Interest::READABLE, || splice(src_fd, pipe_w, CHUNK))
                {
                    Ok(0) => return finish(&mut dst, total, done).await,
                    Ok(n) => n,
                    // Drained (readiness now cleared): back to reads.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                // Until drained, this pipe must not go back to the pool (the
                // connection may end with bytes in it).
                pipe.empty = false;
                let mut left = filled;
                while left > 0 {
                    dst.as_ref().writable().await?;
                    match dst
                        .as_ref()
                        .try_io(Interest::WRITABLE, || splice(pipe_r, dst_fd, left))
                    {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            left -= n;
                            total += n as u64;
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
                pipe.empty = true;
            }
        }
    }

    /// EOF from the source: pass the FIN on (the other direction may go on).
    async fn finish(dst: &mut WriteHalf<'_>, total: u64, done: &AtomicUsize) -> io::Result<u64> {
        if done.fetch_add(1, Ordering::Relaxed) == 1 {
            // The other direction ended already: the close that follows
            // sends the FIN (nothing unread is left on either socket).
            return Ok(total);
        }
        match dst.shutdown().await {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(total),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub fn available() -> bool {
        false
    }

    pub async fn relay(
        _client: &mut TcpStream,
        _upstream: &mut TcpStream,
        _bytes_in: &AtomicU64,
        _bytes_out: &AtomicU64,
    ) -> io::Result<(u64, u64)> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "splice(2) exists only on Linux",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn probe_finds_splice_on_linux() {
        assert!(available());
    }

    /// A relay between two loopback connections carries bytes both ways,
    /// passes half-closes on, and counts what it moved.
    #[tokio::test]
    async fn relays_both_ways_and_passes_half_close() {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (fa, ba) = (front.local_addr().unwrap(), back.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = back.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            // Reply after the client's FIN: the half-close passed through.
            s.write_all(&got).await.unwrap();
            s.write_all(b"!").await.unwrap();
        });
        let relay = tokio::spawn(async move {
            let (mut c, _) = front.accept().await.unwrap();
            let mut u = TcpStream::connect(ba).await.unwrap();
            let m = PortMetrics::default();
            let r = super::relay(&mut c, &mut u, &m).await.unwrap();
            (r, m)
        });
        let mut client = TcpStream::connect(fa).await.unwrap();
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut back_data = Vec::new();
        client.read_to_end(&mut back_data).await.unwrap();
        assert_eq!(back_data.len(), payload.len() + 1);
        assert_eq!(&back_data[..payload.len()], &payload[..]);
        server.await.unwrap();
        let ((up, down), m) = relay.await.unwrap();
        assert_eq!(up, payload.len() as u64);
        assert_eq!(down, payload.len() as u64 + 1);
        assert_eq!(
            m.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
            payload.len() as u64
        );
    }
}
