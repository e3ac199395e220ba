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

use crate::kubeconfig::ConnectConfig;
use crate::proto::api_client::ApiClient;
use crate::proto::*;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

/// A channel that adds the client's bearer token (if any) to every call.
#[derive(Clone)]
pub struct AuthChannel {
    inner: Channel,
    token: Option<http::HeaderValue>,
}

impl AuthChannel {
    pub fn new(inner: Channel, token: Option<&str>) -> Result<AuthChannel, String> {
        let token = match token {
            Some(t) => {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| "the token has characters a header cannot carry".to_string())?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(AuthChannel { inner, token })
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for AuthChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <Channel as tower_service::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(t) = &self.token {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, t.clone());
        }
        tower_service::Service::call(&mut self.inner, req)
    }
}

/// A stub of the API over an [`AuthChannel`].
pub type Stub = ApiClient<AuthChannel>;

/// Makes a lazily-connecting endpoint for `addr` (`host:port`, scheme
/// optional) with `tls` applied.
pub fn endpoint(
    addr: &str,
    tls: Option<&crate::kubeconfig::TlsConfig>,
) -> Result<Endpoint, String> {
    let host = crate::kubeconfig::strip_scheme(addr.trim());
    let uri = match tls {
        Some(_) => format!("https://{host}"),
        None => format!("http://{host}"),
    };
    let mut ep =
        Endpoint::from_shared(uri).map_err(|e| format!("invalid server address {addr:?}: {e}"))?;
    if let Some(t) = tls {
        ep = ep
            .tls_config(client_tls(t))
            .map_err(|e| format!("TLS settings for {addr:?}: {e}"))?;
    }
    Ok(ep)
}

/// tonic's client TLS settings from PEM material.
pub fn client_tls(t: &crate::kubeconfig::TlsConfig) -> ClientTlsConfig {
    let mut c = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&t.ca_pem))
        .domain_name(t.server_name.clone())
        .assume_http2(true);
    if let (Some(cert), Some(key)) = (&t.cert_pem, &t.key_pem) {
        c = c.identity(Identity::from_pem(cert, key));
    }
    c
}

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
    channels: Vec<AuthChannel>,
    current: AtomicUsize,
    failover_timeout: Duration,
}

impl Client {
    /// A plaintext client over `host:port` addresses (a `http://` prefix is
    /// optional). Connections are made lazily, so this fails only on
    /// malformed input.
    pub fn new<S: AsRef<str>>(addresses: &[S]) -> Result<Client, String> {
        let servers: Vec<String> = addresses.iter().map(|a| a.as_ref().to_string()).collect();
        Client::connect(&ConnectConfig {
            servers,
            ..Default::default()
        })
    }

    /// A client for `cfg`: TLS and credentials as it says.
    pub fn connect(cfg: &ConnectConfig) -> Result<Client, String> {
        let mut channels = Vec::new();
        let mut addrs = Vec::new();
        for a in &cfg.servers {
            let a = a.trim();
            if a.is_empty() {
                continue;
            }
            let ep = endpoint(a, cfg.tls.as_ref())?
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            channels.push(AuthChannel::new(ep.connect_lazy(), cfg.token.as_deref())?);
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

    /// What a daemon dials: its `--kubeconfig` if given, else `--server`
    /// in plaintext.
    pub fn for_daemon(
        kubeconfig: Option<&std::path::Path>,
        servers: &str,
    ) -> Result<Client, String> {
        Client::connect(&crate::kubeconfig::daemon_connect_config(
            kubeconfig, servers,
        )?)
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
    pub fn stub(&self) -> Stub {
        let i = self.inner.current.load(Ordering::SeqCst) % self.inner.channels.len();
        stub_for(self.inner.channels[i].clone())
    }

    /// A stub pinned to replica `index`, without failover.
    pub fn stub_at(&self, index: usize) -> Stub {
        stub_for(self.inner.channels[index % self.inner.channels.len()].clone())
    }

    /// Runs a write `f` against the current replica, failing over (until
    /// the failover timeout) only where it surely was not done: the server
    /// said `Unavailable`, or no connection could be made. A transport error
    /// after the request may have gone out answers `DeadlineExceeded`
    /// (outcome unknown).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: Fn(Stub) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(false, f).await
    }

    /// Runs a read `f` (safe to repeat) against the current replica,
    /// failing over on transport errors and `Unavailable` until the
    /// failover timeout.
    pub async fn call_idempotent<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: Fn(Stub) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(true, f).await
    }

    async fn call_with<T, F, Fut>(&self, idempotent: bool, f: F) -> Result<T, Status>
    where
        F: Fn(Stub) -> Fut,
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

fn stub_for(ch: AuthChannel) -> Stub {
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
