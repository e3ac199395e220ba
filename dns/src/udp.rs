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
//!
//! Each loop keeps a packet cache: the wire answer to a query, keyed by the
//! query's bytes after its ID, valid while the index's generation is the
//! one it was computed at (every watch event that changes the index moves
//! it). An answer from the index depends on nothing but the query's bytes
//! and the index, so a hit is the same answer with the query's ID, without
//! parsing or encoding. Forwarded answers are never cached.

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
use std::collections::HashMap;
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

/// Entries per loop before the cache starts over.
const CACHE_ENTRIES: usize = 16_384;
/// Larger queries are not cached (they carry options worth parsing).
const CACHE_MAX_QUERY: usize = 512;

struct Cached {
    generation: u64,
    /// The answer, with the first query's ID.
    answer: Box<[u8]>,
    qtype: Option<hickory_proto::rr::RecordType>,
    rcode: ResponseCode,
}

/// Wire answers by query bytes (after the ID); see the module doc.
#[derive(Default)]
struct PacketCache {
    map: HashMap<Box<[u8]>, Cached>,
}

impl PacketCache {
    /// The answer to `query` at `generation`, with the query's ID.
    fn get(&self, query: &[u8], generation: u64) -> Option<(Vec<u8>, &Cached)> {
        let c = self.map.get(&query[2..])?;
        if c.generation != generation {
            return None;
        }
        let mut answer = c.answer.to_vec();
        answer[..2].copy_from_slice(&query[..2]);
        Some((answer, c))
    }

    fn put(&mut self, query: &[u8], answer: Vec<u8>, generation: u64) {
        if answer.len() < 12 {
            return;
        }
        if self.map.len() >= CACHE_ENTRIES {
            self.map.clear();
        }
        let rcode = ResponseCode::from(0, answer[3] & 0x0f);
        let qtype = question_type(query).map(hickory_proto::rr::RecordType::from);
        self.map.insert(
            query[2..].into(),
            Cached {
                generation,
                answer: answer.into_boxed_slice(),
                qtype,
                rcode,
            },
        );
    }
}

/// The QTYPE of a message's first question (None if it has none or is cut).
fn question_type(msg: &[u8]) -> Option<u16> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            // A compression pointer ends the name.
            i += 2;
            break;
        }
        i += 1 + len;
    }
    Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]))
}

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
    let mut cache = PacketCache::default();
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
        let generation = handler.generation();
        for i in 0..n {
            let (bytes, src) = batch.get(i);
            match src {
                Some(src) if src.port() != 0 && !src.ip().is_unspecified() => handle(
                    bytes, src, &socket, &handler, &outbox, &mut cache, generation,
                ),
                _ => {}
            }
        }
        outbox.close(&mut answers);
        mmsg::send_all(&socket, &answers).await;
        answers.clear();
    }
}

/// One UDP loop's per-datagram path without the receive side, for the fuzz
/// target (`fuzz/fuzz_targets/dns_packet.rs`) and tests: each call handles a
/// batch exactly as [`serve`] does (packet cache, parsing, FORMERR, the
/// handler) and returns the answers that would be sent. Must run inside a
/// tokio runtime (a forwarded query is spawned, as in [`serve`]).
pub struct BatchAnswerer {
    socket: Arc<UdpSocket>,
    handler: Arc<DnsHandler>,
    outbox: Arc<Outbox>,
    cache: PacketCache,
}

impl BatchAnswerer {
    /// `socket` is only used for answers that complete after the batch
    /// (forwards).
    pub fn new(socket: Arc<UdpSocket>, handler: Arc<DnsHandler>) -> BatchAnswerer {
        BatchAnswerer {
            socket,
            handler,
            outbox: Arc::new(Outbox::default()),
            cache: PacketCache::default(),
        }
    }

    /// Handles `datagrams` as one batch from `src`; returns the answers.
    pub fn answer(&mut self, datagrams: &[&[u8]], src: SocketAddr) -> Vec<Vec<u8>> {
        self.outbox.open();
        let generation = self.handler.generation();
        for bytes in datagrams {
            handle(
                bytes,
                src,
                &self.socket,
                &self.handler,
                &self.outbox,
                &mut self.cache,
                generation,
            );
        }
        let mut out = Vec::new();
        self.outbox.close(&mut out);
        out.into_iter().map(|(b, _)| b).collect()
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
    cache: &mut PacketCache,
    generation: u64,
) {
    let start = Instant::now();
    let cacheable = bytes.len() >= 12 && bytes.len() <= CACHE_MAX_QUERY;
    if cacheable {
        if let Some((answer, c)) = cache.get(bytes, generation) {
            let (qtype, rcode) = (c.qtype, c.rcode);
            if let Some(d) = outbox.offer((answer, src)) {
                let _ = socket.try_send_to(&d.0, d.1);
            }
            handler.metrics().observe(qtype, rcode, start.elapsed());
            return;
        }
    }
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
    let capture = cacheable.then(|| Arc::new(Mutex::new(None)));
    let responder = UdpResponder {
        socket: socket.clone(),
        outbox: outbox.clone(),
        dst: src,
        capture: capture.clone(),
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
        // Forwarded: never cached.
        tokio::spawn(answer);
    } else if let Some(bytes_out) = capture.and_then(|c| c.lock().take()) {
        cache.put(bytes, bytes_out, generation);
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
    /// Where an answer completed at the first poll is copied for the
    /// packet cache.
    capture: Option<Arc<Mutex<Option<Vec<u8>>>>>,
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
        if let Some(c) = &self.capture {
            *c.lock() = Some(buf.clone());
        }
        if let Some((buf, dst)) = self.outbox.offer((buf, self.dst)) {
            self.socket.send_to(&buf, dst).await?;
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.b` type A with id `id`.
    fn query(id: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn packet_cache_answers_with_the_query_id_until_the_generation_moves() {
        let mut cache = PacketCache::default();
        let mut answer = query(7);
        answer[2] |= 0x80; // QR
        answer[3] = 0x03; // NXDOMAIN
        cache.put(&query(7), answer.clone(), 1);
        let (hit, c) = cache.get(&query(0x1234), 1).expect("a hit");
        assert_eq!(&hit[..2], &[0x12, 0x34]);
        assert_eq!(&hit[2..], &answer[2..]);
        assert_eq!(c.rcode, ResponseCode::NXDomain);
        assert_eq!(c.qtype, Some(hickory_proto::rr::RecordType::A));
        assert!(cache.get(&query(1), 2).is_none(), "a new generation misses");
        let mut other = query(7);
        other[14] = b'c';
        assert!(cache.get(&other, 1).is_none(), "another name misses");
    }

    #[test]
    fn question_type_reads_past_the_name() {
        assert_eq!(question_type(&query(1)), Some(1));
        assert_eq!(question_type(&query(1)[..14]), None);
        let mut none = query(1);
        none[5] = 0;
        assert_eq!(question_type(&none), None);
    }

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
