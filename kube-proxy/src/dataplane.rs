//! The threads that carry traffic: one single-threaded tokio runtime per
//! CPU, each with its own epoll.
//!
//! A connection, both of its sockets and its relay stay on one thread for
//! their whole life: no work stealing, no cross-thread wake-ups, the way
//! HAProxy runs. Which thread takes a new connection is decided when it is
//! accepted (see `tcp.rs`): each thread counts the connections it carries,
//! and a thread that accepted a connection while carrying more than the
//! least loaded one hands it over. Watches, syncs and metrics run on the
//! main runtime; the data path shares only the balancer (a short lock per
//! new connection), these counts and atomics with them.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::runtime::Handle;

/// A counter on a cache line of its own (threads update their own often).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicUsize);

pub struct DataPlane {
    handles: Vec<Handle>,
    /// Connections each thread carries now.
    load: Arc<[Padded]>,
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
        let load = (0..n).map(|_| Padded::default()).collect();
        Ok(DataPlane { handles, load })
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

    /// Where a connection that thread `me` accepted should live: `me`
    /// unless it carries more than `slack` connections above the least
    /// loaded thread. The connection is counted on the chosen thread at
    /// once (so the next decision sees it) until the returned guard drops.
    pub fn place(&self, me: usize, slack: usize) -> (usize, LoadGuard) {
        let mine = self.load[me].0.load(Ordering::Relaxed);
        let mut best = me;
        let mut least = mine;
        for (i, l) in self.load.iter().enumerate() {
            let v = l.0.load(Ordering::Relaxed);
            if v < least {
                best = i;
                least = v;
            }
        }
        let to = if mine > least + slack { best } else { me };
        self.load[to].0.fetch_add(1, Ordering::Relaxed);
        (
            to,
            LoadGuard {
                load: self.load.clone(),
                index: to,
            },
        )
    }

    /// Connections each thread carries now.
    pub fn loads(&self) -> Vec<usize> {
        self.load
            .iter()
            .map(|l| l.0.load(Ordering::Relaxed))
            .collect()
    }
}

/// One connection counted on a data-plane thread.
pub struct LoadGuard {
    load: Arc<[Padded]>,
    index: usize,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.load[self.index].0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_loaded_thread_beyond_the_slack() {
        let dp = DataPlane::start(2).unwrap();
        // Thread 0 takes the first; with slack 0 the second goes to 1.
        let (a, ga) = dp.place(0, 0);
        assert_eq!(a, 0);
        let (b, gb) = dp.place(0, 0);
        assert_eq!(b, 1);
        assert_eq!(dp.loads(), vec![1, 1]);
        // Balanced: the accepting thread keeps it.
        let (c, gc) = dp.place(1, 0);
        assert_eq!(c, 1);
        // A slack of 1 tolerates one more, not two.
        let (d, gd) = dp.place(1, 1);
        assert_eq!(d, 1);
        assert_eq!(dp.loads(), vec![1, 3]);
        let (e, _ge) = dp.place(1, 1);
        assert_eq!(e, 0);
        drop((ga, gb, gc, gd));
        assert_eq!(dp.loads(), vec![1, 0]);
    }
}
