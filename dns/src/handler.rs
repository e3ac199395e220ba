//! The request handler hickory-server calls for every parsed query: checks
//! the message, answers names in the zone from the index, forwards the rest,
//! and counts every answer in the metrics.
//!
//! hickory-server itself drops messages shorter than a header and answers
//! unparseable ones with FORMERR; what reaches here is a parsed message.
//! Errors: an opcode other than QUERY is NOTIMP; not exactly one question,
//! an OPT question or an oversized message is FORMERR; EDNS above version 0
//! is BADVERS; a class other than IN (or ANY) and zone transfers are
//! REFUSED; any other type is answered (NODATA where the name exists).

use crate::forward::{ForwardError, Forwarder};
use crate::index::{Answer, SharedIndex};
use crate::metrics::{ForwardOutcome, Metrics};
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::sync::Arc;
use std::time::Instant;

/// The largest query accepted. Real queries (header, one name of at most
/// 255 bytes, an OPT record with a few options) are far smaller; only TCP
/// can carry more than the 4 KiB a UDP read takes.
pub const MAX_QUERY_BYTES: usize = 1232;

/// The largest UDP answer this server sends, whatever the client offers.
const OUR_PAYLOAD: u16 = 1232;

/// Cheap to clone: hickory's TCP server owns one, each UDP loop shares one.
#[derive(Clone)]
pub struct DnsHandler {
    index: SharedIndex,
    forwarder: Arc<Forwarder>,
    metrics: Arc<Metrics>,
}

/// What to send: a response code, whether it is authoritative, and sections.
struct Reply {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Arc<[Record]>,
    authorities: Vec<Record>,
    soa: Arc<[Record]>,
    additionals: Vec<Record>,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Reply {
        Reply {
            rcode,
            authoritative: false,
            answers: Arc::from([]),
            authorities: Vec::new(),
            soa: Arc::from([]),
            additionals: Vec::new(),
        }
    }

    fn authoritative(rcode: ResponseCode, answers: Arc<[Record]>, soa: Arc<[Record]>) -> Reply {
        Reply {
            rcode,
            authoritative: true,
            answers,
            soa,
            ..Reply::error(rcode)
        }
    }
}

impl DnsHandler {
    pub fn new(index: SharedIndex, forwarder: Arc<Forwarder>, metrics: Arc<Metrics>) -> Self {
        DnsHandler {
            index,
            forwarder,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The index's generation: an answer from the index stays right until
    /// it changes.
    pub fn generation(&self) -> u64 {
        self.index.read().generation()
    }

    /// Decides the reply without touching the network (except to forward).
    async fn reply(&self, request: &Request) -> Reply {
        if request.metadata.op_code != OpCode::Query {
            return Reply::error(ResponseCode::NotImp);
        }
        if request.as_slice().len() > MAX_QUERY_BYTES {
            return Reply::error(ResponseCode::FormErr);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Reply::error(ResponseCode::BADVERS);
        }
        let [query] = request.queries.queries() else {
            return Reply::error(ResponseCode::FormErr);
        };
        match query.query_class() {
            DNSClass::IN | DNSClass::ANY => {}
            _ => return Reply::error(ResponseCode::Refused),
        }
        let qtype = query.query_type();
        match qtype {
            RecordType::OPT => return Reply::error(ResponseCode::FormErr),
            RecordType::AXFR | RecordType::IXFR => return Reply::error(ResponseCode::Refused),
            _ => {}
        }

        let answer = self.index.read().lookup(query.name(), qtype);
        match answer {
            Answer::Found {
                answers,
                additionals,
            } => Reply {
                additionals,
                ..Reply::authoritative(ResponseCode::NoError, answers, Arc::from([]))
            },
            Answer::NoData { soa } => {
                Reply::authoritative(ResponseCode::NoError, Arc::from([]), soa)
            }
            Answer::NxDomain { soa } => {
                Reply::authoritative(ResponseCode::NXDomain, Arc::from([]), soa)
            }
            Answer::NotReady => Reply::error(ResponseCode::ServFail),
            Answer::NotAuthoritative => self.forward(query.original()).await,
        }
    }

    async fn forward(&self, query: &hickory_proto::op::Query) -> Reply {
        match self.forwarder.forward(query).await {
            Ok(m) => {
                self.metrics.forwarded(ForwardOutcome::Answered);
                Reply {
                    rcode: m.metadata.response_code,
                    authoritative: false,
                    answers: Arc::from(m.answers),
                    authorities: m.authorities,
                    soa: Arc::from([]),
                    additionals: m.additionals,
                }
            }
            Err(e) => {
                self.metrics.forwarded(match e {
                    ForwardError::Overloaded => ForwardOutcome::Overloaded,
                    _ => ForwardOutcome::Failed,
                });
                tracing::debug!(name = %query.name(), error = %e, "forwarding failed");
                Reply::error(ResponseCode::ServFail)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let reply = self.reply(request).await;

        // The client's buffer size bounds what the encoder writes over UDP.
        let response_edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, OUR_PAYLOAD));
            e.set_version(0);
            e
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = true;
        metadata.response_code = reply.rcode;
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = &response_edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            reply.soa.iter(),
            reply.additionals.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(src = %request.src(), error = %e, "sending the response failed");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        let qtype = request.queries.queries().first().map(|q| q.query_type());
        self.metrics
            .observe(qtype, info.response_code, start.elapsed());
        info
    }
}
