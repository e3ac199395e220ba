//! The kubelet endpoint end to end, without the kubelet's main loop: a real
//! runtime shim runs the pods' containers (created here directly through
//! the runtime API, labelled as the kubelet labels them), `server::serve`
//! relays to it on 127.0.0.1, a real control plane holds the Node and Pod
//! objects, and the rkubectl binary goes from the Pod to its Node to the
//! endpoint. The pods use the host network, so only root and runc are
//! needed (no CNI); without them a test prints `RKUBE-SKIP: node: <why>`.
//!
//! Binaries come from the workspace's target directory (`cargo build
//! --workspace --bins` first, as scripts/test.sh does); the busybox image
//! from scripts/build-images.sh (cached).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rkube_api::client::Client;
use rkube_api::proto::kubelet::kubelet_client::KubeletClient;
use rkube_api::proto::kubelet::{
    exec_request, exec_response, ExecRequest, ExecStart, TerminalSize,
};
use rkube_api::proto::{
    object::Kind as Body, Container, DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints,
    NodeStatus, ObjectMeta, Pod, PodSpec, Toleration,
};
use rkube_api::Object;
use rkube_integration::{bin, wait_for, Cluster, CmdResult, Options};
use rkube_kubelet::labels;
use rkube_kubelet::server::{serve, ServerContext};
use rkube_runtime::client::{clients, ImageClient, RuntimeClient};
use rkube_runtime::proto as rt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const NODE: &str = "node-a";

// ------------------------------------------------------------------ shim

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (namespaces, mounts and cgroups need it)".into());
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false)
    };
    if !on_path("runc") {
        return Some("runc is not installed (apt-get install runc)".into());
    }
    None
}

/// The project's image archives, built once per run (cached across runs).
fn images_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin_dir = bin("rkube-runtime")
            .parent()
            .expect("a directory")
            .to_path_buf();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
        let out = Command::new(&script)
            .env("RKUBE_BIN_DIR", &bin_dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/build-images.sh");
        assert!(out.status.success(), "scripts/build-images.sh failed");
        PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or(""),
        )
    })
    .clone()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A runtime shim of this test's own (root, runc root, cgroup parent).
struct Shim {
    dir: tempfile::TempDir,
    root: PathBuf,
    runc_root: PathBuf,
    socket: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
    rt: RuntimeClient,
    images: ImageClient,
}

impl Shim {
    async fn start() -> Shim {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let slot = format!("{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("rkube-kubelet-endpoint-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        let runc_root = dir.path().join("runc");
        let socket = dir.path().join("runtime.sock");
        let cgroup_parent = format!("/rkube-kubelet-test-{slot}");
        let log = std::fs::File::create(dir.path().join("shim.log")).expect("shim log");
        let child = Command::new(bin("rkube-runtime"))
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(&root)
            .arg("--runc-root")
            .arg(&runc_root)
            .arg("--cni-data-dir")
            .arg(dir.path().join("ipam"))
            .args(["--cgroup-parent", &cgroup_parent])
            .args(["--netns-prefix", &format!("rkk{slot}-")])
            .args(["--bridge", &format!("rkk{}", std::process::id() % 100_000)])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting rkube-runtime");
        let (rt, images) = wait_for("the shim to answer", Duration::from_secs(60), || {
            let socket = socket.clone();
            async move {
                let (mut rt, images) = clients(&socket).await.ok()?;
                rt.version(rt::VersionRequest::default()).await.ok()?;
                Some((rt, images))
            }
        })
        .await;
        Shim {
            dir,
            root,
            runc_root,
            socket,
            cgroup_parent,
            child: Some(child),
            rt,
            images,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shim.log")).unwrap_or_default()
    }

    async fn load_busybox(&mut self) {
        let path = images_dir().join("busybox.tar");
        self.images
            .load_image(futures::stream::iter([rt::LoadImageRequest {
                source: Some(rt::load_image_request::Source::Path(
                    path.display().to_string(),
                )),
            }]))
            .await
            .expect("LoadImage busybox");
    }
}

impl Drop for Shim {
    /// Removes every sandbox through the shim (containers, mounts, cgroups),
    /// then stops it; whatever is left after that is removed by force.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- shim log ---\n{}", self.log());
        }
        let socket = self.socket.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), async {
                    let (mut rt, _) = clients(&socket).await.ok()?;
                    let items = rt
                        .list_pod_sandbox(rt::ListPodSandboxRequest::default())
                        .await
                        .ok()?
                        .into_inner()
                        .items;
                    for s in items {
                        let _ = rt
                            .remove_pod_sandbox(rt::RemovePodSandboxRequest {
                                pod_sandbox_id: s.id,
                            })
                            .await;
                    }
                    Some(())
                })
                .await;
            });
        })
        .join();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let runc = |args: &[&str]| {
            Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
        };
        if let Ok(out) = runc(&["list", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = runc(&["delete", "--force", id]);
            }
        }
        for pid in rkube_runtime::host::procs::find_by_cmdline(&self.root.display().to_string()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let mut mounted = rkube_runtime::host::mounts::mounts_under(self.dir.path());
        mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounted {
            let _ = rkube_runtime::host::mounts::unmount(&m);
        }
        if let Ok(cg) = rkube_runtime::host::cgroups::Cgroups::detect() {
            let _ = cg.remove_tree(&self.cgroup_parent);
        }
    }
}

// ------------------------------------------------------------------ bed

/// A pod as the runtime knows it.
#[derive(Clone)]
struct PodRef {
    name: String,
    uid: String,
    sandbox: String,
}

struct Bed {
    // Dropped in this order: the shim's pods go before the control plane.
    shim: Shim,
    cluster: Cluster,
    client: Client,
    port: u16,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn pod_object(name: &str, node: &str, containers: &[&str]) -> Object {
    Object::from_body(Body::Pod(Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|c| Container {
                    name: c.to_string(),
                    image: "busybox".into(),
                    ..Default::default()
                })
                .collect(),
            node_name: node.into(),
            // No scheduler touches these pods, and no node controller
            // evicts them from a node that never heartbeats.
            scheduler_name: "store-test".into(),
            tolerations: vec![Toleration {
                operator: "Exists".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn node_object(name: &str, port: Option<u16>) -> Object {
    Object::from_body(Body::Node(Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: vec![
                NodeAddress {
                    r#type: "InternalIP".into(),
                    address: "127.0.0.1".into(),
                },
                NodeAddress {
                    r#type: "Hostname".into(),
                    address: name.into(),
                },
            ],
            daemon_endpoints: port.map(|p| NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: p as i32 }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

impl Bed {
    /// Everything but the pods; None (after a skip line) when the host
    /// cannot run containers.
    async fn start() -> Option<Bed> {
        if let Some(why) = skip_reason() {
            println!("RKUBE-SKIP: node: {why}");
            return None;
        }
        let mut shim = Shim::start().await;
        shim.load_busybox().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(serve(
            listener,
            ServerContext {
                runtime: shim.rt.clone(),
                node_name: NODE.into(),
                tls: None,
            },
        ));
        let cluster = Cluster::start(Options {
            replicas: 1,
            ..Default::default()
        })
        .await;
        let client = cluster.client();
        client
            .create(node_object(NODE, Some(port)))
            .await
            .expect("create node");
        Some(Bed {
            shim,
            cluster,
            client,
            port,
            server,
        })
    }

    /// Creates the Pod object and, unless `in_runtime` is false, its
    /// host-network sandbox in the runtime.
    async fn pod(&mut self, name: &str, node: &str, containers: &[&str]) -> PodRef {
        let created = self
            .client
            .create(pod_object(name, node, containers))
            .await
            .expect("create pod");
        let uid = created
            .metadata()
            .map(|m| m.uid.clone())
            .unwrap_or_default();
        let config = rt::PodSandboxConfig {
            metadata: Some(rt::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            namespace_options: Some(rt::NamespaceOption {
                network: rt::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            labels: HashMap::from([
                (labels::POD_UID.to_string(), uid.clone()),
                (labels::POD_NAME.to_string(), name.to_string()),
                (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            ]),
            ..Default::default()
        };
        let sandbox = self
            .shim
            .rt
            .run_pod_sandbox(rt::RunPodSandboxRequest {
                config: Some(config),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        PodRef {
            name: name.into(),
            uid,
            sandbox,
        }
    }

    /// Creates and starts a container of `pod` as the kubelet would.
    async fn container(
        &mut self,
        pod: &PodRef,
        name: &str,
        attempt: u32,
        command: &[&str],
        mounts: Vec<rt::Mount>,
    ) -> String {
        let config = rt::ContainerConfig {
            metadata: Some(rt::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            image: Some(rt::ImageSpec {
                image: "busybox".into(),
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            mounts,
            labels: HashMap::from([
                (labels::POD_UID.to_string(), pod.uid.clone()),
                (labels::POD_NAME.to_string(), pod.name.clone()),
                (labels::POD_NAMESPACE.to_string(), "default".to_string()),
                (labels::CONTAINER_NAME.to_string(), name.to_string()),
            ]),
            ..Default::default()
        };
        let id = self
            .shim
            .rt
            .create_container(rt::CreateContainerRequest {
                pod_sandbox_id: pod.sandbox.clone(),
                config: Some(config),
                sandbox_config: None,
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        self.shim
            .rt
            .start_container(rt::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("StartContainer");
        id
    }

    async fn wait_exited(&self, id: &str) {
        let rt = self.shim.rt.clone();
        wait_for(
            &format!("container {id} to exit"),
            Duration::from_secs(30),
            || {
                let mut rt = rt.clone();
                let id = id.to_string();
                async move {
                    let s = rt
                        .container_status(rt::ContainerStatusRequest { container_id: id })
                        .await
                        .ok()?
                        .into_inner()
                        .status?;
                    (s.state == rt::ContainerState::ContainerExited as i32).then_some(())
                }
            },
        )
        .await;
    }

    /// rkubectl with the given arguments (and standard input), off the
    /// runtime's threads.
    async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> CmdResult {
        let mut cmd = Command::new(bin("rkubectl"));
        cmd.arg("-s")
            .arg(self.cluster.addresses())
            .args(args)
            .env_remove("RKUBE_SERVER");
        let stdin = stdin.map(|s| s.as_bytes().to_vec());
        tokio::task::spawn_blocking(move || run_with_deadline(cmd, stdin, Duration::from_secs(60)))
            .await
            .expect("rkubectl runner")
    }

    fn kubelet_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Runs a command to its end, failing the test if it takes longer than
/// `timeout` (its output so far is shown).
fn run_with_deadline(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> CmdResult {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running rkubectl");
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for rkubectl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} did not end within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.join().unwrap_or_default()),
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CmdResult {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

fn assert_fails(r: CmdResult, code: i32, stderr: &str) {
    assert_eq!(
        (r.code, r.stderr.trim_end()),
        (code, stderr),
        "stdout:\n{}",
        r.stdout
    );
}

// ------------------------------------------------------------------ logs

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_through_the_kubelet_endpoint() {
    let Some(mut bed) = Bed::start().await else {
        return;
    };
    let web = bed.pod("web", NODE, &["app", "side"]).await;
    // The first instance of `app` ran and failed; the second waits for a
    // file the test creates, so `logs -f` can be shown following it.
    let first = bed
        .container(
            &web,
            "app",
            0,
            &[
                "sh",
                "-c",
                "echo first-1; echo first-2; echo first-3 >&2; exit 1",
            ],
            vec![],
        )
        .await;
    bed.wait_exited(&first).await;
    let trigger = bed.shim.dir.path().join("trigger");
    std::fs::create_dir_all(&trigger).expect("trigger dir");
    let second = bed
        .container(
            &web,
            "app",
            1,
            &[
                "sh",
                "-c",
                "echo started; while [ ! -e /trigger/go ]; do sleep 0.05; done; echo after-trigger",
            ],
            vec![rt::Mount {
                container_path: "/trigger".into(),
                host_path: trigger.display().to_string(),
                readonly: true,
            }],
        )
        .await;
    bed.container(
        &web,
        "side",
        0,
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo side-$i; done; exec sleep 3600",
        ],
        vec![],
    )
    .await;

    // kubectl's error for a pod with several containers and no -c.
    assert_fails(
        bed.kubectl(&["logs", "web"], None).await,
        1,
        "error: a container name must be specified for pod web, choose one of: [app side]",
    );

    // The whole log, once the container has written it.
    let all = wait_for("side's five lines", Duration::from_secs(30), || async {
        let r = bed.kubectl(&["logs", "web", "-c", "side"], None).await;
        (r.code == 0 && r.stdout.contains("side-5")).then_some(r.stdout)
    })
    .await;
    assert_eq!(all, "side-1\nside-2\nside-3\nside-4\nside-5\n");
    // The inline container argument and pod/NAME.
    let r = bed.kubectl(&["logs", "pod/web", "side"], None).await;
    assert_eq!(r.stdout, all, "{}", r.stderr);

    // --tail.
    let r = bed
        .kubectl(&["logs", "web", "-c", "side", "--tail", "2"], None)
        .await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "side-4\nside-5\n"),
        "{}",
        r.stderr
    );
    let r = bed
        .kubectl(&["logs", "web", "-c", "side", "--tail=0"], None)
        .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);

    // --timestamps: RFC 3339 with nanoseconds, then the line.
    let r = bed
        .kubectl(
            &["logs", "web", "-c", "side", "--tail=1", "--timestamps"],
            None,
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (ts, line) = r.stdout.trim_end().split_once(' ').expect("a timestamp");
    assert_eq!(line, "side-5");
    let t = chrono::DateTime::parse_from_rfc3339(ts).expect("an RFC 3339 timestamp");
    assert!(ts.ends_with('Z') && ts.len() == "2024-01-01T00:00:00.123456789Z".len());
    let age = chrono::Utc::now().signed_duration_since(t);
    assert!(age.num_seconds() >= 0 && age.num_seconds() < 600, "{ts}");

    // --since-time: a future time has no lines, a past one all of them.
    let r = bed
        .kubectl(
            &[
                "logs",
                "web",
                "-c",
                "side",
                "--since-time=2999-01-01T00:00:00Z",
            ],
            None,
        )
        .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    let r = bed
        .kubectl(
            &[
                "logs",
                "web",
                "-c",
                "side",
                "--since-time=2000-01-01T00:00:00Z",
            ],
            None,
        )
        .await;
    assert_eq!(r.stdout, all, "{}", r.stderr);
    let r = bed
        .kubectl(
            &["logs", "web", "-c", "side", "--since-time=yesterday"],
            None,
        )
        .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("error: invalid --since-time \"yesterday\" (want RFC 3339): "),
        "{}",
        r.stderr
    );

    // --previous: the failed first instance (stdout and stderr lines); a
    // container that never restarted has none.
    // (Lines of stdout and stderr are copied apart by the runtime, so their
    // relative order is not kept.)
    let r = bed
        .kubectl(&["logs", "web", "-c", "app", "--previous"], None)
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("first-1") || l.starts_with("first-2"))
            .copied()
            .collect::<Vec<_>>(),
        ["first-1", "first-2"]
    );
    lines.sort();
    assert_eq!(lines, ["first-1", "first-2", "first-3"], "{}", r.stdout);
    assert_fails(
        bed.kubectl(&["logs", "web", "-c", "side", "-p"], None).await,
        1,
        "Error from server (NotFound): previous terminated container \"side\" in pod \"web\" not found",
    );

    // -f follows the running instance and ends when it exits.
    let mut follow = Command::new(bin("rkubectl"))
        .arg("-s")
        .arg(bed.cluster.addresses())
        .args(["logs", "web", "-c", "app", "-f"])
        .env_remove("RKUBE_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rkubectl logs -f");
    let (lines_tx, mut lines_rx) = mpsc::unbounded_channel();
    let stdout = follow.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first_line = tokio::time::timeout(Duration::from_secs(30), lines_rx.recv())
        .await
        .expect("logs -f printed nothing within 30 s");
    assert_eq!(first_line.as_deref(), Some("started"));
    // Still following: the container is still running.
    assert!(follow.try_wait().expect("try_wait").is_none());
    std::fs::write(trigger.join("go"), b"").expect("trigger");
    let next = tokio::time::timeout(Duration::from_secs(30), lines_rx.recv())
        .await
        .expect("logs -f did not print the line written after the trigger");
    assert_eq!(next.as_deref(), Some("after-trigger"));
    bed.wait_exited(&second).await;
    let status = wait_for("logs -f to end", Duration::from_secs(30), || {
        let s = follow.try_wait().expect("try_wait");
        async move { s }
    })
    .await;
    let mut err = String::new();
    let _ = follow.stderr.take().map(|mut e| e.read_to_string(&mut err));
    assert!(status.success(), "logs -f failed: {err}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), lines_rx.recv())
            .await
            .expect("stdout closes"),
        None
    );
    // The whole log of the exited instance.
    let r = bed.kubectl(&["logs", "web", "-c", "app"], None).await;
    assert_eq!(r.stdout, "started\nafter-trigger\n", "{}", r.stderr);

    // Unknown container, unknown pod, a pod the node does not run.
    assert_fails(
        bed.kubectl(&["logs", "web", "-c", "nope"], None).await,
        1,
        "Error from server (NotFound): container \"nope\" not found in pod \"web\"",
    );
    assert_fails(
        bed.kubectl(&["logs", "nope"], None).await,
        1,
        "Error from server (NotFound): pods \"nope\" not found",
    );
    bed.client
        .create(pod_object("ghost", NODE, &["c"]))
        .await
        .expect("create ghost");
    assert_fails(
        bed.kubectl(&["logs", "ghost"], None).await,
        1,
        "Error from server (NotFound): pods \"ghost\" not found",
    );

    // A pod not scheduled yet; a node without a kubelet endpoint.
    bed.client
        .create(pod_object("pending", "", &["c"]))
        .await
        .expect("create pending");
    assert_fails(
        bed.kubectl(&["logs", "pending"], None).await,
        1,
        "error: pod \"pending\" is not scheduled to a node yet (spec.nodeName is empty)",
    );
    bed.client
        .create(node_object("node-b", None))
        .await
        .expect("create node-b");
    bed.client
        .create(pod_object("elsewhere", "node-b", &["c"]))
        .await
        .expect("create elsewhere");
    assert_fails(
        bed.kubectl(&["logs", "elsewhere"], None).await,
        1,
        "error: node \"node-b\" has no kubelet endpoint (status.daemonEndpoints.kubeletEndpoint.port \
         is not set): is a kubelet running there?",
    );
}

// ------------------------------------------------------------------ exec

/// Runs `command` through the endpoint with gRPC directly; returns stdout,
/// stderr and the exit code.
async fn exec_direct(
    url: &str,
    pod: &str,
    container: &str,
    command: &[&str],
    tty: bool,
    then: Vec<exec_request::Msg>,
) -> Result<(String, String, i32), tonic::Status> {
    let mut client = KubeletClient::connect(url.to_string())
        .await
        .expect("dial the endpoint");
    let mut msgs = vec![exec_request::Msg::Start(ExecStart {
        namespace: "default".into(),
        pod: pod.into(),
        container: container.into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: true,
    })];
    msgs.extend(then);
    let (tx, rx) = mpsc::channel(16);
    for m in msgs {
        tx.send(ExecRequest { msg: Some(m) }).await.expect("queue");
    }
    let mut answers = client.exec(ReceiverStream::new(rx)).await?.into_inner();
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(a) = answers.message().await? {
        match a.msg {
            Some(exec_response::Msg::Stdout(d)) => out.extend(d),
            Some(exec_response::Msg::Stderr(d)) => err.extend(d),
            Some(exec_response::Msg::Exit(e)) => code = Some(e.exit_code),
            None => {}
        }
    }
    drop(tx);
    Ok((
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code.expect("an exit message"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_through_the_kubelet_endpoint() {
    let Some(mut bed) = Bed::start().await else {
        return;
    };
    let solo = bed.pod("solo", NODE, &["main"]).await;
    let main = bed
        .container(&solo, "main", 0, &["sleep", "3600"], vec![])
        .await;
    let duo = bed.pod("duo", NODE, &["main", "done"]).await;
    bed.container(&duo, "main", 0, &["sleep", "3600"], vec![])
        .await;
    let done = bed.container(&duo, "done", 0, &["true"], vec![]).await;
    bed.wait_exited(&done).await;

    // The only container, no -c.
    let r = bed
        .kubectl(&["exec", "solo", "--", "echo", "hi"], None)
        .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hi\n"), "{}", r.stderr);
    // stdout and stderr apart.
    let r = bed
        .kubectl(
            &[
                "exec",
                "solo",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2",
            ],
            None,
        )
        .await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "out\n", "err\n")
    );
    // -i: standard input reaches the command, and its end ends `cat`.
    let input = "hello\nworld\n".repeat(1000);
    let r = bed
        .kubectl(&["exec", "-i", "solo", "--", "cat"], Some(&input))
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout == input, "cat returned {} bytes", r.stdout.len());
    // Without -i the command's input is empty.
    let r = bed
        .kubectl(&["exec", "solo", "--", "cat"], Some("ignored"))
        .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    // -it with input that is not a terminal: kubectl's warning, then as -i.
    let r = bed
        .kubectl(&["exec", "-it", "solo", "--", "cat"], Some("x\n"))
        .await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (
            0,
            "x\n",
            "Unable to use a TTY - input is not a terminal or the right kind of file\n"
        )
    );
    // The remote exit code is ours.
    assert_fails(
        bed.kubectl(&["exec", "solo", "--", "sh", "-c", "exit 3"], None)
            .await,
        3,
        "command terminated with exit code 3",
    );

    // Errors.
    assert_fails(
        bed.kubectl(&["exec", "duo", "--", "true"], None).await,
        1,
        "error: a container name must be specified for pod duo, choose one of: [main done]",
    );
    assert_fails(
        bed.kubectl(&["exec", "duo", "-c", "nope", "--", "true"], None)
            .await,
        1,
        "Error from server (NotFound): container \"nope\" not found in pod \"duo\"",
    );
    assert_fails(
        bed.kubectl(&["exec", "duo", "-c", "done", "--", "true"], None)
            .await,
        1,
        "Error from server (BadRequest): container \"done\" in pod \"duo\" is not running",
    );
    assert_fails(
        bed.kubectl(&["exec", "nope", "--", "true"], None).await,
        1,
        "Error from server (NotFound): pods \"nope\" not found",
    );
    let r = bed
        .kubectl(&["exec", "duo", "-c", "main", "--", "echo", "ok"], None)
        .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "ok\n"), "{}", r.stderr);

    // -it on a terminal (a pseudo-terminal from script(1)): the command
    // gets a terminal of its own, our terminal's size, and its exit code.
    // The runtime sets the size once it holds the terminal, which can be
    // just after the command started: it waits for it (5 s at most;
    // busybox's `stty size` exits 0 even when the size is 0x0, hence the
    // test of its output).
    const WAIT_SIZE: &str = "i=0; while [ -z \"$(stty size 2>/dev/null)\" ] && [ $i -lt 100 ]; \
                             do sleep 0.05; i=$((i+1)); done";
    let line = format!(
        "stty rows 33 cols 111; {} -s {} exec -it solo -- sh -c '{WAIT_SIZE}; tty; stty size; exit 5'; echo rkubectl-exit=$?; stty -a",
        bin("rkubectl").display(),
        bed.cluster.addresses()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let r = tokio::task::spawn_blocking(move || {
        run_with_deadline(cmd, Some(Vec::new()), Duration::from_secs(60))
    })
    .await
    .expect("script");
    assert_eq!(r.code, 0, "script: {r:?}");
    let (session, after) = r
        .stdout
        .split_once("rkubectl-exit=5\r\n")
        .unwrap_or_else(|| panic!("rkubectl did not exit with 5: {r:?}"));
    assert!(session.contains("/dev/pts/"), "no terminal: {session:?}");
    assert!(
        session.contains("\r\n33 111\r\n"),
        "size not passed: {session:?}"
    );
    assert!(session.contains("command terminated with exit code 5"));
    // Raw mode is over: the local terminal is canonical and echoes again.
    assert!(
        after.contains(" icanon ") && after.contains(" echo "),
        "terminal not restored: {after:?}"
    );
    // A terminal, straight over gRPC: its size comes from `resize`.
    let url = bed.kubelet_url();
    let (out, _, code) = exec_direct(
        &url,
        "solo",
        "",
        &["sh", "-c", "read x; stty size"],
        true,
        vec![
            exec_request::Msg::Resize(TerminalSize {
                width: 100,
                height: 30,
            }),
            exec_request::Msg::Stdin(b"go\n".to_vec()),
        ],
    )
    .await
    .expect("exec with a terminal");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("30 100"), "stty size said {out:?}");

    // The first message must be `start`.
    let mut client = KubeletClient::connect(url.clone()).await.expect("dial");
    let err = client
        .exec(futures::stream::iter([ExecRequest {
            msg: Some(exec_request::Msg::Stdin(b"x".to_vec())),
        }]))
        .await
        .expect_err("stdin first is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A client that goes away takes its command with it.
    let ps = |rt: RuntimeClient, id: String| async move {
        let mut rt = rt;
        let r = rt
            .exec_sync(rt::ExecSyncRequest {
                container_id: id,
                cmd: vec!["ps".into()],
                timeout: 10,
            })
            .await
            .expect("ps")
            .into_inner();
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    let (tx, rx) = mpsc::channel(4);
    tx.send(ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            namespace: "default".into(),
            pod: "solo".into(),
            container: "main".into(),
            command: vec!["sleep".into(), "4321".into()],
            tty: false,
            stdin: false,
        })),
    })
    .await
    .expect("queue");
    let answers = client
        .exec(ReceiverStream::new(rx))
        .await
        .expect("exec sleep")
        .into_inner();
    let rt = bed.shim.rt.clone();
    wait_for("sleep 4321 to run", Duration::from_secs(30), || {
        let (rt, id) = (rt.clone(), main.clone());
        async move { ps(rt, id).await.contains("sleep 4321").then_some(()) }
    })
    .await;
    drop(answers);
    drop(tx);
    drop(client);
    wait_for("sleep 4321 to be killed", Duration::from_secs(30), || {
        let (rt, id) = (rt.clone(), main.clone());
        async move { (!ps(rt, id).await.contains("sleep 4321")).then_some(()) }
    })
    .await;
}
