//! Forwarding of names outside the zone to upstream resolvers.
//!
//! Each forwarded question is sent afresh (new random ID, a new socket with a
//! random source port, EDNS with a 1232-byte buffer) to the upstreams in
//! order, over UDP with a timeout, retried over TCP when the answer is
//! truncated. An answer counts only if its ID, QR bit and question match.
//! SERVFAIL or REFUSED from one upstream moves on to the next. A bounded
//! number of forwards may be in flight, so a flood of outside names cannot
//! grow memory without limit: past it, queries fail at once.

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// The EDNS buffer size offered upstream (the DNS flag day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream servers are configured")]
    NoUpstreams,
    #[error("too many forwarded queries in flight")]
    Overloaded,
    #[error("no upstream answered: {0}")]
    Failed(String),
}

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    slots: Semaphore,
}

impl Forwarder {
    /// `timeout` applies to each upstream in turn.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, max_in_flight: usize) -> Forwarder {
        Forwarder {
            upstreams,
            timeout,
            slots: Semaphore::new(max_in_flight.max(1)),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Asks the upstreams `query`; returns the first usable answer.
    pub async fn forward(&self, query: &Query) -> Result<Message, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstreams);
        }
        let _slot = self
            .slots
            .try_acquire()
            .map_err(|_| ForwardError::Overloaded)?;
        let mut request = Message::query();
        request.metadata.recursion_desired = true;
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        request.set_edns(edns);
        let bytes = request
            .to_vec()
            .map_err(|e| ForwardError::Failed(format!("encoding the query: {e}")))?;
        let id = request.metadata.id;

        let mut errors = Vec::new();
        let mut fallback: Option<Message> = None;
        for upstream in &self.upstreams {
            let attempt = tokio::time::timeout(self.timeout, async {
                let answer = ask_udp(*upstream, &bytes, id, query).await?;
                if answer.metadata.truncation {
                    ask_tcp(*upstream, &bytes, id, query).await
                } else {
                    Ok(answer)
                }
            })
            .await;
            match attempt {
                Ok(Ok(answer)) => {
                    let code = answer.metadata.response_code;
                    if code == ResponseCode::ServFail || code == ResponseCode::Refused {
                        tracing::debug!(%upstream, %code, "upstream refused or failed; trying the next");
                        fallback = Some(answer);
                        continue;
                    }
                    return Ok(answer);
                }
                Ok(Err(e)) => errors.push(format!("{upstream}: {e}")),
                Err(_) => errors.push(format!("{upstream}: timed out after {:?}", self.timeout)),
            }
        }
        fallback.ok_or_else(|| ForwardError::Failed(errors.join("; ")))
    }
}

/// Whether `m` answers our question `id`/`query`.
fn answers(m: &Message, id: u16, query: &Query) -> bool {
    m.metadata.id == id
        && m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].query_type() == query.query_type()
        && m.queries[0].name().eq_ignore_root(query.name())
}

async fn ask_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything else arriving on this port is noise (or spoofing): ignore it.
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if answers(&m, id, query) {
                return Ok(m);
            }
        }
    }
}

async fn ask_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let len = u16::try_from(bytes.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf).map_err(|e| io::Error::other(format!("bad answer: {e}")))?;
    if answers(&m, id, query) {
        Ok(m)
    } else {
        Err(io::Error::other("answer does not match the question"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RecordType};

    #[tokio::test]
    async fn no_upstreams_and_timeouts_fail() {
        let q = Query::query(
            Name::from_ascii("example.com.").expect("name"),
            RecordType::A,
        );
        let none = Forwarder::new(vec![], Duration::from_millis(50), 4);
        assert!(matches!(
            none.forward(&q).await,
            Err(ForwardError::NoUpstreams)
        ));
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let f = Forwarder::new(vec![addr], Duration::from_millis(100), 4);
        match f.forward(&q).await {
            Err(ForwardError::Failed(why)) => assert!(why.contains("timed out"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
