//! The threads that carry traffic: one single-threaded tokio runtime per
//! CPU, each with its own epoll.
//!
//! Every thread accepts from every TCP listening socket (each through its
//! own descriptor and epoll), so whichever thread is idle takes the next
//! connection; the connection, both of its sockets and its relay then stay
//! on that thread: no work stealing, no cross-thread wake-ups, the way
//! HAProxy runs. Watches, syncs and metrics run on the main runtime; the
//! data path shares only the balancer (a short lock per new connection) and
//! atomics with them.

use std::io;
use std::sync::mpsc;
use tokio::runtime::Handle;

pub struct DataPlane {
    handles: Vec<Handle>,
}

impl DataPlane {
    /// Starts `threads` runtimes (0: one per CPU). They run until the
    /// process exits.
    pub fn start(threads: usize) -> io::Result<DataPlane> {
        let n = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name(format!("dataplane-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                })?;
            let handle = rx
                .recv()
                .map_err(|_| io::Error::other("a data-plane thread died at start"))??;
            handles.push(handle);
        }
        Ok(DataPlane { handles })
    }

    /// The runtimes, one per thread.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// One runtime, chosen by `key` (for sockets that exist once, like a
    /// UDP port's).
    pub fn pick(&self, key: u64) -> &Handle {
        &self.handles[(key % self.handles.len() as u64) as usize]
    }
}
