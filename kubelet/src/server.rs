//! The kubelet's gRPC endpoint (`rkube.kubelet.v1.Kubelet`): container logs
//! and exec for rkubectl, relayed to the runtime shim.
//!
//! The endpoint knows pods only through the runtime: every container the
//! kubelet creates carries the labels in [`crate::labels`] and
//! `metadata.attempt` = its restart count, so a (namespace, pod, container)
//! triple resolves with one `ListContainers`. The current instance is the
//! highest attempt; `previous` is the highest attempt below it. When
//! containers of several pods with the same name are present (a pod
//! deleted and created again), the pod whose containers were created last
//! wins.
//!
//! Errors are gRPC statuses whose messages read like Kubernetes':
//! `NotFound` (`pods "x" not found`, `container "c" not found in pod "p"`,
//! `previous terminated container "c" in pod "p" not found`),
//! `InvalidArgument` (no container named while the pod has several, bad
//! `since_time`, empty command, a first exec message that is not `start`),
//! `FailedPrecondition` (exec into a container that is not running), and
//! whatever the runtime answered otherwise.

use std::collections::BTreeSet;
use std::pin::Pin;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{Stream, StreamExt};
use rkube_api::proto::kubelet::kubelet_server::{Kubelet, KubeletServer};
use rkube_api::proto::kubelet::{
    exec_request, exec_response, ExecExit, ExecRequest, ExecResponse, LogChunk, LogsRequest,
};
use rkube_runtime::client::RuntimeClient;
use rkube_runtime::proto as rt;
use tonic::{Request, Response, Status, Streaming};

use crate::labels;

/// What the endpoint needs.
#[derive(Clone)]
pub struct ServerContext {
    pub runtime: RuntimeClient,
    pub node_name: String,
    /// TLS: the node's certificate serves, and callers must present a
    /// certificate from the cluster CA naming an admin (`system:masters`)
    /// or a control-plane replica. `None`: plaintext, open (an insecure
    /// cluster).
    pub tls: Option<EndpointTls>,
}

/// PEM material of a secure endpoint.
#[derive(Clone)]
pub struct EndpointTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

/// Only admins and the control plane may read logs and exec.
#[allow(clippy::result_large_err)]
fn authorize_caller(req: Request<()>) -> Result<Request<()>, Status> {
    use rkube_api::kubeconfig::identities as id;
    let who = rkube_api::auth::certificate_identity(&req).map_err(|_| {
        Status::unauthenticated("the kubelet endpoint requires a client certificate")
    })?;
    if who.in_group(id::GROUP_MASTERS) || who.in_group(id::GROUP_CONTROL_PLANE) {
        Ok(req)
    } else {
        Err(Status::permission_denied(format!(
            "user {:?} may not use the kubelet endpoint (logs, exec)",
            who.user
        )))
    }
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, ctx: ServerContext) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, node = %ctx.node_name, "kubelet endpoint serving");
    // Interactive exec sends keystrokes: no Nagle delay.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.and_then(|s| {
            s.set_nodelay(true)?;
            Ok(s)
        })
    });
    let mut builder = tonic::transport::Server::builder();
    match ctx.tls.clone() {
        Some(t) => {
            builder = builder.tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(
                        &t.cert_pem,
                        &t.key_pem,
                    ))
                    .client_ca_root(tonic::transport::Certificate::from_pem(&t.ca_pem)),
            )?;
            builder
                .add_service(KubeletServer::with_interceptor(
                    KubeletApi { ctx },
                    authorize_caller,
                ))
                .serve_with_incoming(incoming)
                .await?;
        }
        None => {
            builder
                .add_service(KubeletServer::new(KubeletApi { ctx }))
                .serve_with_incoming(incoming)
                .await?;
        }
    }
    Ok(())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

struct KubeletApi {
    ctx: ServerContext,
}

/// Which instance of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Instance {
    Current,
    Previous,
}

/// Picks the pod's containers out of everything the runtime lists under
/// the pod's namespace and name labels: those of the most recently created
/// pod uid (containers without a uid label count as one pod).
fn newest_pod(containers: Vec<rt::Container>) -> Vec<rt::Container> {
    let uid_of = |c: &rt::Container| c.labels.get(labels::POD_UID).cloned().unwrap_or_default();
    let Some(newest) = containers.iter().max_by_key(|c| c.created_at).map(&uid_of) else {
        return Vec::new();
    };
    containers
        .into_iter()
        .filter(|c| uid_of(c) == newest)
        .collect()
}

fn container_name(c: &rt::Container) -> String {
    c.labels
        .get(labels::CONTAINER_NAME)
        .cloned()
        .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
        .unwrap_or_default()
}

fn attempt(c: &rt::Container) -> u32 {
    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

/// Chooses one runtime container among a pod's: by name (the only one when
/// `name` is empty), then the current or previous attempt.
fn choose(
    pod: &str,
    name: &str,
    containers: Vec<rt::Container>,
    instance: Instance,
) -> Result<rt::Container, Status> {
    if containers.is_empty() {
        return Err(Status::not_found(format!("pods \"{pod}\" not found")));
    }
    let names: BTreeSet<String> = containers.iter().map(container_name).collect();
    let name = if name.is_empty() {
        if names.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "a container name must be specified for pod {pod}, choose one of: [{}]",
                names.into_iter().collect::<Vec<_>>().join(" ")
            )));
        }
        names.into_iter().next().unwrap_or_default()
    } else {
        name.to_string()
    };
    let mut attempts: Vec<rt::Container> = containers
        .into_iter()
        .filter(|c| container_name(c) == name)
        .collect();
    if attempts.is_empty() {
        return Err(Status::not_found(format!(
            "container \"{name}\" not found in pod \"{pod}\""
        )));
    }
    // Highest attempt first; the same attempt twice (should not happen):
    // the newer one.
    attempts.sort_by_key(|c| std::cmp::Reverse((attempt(c), c.created_at)));
    match instance {
        Instance::Current => Ok(attempts.swap_remove(0)),
        Instance::Previous => {
            let current = attempt(&attempts[0]);
            attempts
                .into_iter()
                .find(|c| attempt(c) < current)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "previous terminated container \"{name}\" in pod \"{pod}\" not found"
                    ))
                })
        }
    }
}

impl KubeletApi {
    /// The runtime container for a request.
    async fn resolve(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        instance: Instance,
    ) -> Result<rt::Container, Status> {
        if pod.is_empty() {
            return Err(Status::invalid_argument("a pod name is required"));
        }
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let mut runtime = self.ctx.runtime.clone();
        let listed = runtime
            .list_containers(rt::ListContainersRequest {
                filter: Some(rt::ContainerFilter {
                    label_selector: [
                        (labels::POD_NAMESPACE.to_string(), namespace.to_string()),
                        (labels::POD_NAME.to_string(), pod.to_string()),
                    ]
                    .into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| relay_status("listing the pod's containers", s))?
            .into_inner()
            .containers;
        choose(pod, container, newest_pod(listed), instance)
    }
}

/// A runtime failure as the endpoint's answer: the code kept, the message
/// saying what was being done.
fn relay_status(what: &str, s: Status) -> Status {
    Status::new(
        s.code(),
        format!("runtime on this node: {what}: {}", s.message()),
    )
}

/// RFC 3339 with nanoseconds, UTC (`2024-05-01T10:00:00.123456789Z`).
fn rfc3339_nanos(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default()
    .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `since_time` (RFC 3339) in ns since the epoch; 0 when empty.
fn since_nanos(since: &str) -> Result<i64, Status> {
    if since.trim().is_empty() {
        return Ok(0);
    }
    let t = DateTime::parse_from_rfc3339(since.trim()).map_err(|e| {
        Status::invalid_argument(format!("since_time {since:?} is not an RFC 3339 time: {e}"))
    })?;
    // Beyond what ns since the epoch hold (after 2262): nothing is that new.
    let ns = t
        .timestamp_nanos_opt()
        .unwrap_or(if t.timestamp() > 0 { i64::MAX } else { 1 });
    Ok(ns.max(1))
}

fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Turns runtime log entries into chunks: a newline after every complete
/// line, and with `timestamps` the line's time in front of every line
/// start (a long line split by the runtime is prefixed once).
struct ChunkMaker {
    timestamps: bool,
    /// Per stream (stdout, stderr): whether the last entry ended a line.
    at_line_start: [bool; 2],
}

impl ChunkMaker {
    fn new(timestamps: bool) -> Self {
        ChunkMaker {
            timestamps,
            at_line_start: [true, true],
        }
    }

    fn chunk(&mut self, e: rt::LogEntry) -> LogChunk {
        let stderr = e.stream == rt::LogStream::Stderr as i32;
        let timestamp = rfc3339_nanos(e.timestamp);
        let slot = &mut self.at_line_start[stderr as usize];
        let mut content = Vec::with_capacity(e.content.len() + 40);
        if self.timestamps && *slot {
            content.extend_from_slice(timestamp.as_bytes());
            content.push(b' ');
        }
        content.extend_from_slice(&e.content);
        if !e.partial {
            content.push(b'\n');
        }
        *slot = !e.partial;
        LogChunk {
            content,
            stream: if stderr { "stderr" } else { "stdout" }.into(),
            timestamp,
        }
    }
}

fn map_exec_request(req: ExecRequest) -> Option<rt::ExecRequest> {
    let msg = match req.msg? {
        exec_request::Msg::Stdin(data) => rt::exec_request::Msg::Stdin(data),
        exec_request::Msg::Resize(size) => rt::exec_request::Msg::Resize(rt::TerminalSize {
            width: size.width,
            height: size.height,
        }),
        exec_request::Msg::CloseStdin(close) => rt::exec_request::Msg::CloseStdin(close),
        // Only the first message may be `start`; a later one is ignored.
        exec_request::Msg::Start(_) => return None,
    };
    Some(rt::ExecRequest { msg: Some(msg) })
}

fn map_exec_response(resp: rt::ExecResponse) -> Option<ExecResponse> {
    let msg = match resp.msg? {
        rt::exec_response::Msg::Stdout(data) => exec_response::Msg::Stdout(data),
        rt::exec_response::Msg::Stderr(data) => exec_response::Msg::Stderr(data),
        rt::exec_response::Msg::Exit(exit) => exec_response::Msg::Exit(ExecExit {
            exit_code: exit.exit_code,
        }),
    };
    Some(ExecResponse { msg: Some(msg) })
}

#[tonic::async_trait]
impl Kubelet for KubeletApi {
    type LogsStream = BoxStream<LogChunk>;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let req = req.into_inner();
        let mut since = since_nanos(&req.since_time)?;
        let tail = req.tail_lines.unwrap_or(-1);
        if tail == 0 {
            if !req.follow {
                return Ok(Response::new(Box::pin(futures::stream::empty())));
            }
            // No old lines, only new ones.
            since = since.max(now_nanos());
        }
        let instance = if req.previous {
            Instance::Previous
        } else {
            Instance::Current
        };
        let container = self
            .resolve(&req.namespace, &req.pod, &req.container, instance)
            .await?;
        if container.state == rt::ContainerState::ContainerCreated as i32 {
            return Err(Status::failed_precondition(format!(
                "container \"{}\" in pod \"{}\" is waiting to start: ContainerCreating",
                container_name(&container),
                req.pod
            )));
        }
        let mut runtime = self.ctx.runtime.clone();
        let entries = runtime
            .container_logs(rt::ContainerLogsRequest {
                container_id: container.id,
                // The previous instance has exited: nothing to follow.
                follow: req.follow && !req.previous,
                tail_lines: tail.max(0),
                since_time: since,
            })
            .await
            .map_err(|s| relay_status("reading the container's log", s))?
            .into_inner();
        let mut maker = ChunkMaker::new(req.timestamps);
        // Dropping the answer (the client went away) drops the runtime's
        // stream too.
        let chunks = entries.map(move |r| match r {
            Ok(e) => Ok(maker.chunk(e)),
            Err(s) => Err(relay_status("reading the container's log", s)),
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    type ExecStream = BoxStream<ExecResponse>;

    async fn exec(
        &self,
        req: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(ExecRequest {
                msg: Some(exec_request::Msg::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Exec message must be `start`",
                ))
            }
        };
        if start.command.is_empty() {
            return Err(Status::invalid_argument("a command is required"));
        }
        let container = self
            .resolve(
                &start.namespace,
                &start.pod,
                &start.container,
                Instance::Current,
            )
            .await?;
        if container.state != rt::ContainerState::ContainerRunning as i32 {
            return Err(Status::failed_precondition(format!(
                "container \"{}\" in pod \"{}\" is not running",
                container_name(&container),
                start.pod
            )));
        }
        let first = rt::ExecRequest {
            msg: Some(rt::exec_request::Msg::Start(rt::ExecStart {
                container_id: container.id.clone(),
                cmd: start.command.clone(),
                tty: start.tty,
                stdin: start.stdin,
            })),
        };
        // The client's messages after `start`, until it half-closes or its
        // stream fails.
        let rest = input
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| futures::future::ready(r.ok().and_then(map_exec_request)));
        let outbound = futures::stream::iter([first]).chain(rest);
        let mut runtime = self.ctx.runtime.clone();
        let answers = runtime
            .exec(outbound)
            .await
            .map_err(|s| relay_status("exec", s))?
            .into_inner();
        // Dropping the answer (the client went away) closes the runtime's
        // stream, which kills the process.
        let relayed = answers.filter_map(|r| {
            futures::future::ready(match r {
                Ok(resp) => map_exec_response(resp).map(Ok),
                Err(s) => Some(Err(relay_status("exec", s))),
            })
        });
        Ok(Response::new(Box::pin(relayed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(pod_uid: &str, name: &str, attempt: u32, created_at: i64) -> rt::Container {
        rt::Container {
            id: format!("{name}-{attempt}-{created_at}"),
            metadata: Some(rt::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            created_at,
            labels: [
                (labels::POD_UID.to_string(), pod_uid.to_string()),
                (labels::CONTAINER_NAME.to_string(), name.to_string()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_only_container_is_the_default() {
        let c = choose("p", "", vec![container("u", "a", 0, 1)], Instance::Current).unwrap();
        assert_eq!(c.id, "a-0-1");
    }

    #[test]
    fn several_containers_need_a_name() {
        let err = choose(
            "web",
            "",
            vec![container("u", "b", 0, 1), container("u", "a", 0, 2)],
            Instance::Current,
        )
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "a container name must be specified for pod web, choose one of: [a b]"
        );
    }

    #[test]
    fn unknown_pod_and_container_are_not_found() {
        let err = choose("x", "", vec![], Instance::Current).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(err.message(), "pods \"x\" not found");
        let err = choose("p", "c", vec![container("u", "a", 0, 1)], Instance::Current).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(err.message(), "container \"c\" not found in pod \"p\"");
    }

    #[test]
    fn current_is_the_highest_attempt_and_previous_the_one_below() {
        let all = vec![
            container("u", "a", 0, 1),
            container("u", "a", 2, 3),
            container("u", "a", 1, 2),
            container("u", "b", 5, 4),
        ];
        let c = choose("p", "a", all.clone(), Instance::Current).unwrap();
        assert_eq!(c.id, "a-2-3");
        let c = choose("p", "a", all.clone(), Instance::Previous).unwrap();
        assert_eq!(c.id, "a-1-2");
        let err = choose(
            "p",
            "a",
            vec![container("u", "a", 0, 1)],
            Instance::Previous,
        )
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(
            err.message(),
            "previous terminated container \"a\" in pod \"p\" not found"
        );
    }

    #[test]
    fn the_newest_pod_of_a_name_wins() {
        let all = vec![
            container("old", "a", 3, 1),
            container("new", "a", 0, 5),
            container("old", "b", 0, 2),
        ];
        let pod = newest_pod(all);
        assert_eq!(pod.len(), 1);
        assert_eq!(pod[0].id, "a-0-5");
    }

    #[test]
    fn chunks_end_lines_and_carry_timestamps() {
        let mut m = ChunkMaker::new(true);
        let entry = |content: &str, partial: bool, stream: rt::LogStream| rt::LogEntry {
            timestamp: 1_700_000_000_123_456_789,
            stream: stream as i32,
            content: content.as_bytes().to_vec(),
            partial,
        };
        let c = m.chunk(entry("hello", false, rt::LogStream::Stdout));
        assert_eq!(c.timestamp, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(c.stream, "stdout");
        assert_eq!(c.content, b"2023-11-14T22:13:20.123456789Z hello\n");
        // A long line in two pieces is prefixed once.
        let c = m.chunk(entry("lo", true, rt::LogStream::Stderr));
        assert_eq!(c.content, b"2023-11-14T22:13:20.123456789Z lo");
        assert_eq!(c.stream, "stderr");
        let c = m.chunk(entry("ng", false, rt::LogStream::Stderr));
        assert_eq!(c.content, b"ng\n");
        let mut m = ChunkMaker::new(false);
        assert_eq!(
            m.chunk(entry("x", false, rt::LogStream::Stdout)).content,
            b"x\n"
        );
    }

    #[test]
    fn since_time_is_rfc3339() {
        assert_eq!(since_nanos("").unwrap(), 0);
        assert_eq!(
            since_nanos("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(since_nanos("2999-01-01T00:00:00Z").unwrap(), i64::MAX);
        assert_eq!(since_nanos("1960-01-01T00:00:00Z").unwrap(), 1);
        assert_eq!(
            since_nanos("yesterday").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
