//! Who may use the kubelet endpoint (logs, exec) of a secure cluster: the
//! endpoint is served by `server::serve` with TLS from a PKI made by
//! `rkube_pki::bootstrap` in a temporary directory, in front of a fake
//! runtime that knows no containers (so a call that gets through answers
//! `NotFound` for the pod, and a refused one never reaches the runtime).
//! Needs neither root nor runc.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rkube_api::kubeconfig::TlsConfig;
use rkube_api::proto::kubelet::kubelet_client::KubeletClient;
use rkube_api::proto::kubelet::LogsRequest;
use rkube_kubelet::server::{serve, EndpointTls, ServerContext};
use rkube_runtime::proto as rt;
use rkube_runtime::proto::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

const NODE: &str = "wn1";

/// A runtime with no containers that counts the `ListContainers` calls
/// (the endpoint's first runtime call for logs and exec).
#[derive(Clone, Default)]
struct FakeRuntime {
    lists: Arc<AtomicUsize>,
}

type Answer<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The fake's `RuntimeService`: `ListContainers` answers no containers and
/// counts; the methods listed (never called by the endpoint in these
/// tests) are unimplemented. (A macro writes the whole impl, so that
/// async_trait sees every method.)
macro_rules! fake_runtime_service {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for FakeRuntime {
            async fn list_containers(
                &self,
                _: Request<rt::ListContainersRequest>,
            ) -> Answer<rt::ListContainersResponse> {
                self.lists.fetch_add(1, Ordering::SeqCst);
                Ok(Response::new(rt::ListContainersResponse::default()))
            }

            type ExecStream = BoxStream<rt::ExecResponse>;
            type ContainerLogsStream = BoxStream<rt::LogEntry>;
            type GetContainerEventsStream = BoxStream<rt::ContainerEvent>;

            async fn exec(
                &self,
                _: Request<Streaming<rt::ExecRequest>>,
            ) -> Answer<Self::ExecStream> {
                Err(Status::unimplemented("exec"))
            }

            $(
                async fn $name(&self, _: Request<$req>) -> Answer<$resp> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

fake_runtime_service! {
    version(rt::VersionRequest) -> rt::VersionResponse;
    status(rt::StatusRequest) -> rt::StatusResponse;
    update_runtime_config(rt::UpdateRuntimeConfigRequest) -> rt::UpdateRuntimeConfigResponse;
    run_pod_sandbox(rt::RunPodSandboxRequest) -> rt::RunPodSandboxResponse;
    stop_pod_sandbox(rt::StopPodSandboxRequest) -> rt::StopPodSandboxResponse;
    remove_pod_sandbox(rt::RemovePodSandboxRequest) -> rt::RemovePodSandboxResponse;
    pod_sandbox_status(rt::PodSandboxStatusRequest) -> rt::PodSandboxStatusResponse;
    list_pod_sandbox(rt::ListPodSandboxRequest) -> rt::ListPodSandboxResponse;
    create_container(rt::CreateContainerRequest) -> rt::CreateContainerResponse;
    start_container(rt::StartContainerRequest) -> rt::StartContainerResponse;
    stop_container(rt::StopContainerRequest) -> rt::StopContainerResponse;
    remove_container(rt::RemoveContainerRequest) -> rt::RemoveContainerResponse;
    container_status(rt::ContainerStatusRequest) -> rt::ContainerStatusResponse;
    exec_sync(rt::ExecSyncRequest) -> rt::ExecSyncResponse;
    container_logs(rt::ContainerLogsRequest) -> Self::ContainerLogsStream;
    get_container_events(rt::GetEventsRequest) -> Self::GetContainerEventsStream;
}

/// The fake runtime on a unix socket in `dir`; a client of it.
async fn fake_runtime(dir: &Path) -> (FakeRuntime, rkube_runtime::client::RuntimeClient) {
    let fake = FakeRuntime::default();
    let sock = dir.join("runtime.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = RuntimeServiceServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await
            .unwrap();
    });
    let (client, _) = rkube_runtime::client::clients(&sock).await.unwrap();
    (fake, client)
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A TLS client of the endpoint with the CA of `ca_dir`, presenting
/// `identity` (file stem in `id_dir`: `admin` for admin.crt/admin.key) or
/// nothing, verifying the server under `server_name`.
async fn tls_client(
    addr: &str,
    ca_dir: &Path,
    id_dir: &Path,
    identity: Option<&str>,
    server_name: &str,
) -> Result<KubeletClient<Channel>, tonic::transport::Error> {
    let tls = TlsConfig {
        ca_pem: read(ca_dir, "ca.crt"),
        cert_pem: identity.map(|i| read(id_dir, &format!("{i}.crt"))),
        key_pem: identity.map(|i| read(id_dir, &format!("{i}.key"))),
        server_name: server_name.into(),
    };
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(rkube_api::client::client_tls(&tls))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(KubeletClient::new(channel))
}

/// Asks for the logs of pod `ghost`; the answer's code and message
/// (`Ok` never comes: the fake runtime knows no pods).
async fn logs_of_ghost(client: &mut KubeletClient<Channel>) -> (Code, String) {
    match client
        .logs(LogsRequest {
            pod: "ghost".into(),
            ..Default::default()
        })
        .await
    {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// Connects (a handshake refused is an `Err` here) and asks; `None` when
/// the connection itself failed.
async fn try_logs(
    addr: &str,
    ca_dir: &Path,
    id_dir: &Path,
    identity: Option<&str>,
    server_name: &str,
) -> Option<(Code, String)> {
    match tls_client(addr, ca_dir, id_dir, identity, server_name).await {
        Ok(mut c) => Some(logs_of_ghost(&mut c).await),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_and_the_control_plane_reach_the_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    rkube_pki::bootstrap(
        &pki,
        &rkube_pki::Plan {
            replicas: vec![(1, vec!["127.0.0.1".into()])],
            nodes: vec![NODE.into(), "wn2".into()],
            servers: vec!["127.0.0.1:7000".into()],
        },
    )
    .unwrap();
    let (fake, runtime) = fake_runtime(tmp.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // The node's own certificate serves, as the kubelet does with its
    // kubeconfig's credential.
    let ctx = ServerContext {
        runtime,
        node_name: NODE.into(),
        tls: Some(EndpointTls {
            cert_pem: read(&pki, &format!("node-{NODE}.crt")),
            key_pem: read(&pki, &format!("node-{NODE}.key")),
            ca_pem: read(&pki, "ca.crt"),
        }),
    };
    tokio::spawn(async move { serve(listener, ctx).await.unwrap() });
    let lists = || fake.lists.load(Ordering::SeqCst);

    // The admin (system:masters) gets through: the runtime is asked and the
    // pod is not found.
    let mut admin = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin.is_none() {
        admin = try_logs(&addr, &pki, &pki, Some("admin"), NODE).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the endpoint did not answer the admin within 10 s"
        );
        if admin.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (code, msg) = admin.unwrap();
    assert_eq!(code, Code::NotFound, "admin: {msg}");
    assert!(msg.contains("pods \"ghost\" not found"), "admin: {msg}");
    assert_eq!(lists(), 1);

    // A control-plane replica's certificate too.
    let (code, msg) = try_logs(&addr, &pki, &pki, Some("control-plane-1"), NODE)
        .await
        .expect("control-plane-1 connects");
    assert_eq!(code, Code::NotFound, "control-plane-1: {msg}");
    assert_eq!(lists(), 2);

    // A node's credential (this node's own, and another's), kube-proxy's
    // and DNS's: PermissionDenied naming the user, the runtime not asked.
    for who in [
        &format!("node-{NODE}"),
        "node-wn2",
        "kube-proxy",
        "kube-dns",
    ] {
        let (code, msg) = try_logs(&addr, &pki, &pki, Some(who), NODE)
            .await
            .unwrap_or_else(|| panic!("{who} connects (refused by the interceptor, not TLS)"));
        assert_eq!(code, Code::PermissionDenied, "{who}: {msg}");
        assert!(
            msg.contains("may not use the kubelet endpoint"),
            "{who}: {msg}"
        );
    }
    let (_, msg) = try_logs(&addr, &pki, &pki, Some("node-wn2"), NODE)
        .await
        .unwrap();
    assert!(msg.contains("system:node:wn2"), "{msg}");
    assert_eq!(lists(), 2, "a refused caller reached the runtime");

    // No client certificate: refused (the handshake, which requires one,
    // or the interceptor), never served.
    if let Some((code, msg)) = try_logs(&addr, &pki, &pki, None, NODE).await {
        assert!(
            code != Code::NotFound && code != Code::Ok,
            "a client without a certificate was served: {code:?} {msg}"
        );
    }
    assert_eq!(
        lists(),
        2,
        "a client without a certificate reached the runtime"
    );

    // A certificate from another CA (an admin of another cluster): refused.
    let other = tmp.path().join("other");
    rkube_pki::bootstrap(
        &other,
        &rkube_pki::Plan {
            servers: vec!["127.0.0.1:1".into()],
            ..Default::default()
        },
    )
    .unwrap();
    if let Some((code, msg)) = try_logs(&addr, &pki, &other, Some("admin"), NODE).await {
        assert!(
            code != Code::NotFound && code != Code::Ok,
            "another CA's admin was served: {code:?} {msg}"
        );
    }
    assert_eq!(lists(), 2, "another CA's admin reached the runtime");

    // The client verifies the endpoint under the node's name: the same
    // endpoint taken for another node is not trusted.
    assert!(
        try_logs(&addr, &pki, &pki, Some("admin"), "wn2")
            .await
            .is_none(),
        "the node's certificate was accepted for another node's name"
    );

    // Plaintext: no answer from the handler.
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let (code, msg) = logs_of_ghost(&mut KubeletClient::new(ch)).await;
        assert!(
            code != Code::NotFound && code != Code::Ok,
            "a plaintext client was served: {code:?} {msg}"
        );
    }
    assert_eq!(lists(), 2, "a plaintext client reached the runtime");
}
