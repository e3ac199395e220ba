//! A client of the rkube API that knows every control-plane replica and fails
//! over between them.
//!
//! Any replica serves any request, so the client sticks to one replica until
//! it stops answering (a transport error) or answers `Unavailable` (it knows
//! no leader yet; the server promises it did nothing), then moves on to the
//! next. Other errors, including `DeadlineExceeded` for a write whose outcome
//! is unknown, are returned to the caller, who alone knows whether a retry is
//! safe.
//!
//! Reads fail over on any transport error. A write fails over only when it
//! surely was not done: the server said `Unavailable`, or no connection
//! could be made. A connection lost after the request went out (a replica
//! killed or stopped mid-request, an answer lost) may have left the write
//! done: the client answers `DeadlineExceeded` ("outcome unknown"), as the
//! server does when a leader changes under a write, instead of retrying it
//! elsewhere and reporting what the retry got (AlreadyExists for its own
//! create, Conflict for its own update).

use crate::proto::api_client::ApiClient;
use crate::proto::*;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Where to find the control plane when nothing else says so.
pub const DEFAULT_SERVERS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/// Messages up to this size are accepted from the server (lists of many
/// objects can be large).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addresses: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    failover_timeout: Duration,
}

impl Client {
    /// A client over `host:port` addresses (a `http://` prefix is optional).
    /// Connections are made lazily, so this fails only on malformed input.
    pub fn new<S: AsRef<str>>(addresses: &[S]) -> Result<Client, String> {
        let mut channels = Vec::new();
        let mut addrs = Vec::new();
        for a in addresses {
            let a = a.as_ref().trim();
            if a.is_empty() {
                continue;
            }
            let uri = if a.contains("://") {
                a.to_string()
            } else {
                format!("http://{a}")
            };
            let ep = Endpoint::from_shared(uri.clone())
                .map_err(|e| format!("invalid server address {a:?}: {e}"))?
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            channels.push(ep.connect_lazy());
            addrs.push(a.to_string());
        }
        if channels.is_empty() {
            return Err("no server addresses given".into());
        }
        let start = rand::random::<usize>() % channels.len();
        Ok(Client {
            inner: Arc::new(Inner {
                addresses: addrs,
                channels,
                current: AtomicUsize::new(start),
                failover_timeout: Duration::from_secs(15),
            }),
        })
    }

    /// Parses a comma-separated list of addresses.
    pub fn from_list(list: &str) -> Result<Client, String> {
        let parts: Vec<&str> = list.split(',').collect();
        Client::new(&parts)
    }

    /// How long calls keep failing over before giving up (default 15 s).
    pub fn with_failover_timeout(self, t: Duration) -> Client {
        let inner = Inner {
            addresses: self.inner.addresses.clone(),
            channels: self.inner.channels.clone(),
            current: AtomicUsize::new(self.inner.current.load(Ordering::SeqCst)),
            failover_timeout: t,
        };
        Client {
            inner: Arc::new(inner),
        }
    }

    /// Pins the client to one address first (tests use this to talk to a
    /// particular replica); failover still applies.
    pub fn prefer(&self, index: usize) {
        self.inner
            .current
            .store(index % self.inner.channels.len(), Ordering::SeqCst);
    }

    pub fn addresses(&self) -> &[String] {
        &self.inner.addresses
    }

    /// The address currently used.
    pub fn current_address(&self) -> &str {
        let i = self.inner.current.load(Ordering::SeqCst) % self.inner.addresses.len();
        &self.inner.addresses[i]
    }

    /// A raw stub on the current replica, for calls the helpers below do not
    /// cover.
    pub fn stub(&self) -> ApiClient<Channel> {
        let i = self.inner.current.load(Ordering::SeqCst) % self.inner.channels.len();
        stub_for(self.inner.channels[i].clone())
    }

    /// A stub pinned to replica `index`, without failover.
    pub fn stub_at(&self, index: usize) -> ApiClient<Channel> {
        stub_for(self.inner.channels[index % self.inner.channels.len()].clone())
    }

    /// Runs a write `f` against the current replica, failing over (until
    /// the failover timeout) only where it surely was not done: the server
    /// said `Unavailable`, or no connection could be made. A transport error
    /// after the request may have gone out answers `DeadlineExceeded`
    /// (outcome unknown).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: Fn(ApiClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(false, f).await
    }

    /// Runs a read `f` (safe to repeat) against the current replica,
    /// failing over on transport errors and `Unavailable` until the
    /// failover timeout.
    pub async fn call_idempotent<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: Fn(ApiClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(true, f).await
    }

    async fn call_with<T, F, Fut>(&self, idempotent: bool, f: F) -> Result<T, Status>
    where
        F: Fn(ApiClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.inner.failover_timeout;
        let n = self.inner.channels.len();
        let mut tries = 0usize;
        loop {
            let i = self.inner.current.load(Ordering::SeqCst) % n;
            match f(stub_for(self.inner.channels[i].clone())).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) && !idempotent && !surely_not_done(&s) => {
                    return Err(Status::deadline_exceeded(format!(
                        "the connection to {} failed while the write was in flight ({}); \
                         its outcome is unknown: read before retrying",
                        self.inner.addresses[i],
                        s.message()
                    )));
                }
                Err(s) if retryable(&s) && Instant::now() < deadline => {
                    tracing::debug!(server = %self.inner.addresses[i], error = %s, "failing over");
                    let _ = self.inner.current.compare_exchange(
                        i,
                        (i + 1) % n,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    tries += 1;
                    if tries.is_multiple_of(n) {
                        // A whole round failed: an election is probably under way.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(s) => return Err(s),
            }
        }
    }

    pub async fn create(&self, object: Object) -> Result<Object, Status> {
        self.call(|mut c| {
            let object = object.clone();
            async move {
                c.create(CreateRequest {
                    object: Some(object),
                    dry_run: false,
                })
                .await
            }
        })
        .await
    }

    pub async fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Object, Status> {
        let req = GetRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            resource_version: String::new(),
        };
        self.call_idempotent(|mut c| {
            let req = req.clone();
            async move { c.get(req).await }
        })
        .await
    }

    pub async fn list(&self, req: ListRequest) -> Result<ObjectList, Status> {
        self.call_idempotent(|mut c| {
            let req = req.clone();
            async move { c.list(req).await }
        })
        .await
    }

    pub async fn update(&self, object: Object) -> Result<Object, Status> {
        self.call(|mut c| {
            let object = object.clone();
            async move {
                c.update(UpdateRequest {
                    object: Some(object),
                    dry_run: false,
                })
                .await
            }
        })
        .await
    }

    pub async fn update_status(&self, object: Object) -> Result<Object, Status> {
        self.call(|mut c| {
            let object = object.clone();
            async move {
                c.update_status(UpdateRequest {
                    object: Some(object),
                    dry_run: false,
                })
                .await
            }
        })
        .await
    }

    pub async fn patch(&self, req: PatchRequest) -> Result<Object, Status> {
        self.call(|mut c| {
            let req = req.clone();
            async move { c.patch(req).await }
        })
        .await
    }

    pub async fn delete(&self, req: DeleteRequest) -> Result<Object, Status> {
        self.call(|mut c| {
            let req = req.clone();
            async move { c.delete(req).await }
        })
        .await
    }

    pub async fn scale(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> Result<Scale, Status> {
        let req = ScaleRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            replicas,
            resource_version: String::new(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.update_scale(req).await }
        })
        .await
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse, Status> {
        self.call_idempotent(|mut c| async move { c.cluster_status(ClusterStatusRequest {}).await })
            .await
    }

    /// Opens a watch (on whichever replica answers); the caller resumes from
    /// the last revision it saw if the stream breaks.
    pub async fn watch(&self, req: WatchRequest) -> Result<tonic::Streaming<WatchEvent>, Status> {
        self.call_idempotent(|mut c| {
            let req = req.clone();
            async move { c.watch(req).await }
        })
        .await
    }
}

fn stub_for(ch: Channel) -> ApiClient<Channel> {
    ApiClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Whether a failed call surely did nothing: the server itself said
/// `Unavailable` (its promise), or no connection could be made (the request
/// never went out).
pub fn surely_not_done(s: &Status) -> bool {
    let mut source = std::error::Error::source(s);
    if source.is_none() {
        return s.code() == Code::Unavailable;
    }
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether an error means "no answer from this replica, another may serve
/// it" (for a write, see also [`surely_not_done`]).
pub fn retryable(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable => true,
        // The connection closed under the call (a replica killed mid-call):
        // tonic reports it as Cancelled with the transport error as source.
        // The server itself never answers Cancelled.
        Code::Cancelled => std::error::Error::source(s).is_some(),
        // Connection-level failures before the request was sent.
        Code::Unknown | Code::Internal => {
            let m = s.message();
            m.contains("transport error") || m.contains("connection") || m.contains("h2 protocol")
        }
        _ => false,
    }
}
