//! `logs`: a container's log, read from the kubelet of the pod's node
//! (`rkube.kubelet.v1.Kubelet/Logs`), as kubectl reads it from the kubelet
//! through the API server. Also the helpers `exec` shares: finding the pod,
//! its container and its node's kubelet endpoint, and kubelet errors as
//! kubectl prints them.

use crate::args::LogsArgs;
use crate::context::Ctx;
use crate::errors::{self, ServerError};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{SecondsFormat, Utc};
use rkube_api::proto::kubelet::kubelet_client::KubeletClient;
use rkube_api::proto::kubelet::LogsRequest;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{Node, Pod};
use std::io::Write;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A pod, the container chosen in it, and a client to its node's kubelet.
pub struct Target {
    pub name: String,
    pub namespace: String,
    /// Empty only when the pod's spec names no container (the kubelet then
    /// decides).
    pub container: String,
    pub node: String,
    pub kubelet: KubeletClient<Channel>,
}

/// `NAME`, `pod/NAME` or `pods/NAME` (kubectl's forms for a pod).
pub fn pod_name(arg: &str) -> Result<String> {
    match arg.split_once('/') {
        None => Ok(arg.to_string()),
        Some((kind, name))
            if matches!(kind.to_ascii_lowercase().as_str(), "pod" | "pods" | "po") =>
        {
            if name.is_empty() {
                bail!("a pod name is required in {arg:?}");
            }
            Ok(name.to_string())
        }
        Some((kind, _)) => bail!("only pods are supported here (pod/NAME), not {kind:?}"),
    }
}

/// The container to use: the one named, else the pod's only container, else
/// kubectl's error listing the choices.
pub fn choose_container(pod: &Pod, name: &str, wanted: Option<&str>) -> Result<String> {
    if let Some(c) = wanted.filter(|c| !c.is_empty()) {
        return Ok(c.to_string());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    match names.as_slice() {
        [] => Ok(String::new()),
        [only] => Ok(only.to_string()),
        _ => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            );
            if !spec.init_containers.is_empty() {
                let init: Vec<&str> = spec
                    .init_containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(anyhow!(msg))
        }
    }
}

/// The address of a node's kubelet: its InternalIP (else ExternalIP, else
/// Hostname) and `status.daemonEndpoints.kubeletEndpoint.port`.
pub fn kubelet_address(node: &Node) -> Result<String> {
    let name = node
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .unwrap_or(0);
    if port <= 0 || port > 65535 {
        bail!(
            "node {name:?} has no kubelet endpoint (status.daemonEndpoints.kubeletEndpoint.port \
             is not set): is a kubelet running there?"
        );
    }
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            status
                .addresses
                .iter()
                .find(|a| a.r#type == *t && !a.address.is_empty())
                .map(|a| a.address.clone())
        })
        .ok_or_else(|| anyhow!("node {name:?} has no address (status.addresses is empty)"))?;
    Ok(if host.contains(':') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    })
}

/// Finds the pod, picks the container, and dials the kubelet of its node.
pub async fn target(ctx: &Ctx, pod_arg: &str, container: Option<&str>) -> Result<Target> {
    let name = pod_name(pod_arg)?;
    let namespace = ctx.namespace.clone();
    let obj = ctx
        .client
        .get("Pod", &namespace, &name)
        .await
        .map_err(errors::server)?;
    let Some(Body::Pod(pod)) = obj.kind else {
        bail!("the server answered something else than a pod for {name:?}");
    };
    let container = choose_container(&pod, &name, container)?;
    let node = pod
        .spec
        .as_ref()
        .map(|s| s.node_name.clone())
        .unwrap_or_default();
    if node.is_empty() {
        bail!("pod {name:?} is not scheduled to a node yet (spec.nodeName is empty)");
    }
    let node_obj = match ctx.client.get("Node", "", &node).await {
        Ok(o) => o,
        Err(s) if s.code() == Code::NotFound => {
            bail!("pod {name:?} is on node {node:?}, which does not exist")
        }
        Err(s) => return Err(errors::server(s)),
    };
    let Some(Body::Node(node_obj)) = node_obj.kind else {
        bail!("the server answered something else than a node for {node:?}");
    };
    let url = kubelet_address(&node_obj)?;
    // In a secure cluster the kubelet serves TLS under the node's name and
    // wants our client certificate.
    let mut endpoint =
        Endpoint::from_shared(url.clone()).with_context(|| format!("bad kubelet address {url}"))?;
    if let Some(tls) = &ctx.connect.tls {
        let host = url.trim_start_matches("http://");
        endpoint = Endpoint::from_shared(format!("https://{host}"))
            .with_context(|| format!("bad kubelet address {url}"))?
            .tls_config(rkube_api::client::client_tls(
                &rkube_api::kubeconfig::TlsConfig {
                    server_name: node.clone(),
                    ..tls.clone()
                },
            ))
            .context("TLS settings for the kubelet")?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the kubelet of node {node:?} at {url}"))?;
    Ok(Target {
        name,
        namespace,
        container,
        node,
        kubelet: KubeletClient::new(channel),
    })
}

/// A kubelet's error as kubectl prints errors the kubelet gives it through
/// the API server (`Error from server (BadRequest): ...`).
pub fn kubelet_error(node: &str, s: Status) -> anyhow::Error {
    if errors::is_connection_failure(&s) {
        let se = errors::from_status(&s);
        return anyhow!("the kubelet of node {node:?}: {}", se.message);
    }
    let reason = match s.code() {
        Code::NotFound => "NotFound",
        Code::InvalidArgument | Code::FailedPrecondition => "BadRequest",
        c => errors::reason_for(c),
    };
    anyhow::Error::new(ServerError {
        reason: Some(reason),
        code: s.code(),
        message: s.message().to_string(),
    })
}

/// A Go duration (`30s`, `5m`, `1h30m`, `250ms`), as kubectl's `--since`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || anyhow!("invalid duration {s:?}: use e.g. 30s, 5m or 1h");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(value * seconds);
    }
    Ok(total)
}

/// The RFC 3339 time lines must be at or after, from `--since-time` or
/// `--since`.
fn since_time(a: &LogsArgs) -> Result<String> {
    if let Some(t) = a.since_time.as_deref().filter(|t| !t.is_empty()) {
        chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow!("invalid --since-time {t:?} (want RFC 3339): {e}"))?;
        return Ok(t.to_string());
    }
    if let Some(d) = a.since.as_deref() {
        let d = chrono::Duration::from_std(parse_duration(d)?)?;
        return Ok((Utc::now() - d).to_rfc3339_opts(SecondsFormat::Nanos, true));
    }
    Ok(String::new())
}

pub async fn run(ctx: &Ctx, a: &LogsArgs) -> Result<()> {
    let (pod_arg, positional_container) = match a.args.as_slice() {
        [pod] => (pod.as_str(), None),
        [pod, container] => (pod.as_str(), Some(container.as_str())),
        _ => bail!("expected POD [CONTAINER]"),
    };
    if a.container.is_some() && positional_container.is_some() {
        bail!("only one of -c or an inline [CONTAINER] argument is allowed");
    }
    let since_time = since_time(a)?;
    let mut t = target(
        ctx,
        pod_arg,
        a.container.as_deref().or(positional_container),
    )
    .await?;
    let req = LogsRequest {
        namespace: t.namespace.clone(),
        pod: t.name.clone(),
        container: t.container.clone(),
        follow: a.follow,
        tail_lines: (a.tail >= 0).then_some(a.tail),
        previous: a.previous,
        since_time,
        timestamps: a.timestamps,
    };
    let mut stream = t
        .kubelet
        .logs(req)
        .await
        .map_err(|s| kubelet_error(&t.node, s))?
        .into_inner();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = async {
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| kubelet_error(&t.node, s))?
        {
            out.write_all(&chunk.content)?;
            if a.follow {
                out.flush()?;
            }
        }
        out.flush()?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    match written {
        // A reader that went away (`| head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{
        Container, DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus, PodSpec,
    };

    fn pod(containers: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                containers: containers.iter().map(c).collect(),
                init_containers: init.iter().map(c).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn parse(args: &[&str]) -> LogsArgs {
        use clap::Parser;
        let cli = crate::args::Cli::try_parse_from(
            std::iter::once("rkubectl").chain(args.iter().copied()),
        )
        .expect("parses");
        match cli.command {
            crate::args::Command::Logs(a) => a,
            other => panic!("not logs: {other:?}"),
        }
    }

    #[test]
    fn logs_flags_parse_like_kubectl() {
        let a = parse(&["logs", "web", "-c", "app", "-f", "--tail", "2", "-p"]);
        assert_eq!(a.args, ["web"]);
        assert_eq!(a.container.as_deref(), Some("app"));
        assert!(a.follow && a.previous && !a.timestamps);
        assert_eq!(a.tail, 2);
        let a = parse(&[
            "logs",
            "web",
            "app",
            "--timestamps",
            "--since-time=2024-01-01T00:00:00Z",
        ]);
        assert_eq!(a.args, ["web", "app"]);
        assert_eq!(a.tail, -1);
        assert!(a.timestamps);
        assert_eq!(a.since_time.as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn containers_are_chosen_like_kubectl() {
        assert_eq!(choose_container(&pod(&["a"], &[]), "p", None).unwrap(), "a");
        assert_eq!(
            choose_container(&pod(&["a", "b"], &[]), "p", Some("b")).unwrap(),
            "b"
        );
        assert_eq!(
            choose_container(&pod(&["a", "b"], &[]), "web", None)
                .unwrap_err()
                .to_string(),
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(
            choose_container(&pod(&["a", "b"], &["i"]), "web", None)
                .unwrap_err()
                .to_string(),
            "a container name must be specified for pod web, choose one of: [a b] \
             or one of the init containers: [i]"
        );
    }

    #[test]
    fn pod_names_in_kubectl_forms() {
        assert_eq!(pod_name("web").unwrap(), "web");
        assert_eq!(pod_name("pod/web").unwrap(), "web");
        assert_eq!(pod_name("pods/web").unwrap(), "web");
        assert!(pod_name("rc/web").is_err());
    }

    #[test]
    fn kubelet_address_from_the_node() {
        let mut node = Node {
            status: Some(NodeStatus {
                addresses: vec![
                    NodeAddress {
                        r#type: "Hostname".into(),
                        address: "wn1".into(),
                    },
                    NodeAddress {
                        r#type: "InternalIP".into(),
                        address: "10.0.0.5".into(),
                    },
                ],
                daemon_endpoints: Some(NodeDaemonEndpoints {
                    kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(kubelet_address(&node).unwrap(), "http://10.0.0.5:10250");
        node.status.as_mut().unwrap().daemon_endpoints = None;
        assert!(kubelet_address(&node)
            .unwrap_err()
            .to_string()
            .contains("no kubelet endpoint"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn kubelet_errors_read_like_kubectl() {
        let e = kubelet_error(
            "n",
            Status::not_found("container \"c\" not found in pod \"p\""),
        );
        assert_eq!(
            errors::render(&e).unwrap(),
            "Error from server (NotFound): container \"c\" not found in pod \"p\""
        );
        let e = kubelet_error("n", Status::failed_precondition("not running"));
        assert_eq!(
            errors::render(&e).unwrap(),
            "Error from server (BadRequest): not running"
        );
    }
}
