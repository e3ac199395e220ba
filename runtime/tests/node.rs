//! Node tier: the runtime shim on this host with real namespaces, runc,
//! cgroups, overlayfs and the CNI plugins. Each test runs its own shim
//! (see harness/) and ends by checking that removing its pods left nothing
//! behind. Traffic goes only to pod addresses on the test's own bridge.

mod harness;

use std::time::Duration;

use harness::{eventually, http, Node};
use rkube_runtime::proto::*;

const START: Duration = Duration::from_secs(60);

macro_rules! node_or_skip {
    ($name:expr) => {
        match Node::start($name).await {
            Some(node) => node,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_pod_serves_its_page_on_the_pod_ip() {
    let mut node = node_or_skip!("nginx");
    let pod = node.run_pod(node.pod_config("nginx-pod")).await;
    let status = node.pod_status(&pod).await;
    assert_eq!(
        status.state,
        PodSandboxState::SandboxReady as i32,
        "{status:?}"
    );
    assert_eq!(status.hostname, "nginx-pod");
    let ip = status.network.unwrap_or_default().ip;
    assert!(
        ip.starts_with(&format!("{}.", node.net_prefix)),
        "pod IP {ip} is not in the node's range"
    );

    let mut config = Node::container("nginx-container", "nginx", &[]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
        security_context: None,
    });
    let nginx = node.run(&pod, config).await;
    node.wait_state(&nginx, ContainerState::ContainerRunning, START)
        .await;
    let addr = format!("{ip}:80");
    let page = eventually("nginx to serve on the pod IP", START, || {
        let addr = addr.clone();
        async move {
            match http::get(&addr, "/") {
                Ok((200, body)) => Some(body),
                _ => None,
            }
        }
    })
    .await;
    assert!(page.contains("Welcome to nginx!"), "{page}");

    let listed = node
        .rt
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ContainerState::ContainerRunning as i32);
    // The pod's /etc files are the runtime's.
    let hosts = node
        .exec(
            &nginx,
            &["cat", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"],
        )
        .await;
    let text = String::from_utf8_lossy(&hosts.stdout);
    assert!(text.contains(&format!("{ip}\tnginx-pod")), "{text}");
    assert!(
        text.contains("nameserver 10.96.0.10") && text.contains("options ndots:5"),
        "{text}"
    );
    // The limits are the container's cgroup's (v1 files on this host).
    let cg = rkube_runtime::host::cgroups::Cgroups::detect().unwrap();
    if cg.version == rkube_runtime::host::cgroups::CgroupVersion::V1 {
        let limits = node
            .exec(
                &nginx,
                &[
                    "cat",
                    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                    "/sys/fs/cgroup/cpu/cpu.shares",
                    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                ],
            )
            .await;
        let limits = String::from_utf8_lossy(&limits.stdout);
        let want = (256u64 << 20).to_string();
        assert_eq!(
            limits.split_whitespace().collect::<Vec<_>>(),
            ["50000", "512", want.as_str()],
            "{limits}"
        );
    }

    node.remove_pod(&pod).await;
    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_localhost_and_a_second_bind_fails_clearly() {
    let mut node = node_or_skip!("localhost");
    let host_port = 40001
        + node
            .net_prefix
            .rsplit('.')
            .next()
            .unwrap()
            .parse::<i32>()
            .unwrap()
            * 10;
    let mut config = node.pod_config("two-pod");
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let pod = node.run_pod(config).await;
    let echo = node.run(&pod, Node::container("echo", "echo", &[])).await;
    node.wait_state(&echo, ContainerState::ContainerRunning, START)
        .await;
    // A second container reaches the first over the pod's loopback.
    let client = node
        .run(
            &pod,
            Node::container(
                "client",
                "busybox",
                &[
                    "sh",
                    "-c",
                    "until wget -qO- http://127.0.0.1:8080/hello; do sleep 0.1; done; sleep 3600",
                ],
            ),
        )
        .await;
    let socket = node.socket.clone();
    let logs = eventually("the client to reach echo over localhost", START, || {
        let socket = socket.clone();
        let client = client.clone();
        async move {
            let (mut rt, _) = rkube_runtime::client::clients(&socket).await.ok()?;
            let mut s = rt
                .container_logs(ContainerLogsRequest {
                    container_id: client,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            let mut text = String::new();
            while let Ok(Some(e)) = s.message().await {
                text.push_str(&String::from_utf8_lossy(&e.content));
                text.push('\n');
            }
            text.contains("pod: two-pod").then_some(text)
        }
    })
    .await;
    assert!(logs.contains("client: 127.0.0.1:"), "{logs}");
    // hostPort (portmap): the node's own port reaches the pod.
    let via_host = http::get(&format!("127.0.0.1:{host_port}"), "/").unwrap();
    assert!(via_host.1.contains("pod: two-pod"), "{via_host:?}");

    // Two nginx in one pod: the second cannot bind port 80, and says so.
    let first = node.run(&pod, Node::container("web", "nginx", &[])).await;
    node.wait_state(&first, ContainerState::ContainerRunning, START)
        .await;
    let ip = node.pod_ip(&pod).await;
    let addr = format!("{ip}:80");
    eventually("the first nginx to serve", START, || {
        let addr = addr.clone();
        async move { matches!(http::get(&addr, "/"), Ok((200, _))).then_some(()) }
    })
    .await;
    let second = node
        .run(&pod, Node::container("web-again", "nginx", &[]))
        .await;
    let failed = node
        .wait_state(&second, ContainerState::ContainerExited, START)
        .await;
    assert_eq!(failed.reason, "Error", "{failed:?}");
    assert_ne!(failed.exit_code, 0);
    assert!(
        failed.message.contains("Address already in use"),
        "no clear reason: {failed:?}"
    );
    // The first is unaffected.
    assert!(matches!(http::get(&addr, "/"), Ok((200, _))));
    assert_eq!(
        node.status(&first).await.state,
        ContainerState::ContainerRunning as i32
    );

    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let mut node = node_or_skip!("oom");
    let mut events = node
        .rt
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let pod = node.run_pod(node.pod_config("oom-pod")).await;
    let mut hog = Node::container(
        "hog",
        "busybox",
        &[
            "sh",
            "-c",
            "echo filling; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            cpu_shares: 256,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        security_context: None,
    });
    let hog = node.run(&pod, hog).await;
    let status = node
        .wait_state(&hog, ContainerState::ContainerExited, START)
        .await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_eq!(status.exit_code, 137, "{status:?}");
    assert!(
        status.started_at > 0 && status.finished_at >= status.started_at,
        "{status:?}"
    );
    assert!(!node.logs(&hog).await.contains("survived"));
    // Its life as events: created, started, stopped (in that order).
    let mut kinds = Vec::new();
    tokio::time::timeout(START, async {
        while kinds.len() < 3 {
            let e = events.message().await.unwrap().unwrap();
            if e.container_id == hog {
                kinds.push(e.container_event_type);
            }
        }
    })
    .await
    .expect("three events for the container");
    assert_eq!(
        kinds,
        vec![
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32,
            ContainerEventType::ContainerStoppedEvent as i32
        ]
    );

    // Without a limit the same program completes.
    let fine = node
        .run(
            &pod,
            Node::container(
                "fine",
                "busybox",
                &[
                    "sh",
                    "-c",
                    "x=$(head -c 20000000 /dev/zero | tr '\\0' a); echo ${#x}",
                ],
            ),
        )
        .await;
    let done = node
        .wait_state(&fine, ContainerState::ContainerExited, START)
        .await;
    assert_eq!(
        (done.reason.as_str(), done.exit_code),
        ("Completed", 0),
        "{done:?}"
    );
    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_logs_and_stop() {
    let mut node = node_or_skip!("exec");
    let pod = node.run_pod(node.pod_config("exec-pod")).await;
    let sleeper = node
        .run(
            &pod,
            Node::container(
                "sleeper",
                "busybox",
                &["sh", "-c", "echo hello; echo oops >&2; exec sleep 3600"],
            ),
        )
        .await;
    node.wait_state(&sleeper, ContainerState::ContainerRunning, START)
        .await;

    // ExecSync: output, stderr, exit codes, the pod's hostname.
    let out = node.exec(&sleeper, &["hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "exec-pod");
    let out = node
        .exec(&sleeper, &["sh", "-c", "echo err >&2; exit 3"])
        .await;
    assert_eq!(out.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "err");
    let timed = node
        .rt
        .exec_sync(ExecSyncRequest {
            container_id: sleeper.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(timed.code(), tonic::Code::DeadlineExceeded);

    // Streaming exec with stdin.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            container_id: sleeper.clone(),
            cmd: vec!["sh".into(), "-c".into(), "tr a-z A-Z; echo done >&2".into()],
            tty: false,
            stdin: true,
        })),
    })
    .await
    .unwrap();
    tx.send(ExecRequest {
        msg: Some(exec_request::Msg::Stdin(b"shout\n".to_vec())),
    })
    .await
    .unwrap();
    tx.send(ExecRequest {
        msg: Some(exec_request::Msg::CloseStdin(true)),
    })
    .await
    .unwrap();
    let mut stream = node
        .rt
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let (mut stdout, mut stderr, mut exit) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = stream.message().await.unwrap() {
        match msg.msg {
            Some(exec_response::Msg::Stdout(d)) => stdout.extend(d),
            Some(exec_response::Msg::Stderr(d)) => stderr.extend(d),
            Some(exec_response::Msg::Exit(e)) => exit = Some(e.exit_code),
            None => {}
        }
    }
    drop(tx);
    assert_eq!(String::from_utf8_lossy(&stdout), "SHOUT\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "done\n");
    assert_eq!(exit, Some(0));

    // Exec with a terminal.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            container_id: sleeper.clone(),
            cmd: vec!["sh".into(), "-c".into(), "tty; stty size".into()],
            tty: true,
            stdin: true,
        })),
    })
    .await
    .unwrap();
    tx.send(ExecRequest {
        msg: Some(exec_request::Msg::Resize(TerminalSize {
            width: 100,
            height: 40,
        })),
    })
    .await
    .unwrap();
    let mut stream = node
        .rt
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let (mut screen, mut exit) = (Vec::new(), None);
    while let Some(msg) = stream.message().await.unwrap() {
        match msg.msg {
            Some(exec_response::Msg::Stdout(d)) => screen.extend(d),
            Some(exec_response::Msg::Exit(e)) => exit = Some(e.exit_code),
            _ => {}
        }
    }
    drop(tx);
    let screen = String::from_utf8_lossy(&screen);
    assert!(screen.contains("/dev/pts/"), "{screen:?}");
    assert_eq!(exit, Some(0));

    // Logs: both streams, in order, with tail.
    let logs = node.logs(&sleeper).await;
    // Each stream keeps its order; between the two there is none (two pipes).
    let mut lines: Vec<&str> = logs.lines().collect();
    lines.sort();
    assert_eq!(lines, ["hello", "oops"], "{logs}");
    // tail_lines: 1 is the file's last entry, with its stream.
    let last_of = |tail: i64| {
        let mut rt = node.rt.clone();
        let id = sleeper.clone();
        async move {
            let mut s = rt
                .container_logs(ContainerLogsRequest {
                    container_id: id,
                    tail_lines: tail,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut all = Vec::new();
            while let Some(e) = s.message().await.unwrap() {
                all.push((e.content, e.stream));
            }
            all
        }
    };
    let all = last_of(0).await;
    let tail = last_of(1).await;
    assert_eq!(all.len(), 2);
    assert_eq!(tail.as_slice(), &all[1..]);
    let stream_of = |text: &[u8]| {
        all.iter()
            .find(|(c, _)| c.as_slice() == text)
            .map(|(_, s)| *s)
    };
    assert_eq!(stream_of(b"hello"), Some(LogStream::Stdout as i32));
    assert_eq!(stream_of(b"oops"), Some(LogStream::Stderr as i32));

    // Environment and working directory from the config.
    let mut shell = Node::container(
        "env",
        "busybox",
        &["sh", "-c", "echo $GREETING $HOSTNAME; pwd"],
    );
    shell.envs = vec![KeyValue {
        key: "GREETING".into(),
        value: "hi".into(),
    }];
    shell.working_dir = "/tmp".into();
    let shell = node.run(&pod, shell).await;
    node.wait_state(&shell, ContainerState::ContainerExited, START)
        .await;
    assert_eq!(node.logs(&shell).await, "hi exec-pod\n/tmp\n");

    // Following a log ends when the container exits.
    let counter = node
        .run(
            &pod,
            Node::container(
                "counter",
                "busybox",
                &["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"],
            ),
        )
        .await;
    let mut follow = node
        .rt
        .container_logs(ContainerLogsRequest {
            container_id: counter.clone(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    let drained = tokio::time::timeout(START, async {
        while let Some(e) = follow.message().await.unwrap() {
            lines.push(String::from_utf8_lossy(&e.content).into_owned());
        }
    })
    .await;
    assert!(drained.is_ok(), "following did not end with the container");
    assert_eq!(lines, vec!["1", "2", "3"]);

    // StopContainer: sleep as pid 1 ignores SIGTERM, so SIGKILL after 1 s.
    let t0 = std::time::Instant::now();
    node.rt
        .stop_container(StopContainerRequest {
            container_id: sleeper.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    let stopped = node.status(&sleeper).await;
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 137, "{stopped:?}");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    // Stopping again is fine; exec into a stopped container is refused.
    node.rt
        .stop_container(StopContainerRequest {
            container_id: sleeper.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    let refused = node
        .rt
        .exec_sync(ExecSyncRequest {
            container_id: sleeper.clone(),
            cmd: vec!["true".into()],
            timeout: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // A process that handles SIGTERM exits on it, within the grace period.
    let polite = node
        .run(
            &pod,
            Node::container(
                "polite",
                "busybox",
                &[
                    "sh",
                    "-c",
                    "trap 'exit 0' TERM; while true; do sleep 0.1; done",
                ],
            ),
        )
        .await;
    node.wait_state(&polite, ContainerState::ContainerRunning, START)
        .await;
    node.rt
        .stop_container(StopContainerRequest {
            container_id: polite.clone(),
            timeout: 30,
        })
        .await
        .unwrap();
    let done = node.status(&polite).await;
    assert_eq!(
        (done.exit_code, done.reason.as_str()),
        (0, "Completed"),
        "{done:?}"
    );

    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_errors_and_leaks_nothing() {
    let mut node = node_or_skip!("bad");
    let pod = node.run_pod(node.pod_config("bad-pod")).await;
    let missing = node
        .create(&pod, Node::container("x", "no-such-image:1", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(missing.message().contains("not present"), "{missing:?}");

    let bad = node
        .create(
            &pod,
            Node::container("bad", "busybox", &["/no/such/binary"]),
        )
        .await
        .unwrap();
    let err = node
        .rt
        .start_container(StartContainerRequest {
            container_id: bad.clone(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("/no/such/binary"), "{err:?}");
    let status = node.status(&bad).await;
    assert_eq!(
        (status.state, status.reason.as_str(), status.exit_code),
        (ContainerState::ContainerExited as i32, "StartError", 128),
        "{status:?}"
    );
    assert!(
        status.message.contains("no such file") || status.message.contains("not found"),
        "{status:?}"
    );

    let twice = node
        .create(&pod, Node::container("bad", "busybox", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), tonic::Code::AlreadyExists);
    let unknown = node
        .rt
        .container_status(ContainerStatusRequest {
            container_id: "ffffffffffff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // Removing what does not exist is fine (CRI's idempotence).
    node.rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: "0123456789ab".into(),
        })
        .await
        .unwrap();
    node.rt
        .remove_container(RemoveContainerRequest {
            container_id: "0123456789ab".into(),
        })
        .await
        .unwrap();
    let no_meta = node
        .rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(PodSandboxConfig::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(no_meta.code(), tonic::Code::InvalidArgument);

    // A stopped sandbox takes no new containers.
    node.rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let status = node.pod_status(&pod).await;
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);
    assert!(status.network.unwrap_or_default().ip.is_empty());
    let late = node
        .create(&pod, Node::container("late", "busybox", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_load_pull_and_remove() {
    use harness::registry::Registry;
    use rkube_runtime::images::builder::{build, BuildImageArgs};
    use rkube_runtime::images::registry::{Credentials, RegistryClient, OCI_MANIFEST};

    let Some(mut node) = Node::start_with("images", false).await else {
        return;
    };
    let Some(registry) = Registry::start().await else {
        return;
    };
    let Some(busybox) = harness::which("busybox") else {
        println!("RKUBE-SKIP: node: busybox is not installed (apt-get install busybox-static)");
        return;
    };
    let listed = node
        .images
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.images.is_empty());

    // LoadImage from a path on the node...
    let archives = harness::images_dir();
    let loaded = node
        .images
        .load_image(tokio_stream::iter(vec![LoadImageRequest {
            source: Some(load_image_request::Source::Path(
                archives.join("busybox.tar").display().to_string(),
            )),
        }]))
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].repo_tags,
        vec!["docker.io/library/busybox:latest".to_string()]
    );
    // ...and streamed in chunks.
    let bytes = std::fs::read(archives.join("echo.tar")).unwrap();
    let chunks: Vec<LoadImageRequest> = bytes
        .chunks(64 * 1024)
        .map(|c| LoadImageRequest {
            source: Some(load_image_request::Source::Chunk(c.to_vec())),
        })
        .collect();
    let echo = node
        .images
        .load_image(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(
        echo[0].repo_tags,
        vec!["docker.io/library/echo:latest".to_string()]
    );
    let status = node
        .images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "echo".into(),
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.image.unwrap().id, echo[0].id);
    assert!(status.info["config"].contains("rkube-echo"));
    let absent = node
        .images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "nginx".into(),
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(absent.image.is_none());

    // Push an image of our own to the registry on loopback, then pull it.
    let layer = node.dir.path().join("hello-layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::copy(&busybox, layer.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", layer.join("bin/sh")).unwrap();
    let name = format!("{}/rkube/hello:v1", registry.addr);
    let image = build(&BuildImageArgs {
        name: name.clone(),
        layers: vec![layer],
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from the registry".into(),
        ],
        env: vec!["PATH=/bin".into()],
        out: node.dir.path().join("unused.tar"),
        ..Default::default()
    })
    .unwrap();
    RegistryClient::new(Credentials::default())
        .push(
            &image.reference,
            &image.blobs(),
            &image.manifest,
            OCI_MANIFEST,
        )
        .await
        .unwrap();
    let pulled = node
        .images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
            }),
            auth: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(pulled, rkube_runtime::images::digest::sha256(&image.config));
    let by_digest = format!("{}/rkube/hello@{}", registry.addr, image.manifest_digest);
    let again = node
        .images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: by_digest.clone(),
            }),
            auth: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(again, pulled);
    let missing = node
        .images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: format!("{}/rkube/nope:v1", registry.addr),
            }),
            auth: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let closed = node
        .images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: "127.0.0.1:1/x:y".into(),
            }),
            auth: None,
        })
        .await
        .unwrap_err();
    assert!(closed.message().contains("connecting"), "{closed:?}");

    // The pulled image runs.
    let pod = node.run_pod(node.pod_config("pulled")).await;
    let hello = node
        .run(&pod, Node::container("hello", &by_digest, &[]))
        .await;
    node.wait_state(&hello, ContainerState::ContainerExited, START)
        .await;
    assert_eq!(node.logs(&hello).await, "hello from the registry\n");

    // Removal: by name; the layers a container uses stay until it goes.
    node.images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
            }),
        })
        .await
        .unwrap();
    node.images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
            }),
        })
        .await
        .unwrap();
    let left = node
        .images
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(node.logs(&hello).await.contains("hello"));
    node.assert_clean().await;
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_shim_adopts_running_containers() {
    let mut node = node_or_skip!("restart");
    let pod = node.run_pod(node.pod_config("restart-pod")).await;
    let echo = node.run(&pod, Node::container("echo", "echo", &[])).await;
    let ip = node.pod_ip(&pod).await;
    let addr = format!("{ip}:8080");
    let answer = eventually("echo to answer", START, || {
        let addr = addr.clone();
        async move {
            match http::get(&addr, "/") {
                Ok((200, body)) => Some(body),
                _ => None,
            }
        }
    })
    .await;
    assert!(answer.contains("pod: restart-pod"), "{answer}");
    // The host reaches the pod from the bridge's address, without NAT.
    assert!(
        answer.contains(&format!("client: {}.1:", node.net_prefix)),
        "{answer}"
    );
    let before = node.status(&echo).await;
    let short = node
        .run(
            &pod,
            Node::container("short", "busybox", &["sh", "-c", "sleep 1; exit 7"]),
        )
        .await;

    // SIGKILL: the shim has no chance to do anything.
    node.kill_shim();
    assert!(
        matches!(http::get(&addr, "/"), Ok((200, _))),
        "the pod stopped with the shim"
    );
    // The short container ends while no shim runs; its monitor records it.
    let root = node.root.display().to_string();
    let short_id = short.clone();
    eventually("the short container's monitor to finish", START, || {
        let (root, short_id) = (root.clone(), short_id.clone());
        async move {
            rkube_runtime::host::procs::find_by_cmdline(&format!("{root}/containers/{short_id}"))
                .is_empty()
                .then_some(())
        }
    })
    .await;

    node.spawn_shim().await;
    let after = node.status(&echo).await;
    assert_eq!(after.state, ContainerState::ContainerRunning as i32);
    assert_eq!(
        (after.pid, after.started_at),
        (before.pid, before.started_at),
        "the container was restarted"
    );
    let pod_status = node.pod_status(&pod).await;
    assert_eq!(pod_status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(pod_status.network.unwrap_or_default().ip, ip);
    let short = node.status(&short).await;
    assert_eq!(
        (short.exit_code, short.reason.as_str()),
        (7, "Error"),
        "{short:?}"
    );
    let out = node.exec(&echo, &["cat", "/etc/hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "restart-pod");
    assert!(node.logs(&echo).await.contains("rkube-echo listening"));

    // A graceful stop of the shim also leaves containers alone.
    let pid = node.shim_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    node.kill_shim();
    assert!(matches!(http::get(&addr, "/"), Ok((200, _))));
    node.spawn_shim().await;

    // The adopted container is stopped through the new shim, with an event.
    let mut events = node
        .rt
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    node.rt
        .stop_container(StopContainerRequest {
            container_id: echo.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    let stopped = node.status(&echo).await;
    assert_eq!(
        (stopped.state, stopped.exit_code),
        (ContainerState::ContainerExited as i32, 137)
    );
    let event = tokio::time::timeout(START, async {
        loop {
            let e = events.message().await.unwrap().unwrap();
            if e.container_id == echo
                && e.container_event_type == ContainerEventType::ContainerStoppedEvent as i32
            {
                return e;
            }
        }
    })
    .await
    .expect("a stopped event");
    assert_eq!(event.pod_sandbox_id, pod);
    assert!(http::get(&addr, "/").is_err());
    node.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pods_come_and_go_leaving_nothing_behind() {
    let mut node = node_or_skip!("cycles");
    let host_port = 40000
        + (node
            .net_prefix
            .rsplit('.')
            .next()
            .unwrap()
            .parse::<i32>()
            .unwrap())
            * 10;
    for i in 0..50 {
        let mut config = node.pod_config(&format!("cycle-{i}"));
        config.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            host_port,
            host_ip: String::new(),
        }];
        let pod = node.run_pod(config).await;
        let c = node
            .run(
                &pod,
                Node::container("sleeper", "busybox", &["sleep", "3600"]),
            )
            .await;
        if i == 0 {
            // The audit sees every kind of thing a live pod holds.
            let live = node.leftovers().join("\n");
            for kind in [
                "netns ",
                "veth ",
                "cgroup ",
                "mount ",
                "host-local allocation ",
                "process ",
                "runc container ",
                "iptables ",
            ] {
                assert!(
                    live.contains(kind),
                    "the audit misses {kind:?} of a live pod:\n{live}"
                );
            }
        }
        if i % 10 == 0 {
            let out = node.exec(&c, &["hostname"]).await;
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("cycle-{i}")
            );
        }
        node.remove_pod(&pod).await;
        let left = node.leftovers();
        assert!(left.is_empty(), "cycle {i} left: {left:#?}");
    }
    node.assert_clean().await;
}
