//! Batched datagram I/O: `recvmmsg(2)` and `sendmmsg(2)` on a tokio UDP
//! socket, so a burst of queries costs one system call each way and one
//! wake-up of the peer instead of one per datagram.
//!
//! This is the only `unsafe` code in the crate: it fills the kernel's
//! `mmsghdr` arrays with pointers into buffers this module owns and keeps
//! alive for the duration of each call.

use socket2::{SockAddr, SockAddrStorage};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read or written per system call at most.
pub const BATCH: usize = 32;

/// Receive buffers for one batch.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    addrs: Vec<SockAddrStorage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` only ever point into
// `bufs` and `addrs` of the same value, and are rebuilt before every call.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Room for `BATCH` datagrams of `size` bytes; longer ones are cut.
    pub fn new(size: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; size].into_boxed_slice())
                .collect(),
            addrs: (0..BATCH).map(|_| SockAddrStorage::zeroed()).collect(),
            // SAFETY: all-zero iovec and mmsghdr values are valid (null
            // pointers, zero lengths); they are filled in before use.
            iovecs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            headers: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Waits for datagrams and reads as many as are queued (up to `BATCH`);
    /// returns how many. Each is then available through `get`.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        socket
            .async_io(Interest::READABLE, || self.recv_now(socket.as_raw_fd()))
            .await
    }

    fn recv_now(&mut self, fd: i32) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            let h = &mut self.headers[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut SockAddrStorage).cast();
            h.msg_hdr.msg_namelen = self.addrs[i].size_of();
            h.msg_hdr.msg_iov = &mut self.iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at a live buffer and address of this
        // batch, with their true lengths; the kernel writes within them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last `recv`: its bytes and sender (`None` for an
    /// address family other than IPv4/IPv6).
    pub fn get(&mut self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let h = &self.headers[i];
        let len = (h.msg_len as usize).min(self.bufs[i].len());
        let namelen = h.msg_hdr.msg_namelen;
        let storage = std::mem::replace(&mut self.addrs[i], SockAddrStorage::zeroed());
        // SAFETY: the kernel filled `storage` with an address of `namelen`
        // bytes for this datagram.
        let addr = unsafe { SockAddr::new(storage, namelen) }.as_socket();
        (&self.bufs[i][..len], addr)
    }
}

/// Sends `msgs` (bytes, destination) with as few system calls as possible;
/// waits for room when the socket buffer is full. Returns how many were
/// handed to the kernel (the rest failed; UDP gives no further guarantee).
pub async fn send_all(socket: &UdpSocket, msgs: &[(Vec<u8>, SocketAddr)]) -> usize {
    let addrs: Vec<SockAddr> = msgs.iter().map(|(_, a)| SockAddr::from(*a)).collect();
    let mut sent = 0;
    while sent < msgs.len() {
        let chunk = sent..msgs.len().min(sent + BATCH);
        let r = socket
            .async_io(Interest::WRITABLE, || {
                send_now(
                    socket.as_raw_fd(),
                    &msgs[chunk.clone()],
                    &addrs[chunk.clone()],
                )
            })
            .await;
        match r {
            Ok(n) => sent += n.max(1),
            Err(e) => {
                // One bad destination must not hold back the others: skip it.
                tracing::debug!(error = %e, dst = %msgs[sent].1, "UDP send failed");
                sent += 1;
            }
        }
    }
    sent
}

fn send_now(fd: i32, msgs: &[(Vec<u8>, SocketAddr)], addrs: &[SockAddr]) -> io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = msgs
        .iter()
        .map(|(b, _)| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(addrs)
        .map(|(iov, addr)| {
            // SAFETY: all-zero is a valid mmsghdr; the fields that matter are
            // set below.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: the headers point at `msgs`' bytes and `addrs`, which outlive
    // the call; the kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_read_and_answered_in_batches() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = server.local_addr().expect("addr");
        for i in 0..40u8 {
            client.send_to(&[i; 3], to).await.expect("send");
        }
        let mut batch = RecvBatch::new(16);
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = batch.recv(&server).await.expect("recv");
            assert!(n <= BATCH);
            for i in 0..n {
                let (bytes, from) = batch.get(i);
                assert_eq!(from, client.local_addr().ok());
                got.push((bytes.to_vec(), from.expect("from")));
            }
        }
        assert_eq!(got[39].0, vec![39u8; 3]);
        assert_eq!(send_all(&server, &got).await, 40);
        let mut buf = [0u8; 16];
        for i in 0..40u8 {
            let n = client.recv(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], &[i; 3]);
        }
    }
}
