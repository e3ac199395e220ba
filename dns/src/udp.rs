//! The UDP path: one loop per SO_REUSEPORT socket that reads queries in
//! batches (`recvmmsg`), parses each into a hickory-server `Request`, runs the
//! same `DnsHandler` as TCP, and sends the batch's answers together
//! (`sendmmsg`).
//!
//! hickory-server's own UDP server spawns a task per datagram and hands each
//! answer through a channel to a sending task; on two cores those wake-ups
//! and per-datagram system calls cost more than answering (see
//! docs/benchmarks.md). Here an answer from the index completes while the
//! loop polls it once, with no task and no channel; only a query that must
//! wait (forwarding upstream) is spawned — bounded by the forwarder's
//! in-flight limit — and sends its answer itself when it is ready.

use crate::handler::DnsHandler;
use crate::mmsg::{self, RecvBatch};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use parking_lot::Mutex;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::net::UdpSocket;

/// The largest datagram read; anything longer is cut and then fails to parse.
const RECV_BUFFER: usize = 4096;

type Datagram = (Vec<u8>, SocketAddr);

/// Answers produced while a batch is being handled, sent together after it.
#[derive(Default)]
struct Outbox {
    /// Whether a batch is open, and its answers so far.
    inner: Mutex<(bool, Vec<Datagram>)>,
}

impl Outbox {
    fn open(&self) {
        self.inner.lock().0 = true;
    }

    /// Closes the batch, swapping its answers into `out` (an empty vector
    /// whose capacity the next batch reuses).
    fn close(&self, out: &mut Vec<Datagram>) {
        let mut g = self.inner.lock();
        g.0 = false;
        std::mem::swap(&mut g.1, out);
    }

    /// Queues `d` if a batch is open, else hands it back to send now.
    fn offer(&self, d: Datagram) -> Option<Datagram> {
        let mut g = self.inner.lock();
        if g.0 {
            g.1.push(d);
            None
        } else {
            Some(d)
        }
    }
}

/// Answers queries arriving on `socket` until it fails for good.
pub async fn serve(socket: Arc<UdpSocket>, handler: Arc<DnsHandler>) {
    let mut batch = RecvBatch::new(RECV_BUFFER);
    let outbox = Arc::new(Outbox::default());
    let mut answers: Vec<Datagram> = Vec::with_capacity(mmsg::BATCH);
    loop {
        let n = match batch.recv(&socket).await {
            Ok(n) => n,
            Err(e) if fatal(&e) => {
                tracing::error!(error = %e, "UDP socket failed");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        outbox.open();
        for i in 0..n {
            let (bytes, src) = batch.get(i);
            match src {
                Some(src) if src.port() != 0 && !src.ip().is_unspecified() => {
                    handle(bytes, src, &socket, &handler, &outbox)
                }
                _ => {}
            }
        }
        outbox.close(&mut answers);
        mmsg::send_all(&socket, &answers).await;
        answers.clear();
    }
}

/// Handles one datagram: inline when the answer is ready at once, else as a
/// task.
fn handle(
    bytes: &[u8],
    src: SocketAddr,
    socket: &Arc<UdpSocket>,
    handler: &Arc<DnsHandler>,
    outbox: &Arc<Outbox>,
) {
    let start = Instant::now();
    let request = match Request::from_bytes(bytes.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%src, error = %e, "unparseable query");
            if let Some(reply) = format_error(bytes) {
                let _ = outbox.offer((reply, src));
                handler
                    .metrics()
                    .observe(None, ResponseCode::FormErr, start.elapsed());
            }
            return;
        }
    };
    // Answering a response would let anyone bounce traffic off us.
    if request.metadata.message_type != MessageType::Query {
        return;
    }
    let responder = UdpResponder {
        socket: socket.clone(),
        outbox: outbox.clone(),
        dst: src,
    };
    let handler = handler.clone();
    let mut answer: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        handler
            .handle_request::<_, TokioTime>(&request, responder)
            .await;
    });
    // Answers from the index are ready at the first poll; a forward is not,
    // and continues as a task (tokio polls it again with a real waker, so
    // the no-op one is never relied on).
    if answer
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        == Poll::Pending
    {
        tokio::spawn(answer);
    }
}

fn fatal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotConnected | io::ErrorKind::ConnectionAborted
    )
}

/// FORMERR for a message whose header parses but whose body does not; the
/// body is not echoed. Messages shorter than a header, or that are
/// themselves responses, get nothing.
fn format_error(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    header_only(metadata)
}

fn header_only(metadata: Metadata) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(12);
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
    .emit(&mut BinEncoder::new(&mut out))
    .ok()?;
    Some(out)
}

/// Sends one answer on the socket the query came in on: with its batch if
/// that is still open, else at once.
#[derive(Clone)]
struct UdpResponder {
    socket: Arc<UdpSocket>,
    outbox: Arc<Outbox>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // RFC 1035: 512 bytes unless the client's EDNS says more; the
        // encoder truncates and sets TC past it.
        let max = response.edns().map_or(512, |e| e.max_payload()).max(512);
        let mut metadata = *response.metadata();
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(error = %e, "encoding an answer failed");
                metadata.response_code = ResponseCode::ServFail;
                metadata.truncation = false;
                buf = header_only(metadata).ok_or_else(|| NetError::from("encoding SERVFAIL"))?;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        if let Some((buf, dst)) = self.outbox.offer((buf, self.dst)) {
            self.socket.send_to(&buf, dst).await?;
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_errors_echo_the_id_and_skip_short_messages_and_responses() {
        assert!(format_error(&[0u8; 11]).is_none());
        let mut query = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0];
        let reply = format_error(&query).expect("a reply");
        assert_eq!(&reply[..2], &[0xab, 0xcd]);
        assert_eq!(reply[2] & 0x80, 0x80, "QR set");
        assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
        query[2] |= 0x80;
        assert!(format_error(&query).is_none(), "responses are not answered");
    }
}
