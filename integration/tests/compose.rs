//! The compose cluster end to end (docker-compose.yml, docs/compose.md):
//! the images built by scripts/build-cluster-images.sh from the debug
//! binaries the test tier already has, the cluster brought up under a project
//! name and a /24 of its own, then the seed's walkthrough with rkubectl from
//! the host (nginx pod answering on its pod IP from another node container,
//! RC scaled to 6 and 2, RS with matchExpressions, both DaemonSets on
//! labelled nodes, a Service reached by name through the cluster DNS from a
//! busybox pod, -o wide/yaml, --show-labels, -l, describe, delete -f), a
//! LoadBalancer Service reached from the host at its pool address, and the
//! worker announcing it killed with `docker kill` (the address answers again
//! through another worker, its RC pods recreated on the other
//! nodes, DaemonSet pods not duplicated) and brought back with `docker
//! start` (Ready again, its stale pods cleaned). The project is torn down at
//! the end, also on failure (Drop).
//!
//! The cluster is secure, as `scripts/up.sh` makes it: the PKI comes from
//! `scripts/compose-pki.sh` (a directory of the test's own), each container
//! mounts only its own credentials, and rkubectl and the Python examples use
//! the admin's kubeconfig. Checked on the real cluster: strangers (plaintext,
//! TLS without credentials) are refused, wn1's credential cannot change a
//! pod bound to wn2, `logs` and `exec` reach the kubelets over TLS, and an
//! extra node added with `scripts/add-node.sh` joins with its own credential.
//!
//! Skips (`RKUBE-SKIP: compose: <why>`) only when Docker is absent.

use rkube_api::client::Client;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::DeleteRequest;
use rkube_integration::nodes::http_get_now;
use rkube_integration::{bin, seed_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest(name: &str) -> String {
    seed_dir()
        .join("manifests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Polls `f` every 250 ms until it returns `Some` or `timeout` passes.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Why the suite cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
    {
        Err(_) => Some("docker is not installed".into()),
        Ok(o) if !o.status.success() => Some(format!(
            "the Docker daemon does not answer: {}",
            text(&o).trim()
        )),
        Ok(_) => None,
    }
}

/// `docker compose` (v2) when it is there, else Debian's `docker-compose`.
fn compose_tool() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// One compose project; `down -v` on drop.
struct Compose {
    tool: Vec<String>,
    project: String,
    net: String,
    image: String,
    /// The cluster's PKI (scripts/compose-pki.sh), removed after `down`.
    pki: tempfile::TempDir,
}

impl Compose {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.tool[0]);
        c.args(&self.tool[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(repo().join("docker-compose.yml"))
            .args(args)
            .env("RKUBE_NET", &self.net)
            .env("RKUBE_IMAGE", &self.image)
            .env("RKUBE_PKI", self.pki.path())
            // Names outside the cluster are not forwarded anywhere.
            .env("RKUBE_DNS_UPSTREAM", "127.0.0.1");
        c
    }

    /// The kubeconfig of `who` (admin, admin-token, node-wn1, ...).
    fn kubeconfig(&self, who: &str) -> PathBuf {
        rkube_pki::kubeconfig_path(self.pki.path(), who)
    }

    /// How `who` connects.
    fn connect_config(&self, who: &str) -> rkube_api::kubeconfig::ConnectConfig {
        rkube_api::kubeconfig::load_connect_config(&self.kubeconfig(who))
            .unwrap_or_else(|e| panic!("{who}'s kubeconfig: {e}"))
    }

    fn compose(&self, args: &[&str]) -> Output {
        run(&mut self.cmd(args))
    }

    fn servers(&self) -> String {
        (11..=13)
            .map(|i| format!("{}.{i}:7000", self.net))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The container of a service.
    fn container(&self, service: &str) -> String {
        let o = self.compose(&["ps", "-q", service]);
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(!id.is_empty(), "no container for {service}: {}", text(&o));
        id
    }

    fn health(&self, id: &str) -> String {
        let o = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            id,
        ]));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Waits until every container's health check passes (what `docker
    /// compose up --wait` waits for).
    fn wait_healthy(&self) {
        let services = ["cp1", "cp2", "cp3", "wn1", "wn2", "wn3", "dns1", "dns2"];
        let ids: Vec<String> = services.iter().map(|s| self.container(s)).collect();
        poll("every container healthy", Duration::from_secs(240), || {
            ids.iter()
                .all(|id| self.health(id) == "running/healthy")
                .then_some(())
        });
    }

    /// rkubectl as the admin (its kubeconfig alone says where and how).
    fn rkubectl(&self, args: &[&str]) -> Output {
        self.rkubectl_as("admin", args)
    }

    fn rkubectl_as(&self, who: &str, args: &[&str]) -> Output {
        run(Command::new(bin("rkubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig(who))
            .args(args)
            .env_remove("RKUBE_SERVER")
            .env_remove("RKUBECONFIG"))
    }

    /// rkubectl that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.rkubectl(args);
        assert!(o.status.success(), "rkubectl {args:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The pods of the default namespace, as JSON objects (None when the
    /// API did not answer).
    fn pods(&self) -> Option<Vec<Value>> {
        let o = self.rkubectl(&["get", "pods", "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        Some(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// `(name, node, ip, phase, terminating)` of every pod whose name starts
    /// with `prefix`.
    fn pods_of(&self, prefix: &str) -> Option<Vec<PodRow>> {
        Some(
            self.pods()?
                .iter()
                .filter(|p| {
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with(prefix)
                })
                .map(|p| PodRow {
                    name: p["metadata"]["name"].as_str().unwrap_or("").into(),
                    node: p["spec"]["nodeName"].as_str().unwrap_or("").into(),
                    ip: p["status"]["podIP"].as_str().unwrap_or("").into(),
                    phase: p["status"]["phase"].as_str().unwrap_or("").into(),
                    terminating: !p["metadata"]["deletionTimestamp"].is_null(),
                })
                .collect(),
        )
    }

    /// Waits until exactly `n` live pods named `prefix*` are Running (with
    /// an IP); returns them.
    fn running(&self, prefix: &str, n: usize, timeout: Duration) -> Vec<PodRow> {
        poll(&format!("{n} running {prefix} pods"), timeout, || {
            let live: Vec<PodRow> = self
                .pods_of(prefix)?
                .into_iter()
                .filter(|p| !p.terminating)
                .collect();
            (live.len() == n
                && live
                    .iter()
                    .all(|p| p.phase == "Running" && !p.ip.is_empty()))
            .then_some(live)
        })
    }

    fn node_ready(&self, node: &str) -> Option<bool> {
        let o = self.rkubectl(&["get", "node", node, "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let ready = v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?["status"]
            == "True";
        Some(ready)
    }

    /// An HTTP GET from inside another container (its busybox wget).
    fn http_from(&self, container: &str, url: &str) -> Option<String> {
        let o =
            run(Command::new("docker").args(["exec", container, "busybox", "wget", "-qO-", url]));
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

#[derive(Clone, Debug)]
struct PodRow {
    name: String,
    node: String,
    ip: String,
    phase: String,
    terminating: bool,
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let o = self.compose(&["ps"]);
            eprintln!("--- compose ps ---\n{}", text(&o));
            let o = self.compose(&["logs", "--no-color", "--tail=60"]);
            eprintln!("--- compose logs (last 60 lines each) ---\n{}", text(&o));
        }
        let o = self.compose(&["down", "-v", "--remove-orphans", "-t", "2"]);
        if !o.status.success() {
            eprintln!("compose down failed: {}", text(&o));
        }
    }
}

/// Takes down the projects of earlier runs of this test whose process is
/// gone (killed before its Drop ran), so their networks and volumes do not
/// pile up.
fn remove_stale_projects(tool: &[String]) {
    let o = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ]));
    let mut projects: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|p| p.starts_with("rkube-e2e-"))
        .map(String::from)
        .collect();
    projects.sort();
    projects.dedup();
    for p in projects {
        let Some(pid) = p.split('-').nth(2).and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("compose: removing the stale project {p}");
        let _ = run(Command::new(&tool[0])
            .args(&tool[1..])
            .args(["-p", &p, "-f"])
            .arg(repo().join("docker-compose.yml"))
            .args(["down", "-v", "--remove-orphans", "-t", "1"]));
    }
}

/// Where the test tier's binaries are (the debug ones scripts/test.sh built).
fn bin_dir() -> PathBuf {
    bin("control-plane").parent().unwrap().to_path_buf()
}

/// Builds the images (debug binaries: no compile) and brings the cluster up
/// on a /24 no other Docker network uses; waits until every container is
/// healthy (all nodes Ready, DNS serving).
fn up() -> Option<Compose> {
    if let Some(why) = skip_reason() {
        println!("RKUBE-SKIP: compose: {why}");
        return None;
    }
    let t = Instant::now();
    let image = "rkube:e2e".to_string();
    let bin_dir = bin_dir();
    let o = run(Command::new(repo().join("scripts/build-cluster-images.sh"))
        .env("RKUBE_BIN_DIR", &bin_dir)
        .env("RKUBE_IMAGE", &image)
        .stderr(Stdio::inherit()));
    assert!(o.status.success(), "scripts/build-cluster-images.sh failed");
    println!("compose: images ready in {:?}", t.elapsed());

    let tool = compose_tool();
    remove_stale_projects(&tool);
    let pid = std::process::id();
    let mut attempt = 0;
    let c = loop {
        let net = format!("172.29.{}", 20 + (pid + attempt) % 200);
        // The PKI as scripts/up.sh makes it, for this /24.
        let pki = tempfile::tempdir().unwrap();
        let o = run(Command::new(repo().join("scripts/compose-pki.sh"))
            .env("RKUBE_BIN_DIR", &bin_dir)
            .env("RKUBE_PKI", pki.path())
            .env("RKUBE_NET", &net));
        assert!(o.status.success(), "scripts/compose-pki.sh: {}", text(&o));
        let c = Compose {
            tool: tool.clone(),
            project: format!("rkube-e2e-{pid}-{attempt}"),
            net,
            image: image.clone(),
            pki,
        };
        let t = Instant::now();
        let o = c.compose(&["up", "-d"]);
        if o.status.success() {
            println!(
                "compose: `up -d` of {} on {}.0/24 took {:?}",
                c.project,
                c.net,
                t.elapsed()
            );
            break c;
        }
        let out = text(&o);
        attempt += 1;
        // Another network holds that /24: try the next one.
        if out.contains("overlap") && attempt < 8 {
            drop(c);
            continue;
        }
        panic!("compose up failed: {out}");
    };
    let t = Instant::now();
    c.wait_healthy();
    println!(
        "compose: all containers healthy {:?} after `up`",
        t.elapsed()
    );
    Some(c)
}

#[test]
fn compose_cluster_walkthrough_and_node_loss() {
    let Some(c) = up() else { return };
    let suite = Instant::now();
    let long = Duration::from_secs(120);

    // The nodes, Ready, with their compose addresses.
    let nodes = c.ok(&["get", "nodes", "-o", "wide"]);
    for (n, ip) in [("wn1", 21), ("wn2", 22), ("wn3", 23)] {
        let row = nodes
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("no node {n}:\n{nodes}"));
        assert!(row.contains(" Ready "), "{row}");
        assert!(row.contains(&format!("{}.{ip}", c.net)), "{row}");
    }
    let dns = c.ok(&["get", "svc", "kube-dns", "-n", "kube-system"]);
    assert!(dns.contains("10.96.0.10"), "{dns}");

    // Closed to strangers; each credential does only what it may.
    credentials_mounted(&c);
    strangers_refused(&c);
    node_confined(&c);
    extra_node(&c, &bin_dir());

    // The seed's pod: Running with an IP and a node in -o wide; its nginx
    // answers on the pod IP from another node's container.
    let out = c.ok(&["create", "-f", &manifest("nginx-pod.yml")]);
    assert!(out.contains("pod/nginx-pod created"), "{out}");
    let pod = c.running("nginx-pod", 1, long).remove(0);
    let wide = c.ok(&["get", "pod", "nginx-pod", "-o", "wide"]);
    assert!(
        wide.contains("Running") && wide.contains(&pod.ip) && wide.contains(&pod.node),
        "{wide}"
    );
    let other = ["wn1", "wn2", "wn3"]
        .into_iter()
        .find(|n| *n != pod.node)
        .unwrap();
    let other_id = c.container(other);
    let page = poll("nginx on its pod IP from another node", long, || {
        c.http_from(&other_id, &format!("http://{}/", pod.ip))
    });
    assert!(page.contains("Welcome to nginx!"), "{page}");
    println!(
        "compose: nginx-pod on {} at {}, answered from {other}",
        pod.node, pod.ip
    );
    let yaml = c.ok(&["get", "pod", "nginx-pod", "-o", "yaml"]);
    assert!(yaml.contains(&format!("podIP: {}", pod.ip)), "{yaml}");
    let labels = c.ok(&["get", "pods", "--show-labels"]);
    assert!(labels.contains("app=nginx,tier=dev"), "{labels}");
    let described = c.ok(&["describe", "pod", "nginx-pod"]);
    for want in ["Name:", "nginx-pod", &pod.node, &pod.ip, "nginx-container"] {
        assert!(described.contains(want), "no {want:?} in:\n{described}");
    }

    // The ReplicationController: 3, scaled to 6, then 2.
    let out = c.ok(&["create", "-f", &manifest("nginx-rc.yml")]);
    assert!(
        out.contains("replicationcontroller/nginx-rc created"),
        "{out}"
    );
    c.running("nginx-rc-", 3, long);
    c.ok(&["scale", "rc", "nginx-rc", "--replicas=6"]);
    let six = c.running("nginx-rc-", 6, long);
    let spread: std::collections::BTreeSet<&str> = six.iter().map(|p| p.node.as_str()).collect();
    println!("compose: 6 RC pods on {spread:?}");
    let rc = c.ok(&["get", "rc", "nginx-rc", "-o", "wide"]);
    assert!(
        rc.contains("nginx-rc") && rc.contains("app=nginx-app"),
        "{rc}"
    );
    c.ok(&["scale", "rc", "nginx-rc", "--replicas=2"]);
    c.running("nginx-rc-", 2, long);
    let by_label = c.ok(&["get", "pods", "-l", "app=nginx-app", "--no-headers"]);
    assert!(
        by_label
            .lines()
            .filter(|l| l.starts_with("nginx-rc-"))
            .count()
            >= 2,
        "{by_label}"
    );

    // The ReplicaSet with matchExpressions.
    let out = c.ok(&["create", "-f", &manifest("nginx-rs.yml")]);
    assert!(out.contains("replicaset.apps/nginx-rs created"), "{out}");
    c.running("nginx-rs-", 3, long);
    let frontend = c.ok(&["get", "pods", "-l", "tier=frontend", "--no-headers"]);
    assert_eq!(
        frontend
            .lines()
            .filter(|l| l.starts_with("nginx-rs-"))
            .count(),
        3,
        "{frontend}"
    );
    let described = c.ok(&["describe", "rs", "nginx-rs"]);
    assert!(described.contains("nginx-rs"), "{described}");

    // Both DaemonSets: nginx-ds on the nodes labelled node=server only,
    // fluentd-ds on every node (its image is not in any node's store, so
    // its pods wait in image pull errors, placed all the same).
    let out = c.ok(&["label", "nodes", "wn1", "wn2", "node=server"]);
    assert!(out.contains("node/wn1 labeled"), "{out}");
    c.ok(&["create", "-f", &manifest("nginx-ds-subsetnodes.yml")]);
    c.ok(&["create", "-f", &manifest("fluentds.yml")]);
    let ds = c.running("nginx-ds-", 2, long);
    let mut ds_nodes: Vec<&str> = ds.iter().map(|p| p.node.as_str()).collect();
    ds_nodes.sort();
    assert_eq!(ds_nodes, ["wn1", "wn2"]);
    poll("a fluentd-ds pod on each node", long, || {
        let mut n: Vec<String> = c
            .pods_of("fluentd-ds-")?
            .into_iter()
            .map(|p| p.node)
            .collect();
        n.sort();
        (n == ["wn1", "wn2", "wn3"]).then_some(())
    });
    let dsl = c.ok(&["get", "ds"]);
    assert!(
        dsl.contains("nginx-ds") && dsl.contains("fluentd-ds"),
        "{dsl}"
    );

    // A Service over the nginx pod, reached by name from a busybox pod
    // through the cluster DNS (10.96.0.10) and kube-proxy.
    let tmp = tempfile::tempdir().unwrap();
    let svc = tmp.path().join("svc.yml");
    std::fs::write(
        &svc,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx-svc\nspec:\n  selector:\n    app: nginx\n  ports:\n  - port: 80\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: client\n    image: busybox\n    command: [sleep, \"3600\"]\n",
    )
    .unwrap();
    c.ok(&["create", "-f", svc.to_str().unwrap()]);
    c.running("client", 1, long);
    let page = poll("http://nginx-svc/ from the client pod", long, || {
        let o = c.rkubectl(&["exec", "client", "--", "wget", "-qO-", "http://nginx-svc/"]);
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success() && t.contains("Welcome to nginx!")).then_some(t)
    });
    assert!(page.contains("Welcome to nginx!"));
    let lookup = c.rkubectl(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "nginx-svc.default.svc.cluster.local",
    ]);
    let svc_ip = c.ok(&["get", "svc", "nginx-svc", "-o", "json"]);
    let svc_ip: Value = serde_json::from_str(&svc_ip).unwrap();
    let svc_ip = svc_ip["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(
        text(&lookup).contains(&svc_ip),
        "nslookup did not answer {svc_ip}: {}",
        text(&lookup)
    );
    println!("compose: nginx-svc ({svc_ip}) reached by name from a pod");

    // A LoadBalancer Service over the RC's pods: an address of the pool
    // (.200-.250), announced by one worker, reached from the host.
    let lb = tmp.path().join("lb.yml");
    std::fs::write(
        &lb,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx-lb\nspec:\n  type: LoadBalancer\n  selector:\n    app: nginx-app\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    c.ok(&["create", "-f", lb.to_str().unwrap()]);
    let lb_ip = poll("nginx-lb gets an external IP", long, || {
        let o = c.rkubectl(&["get", "svc", "nginx-lb", "-o", "json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    let last: u8 = lb_ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        lb_ip.starts_with(&format!("{}.", c.net)) && (200..=250).contains(&last),
        "{lb_ip} is not in the pool"
    );
    let lb_url = format!("http://{lb_ip}/");
    poll("nginx-lb answering from the host", long, || {
        http_get_now(&lb_url)
            .ok()
            .filter(|p| p.contains("Welcome to nginx!"))
    });
    let row = c.ok(&["get", "svc", "nginx-lb"]);
    assert!(row.contains(&lb_ip), "EXTERNAL-IP: {row}");
    let lb_holder = poll("the nginx-lb address announced", long, || {
        lease_holder(&c, &lb_ip)
    });
    println!("compose: nginx-lb at {lb_ip} (announced by {lb_holder}) reached from the host");

    // The Python gRPC examples against the cluster.
    python_scripts(&c, tmp.path());

    // A worker node powered off: `docker kill`. Its RC pods are recreated on
    // the other nodes; DaemonSet pods are not duplicated.
    c.ok(&["scale", "rc", "nginx-rc", "--replicas=6"]);
    let six = c.running("nginx-rc-", 6, long);
    // The worker announcing nginx-lb's address: its loss moves that too.
    let victim = lb_holder.clone();
    let victim_id = c.container(&victim);
    let lost: Vec<String> = six
        .iter()
        .filter(|p| p.node == victim)
        .map(|p| p.name.clone())
        .collect();
    let killed = Instant::now();
    let o = run(Command::new("docker").args(["kill", &victim_id]));
    assert!(o.status.success(), "docker kill: {}", text(&o));
    let new_holder = poll("nginx-lb announced by another node", long, || {
        lease_holder(&c, &lb_ip).filter(|h| *h != victim)
    });
    poll("nginx-lb answering from the host again", long, || {
        http_get_now(&lb_url)
            .ok()
            .filter(|p| p.contains("Welcome to nginx!"))
    });
    println!(
        "compose: nginx-lb taken over by {new_holder}, answering {:?} after docker kill of {victim}",
        killed.elapsed()
    );
    poll(&format!("{victim} not Ready"), long, || {
        (!c.node_ready(&victim)?).then_some(())
    });
    println!(
        "compose: {victim} not Ready {:?} after docker kill",
        killed.elapsed()
    );
    let moved = poll("6 RC pods Running on the other nodes", long, || {
        let live: Vec<PodRow> = c
            .pods_of("nginx-rc-")?
            .into_iter()
            .filter(|p| !p.terminating && p.node != victim)
            .collect();
        (live.len() == 6 && live.iter().all(|p| p.phase == "Running")).then_some(live)
    });
    println!(
        "compose: {} RC pods of {victim} replaced {:?} after docker kill",
        lost.len(),
        killed.elapsed()
    );
    assert!(moved.iter().all(|p| !lost.contains(&p.name)));
    let ds_now = c.pods_of("nginx-ds-").unwrap();
    for n in ["wn1", "wn2"] {
        let live = ds_now
            .iter()
            .filter(|p| p.node == n && !p.terminating)
            .count();
        assert!(live <= 1, "nginx-ds duplicated on {n}: {ds_now:?}");
    }
    assert!(
        ds_now.iter().all(|p| p.node == "wn1" || p.node == "wn2"),
        "{ds_now:?}"
    );

    // Powered on again: Ready, and nothing stale left on it.
    let started = Instant::now();
    let o = run(Command::new("docker").args(["start", &victim_id]));
    assert!(o.status.success(), "docker start: {}", text(&o));
    poll(&format!("{victim} Ready again"), long, || {
        c.node_ready(&victim)?.then_some(())
    });
    println!(
        "compose: {victim} Ready {:?} after docker start",
        started.elapsed()
    );
    poll("no terminating pods left", long, || {
        let all = c.pods_of("")?;
        all.iter().all(|p| !p.terminating).then_some(())
    });
    c.running("nginx-rc-", 6, long);

    // The control-plane leader killed while a client writes: the others
    // answer, nothing acknowledged is lost, controllers go on, and the
    // replica catches up once it is started again.
    leader_loss(&c, tmp.path());

    // The whole cluster restarted (`compose restart`): every object is
    // still there, the nodes are Ready and the pods run again.
    let t = Instant::now();
    let o = c.compose(&["restart", "-t", "2"]);
    assert!(o.status.success(), "compose restart: {}", text(&o));
    c.wait_healthy();
    println!("compose: restarted, all healthy again in {:?}", t.elapsed());
    c.running("nginx-rc-", 4, long);
    c.running("nginx-rs-", 3, long);
    c.running("nginx-ds-", 2, long);

    // `down` then `up` with the volumes kept: the containers are new, the
    // state is the volumes'. Objects come back, nodes Ready, pods run.
    let t = Instant::now();
    let o = c.compose(&["down", "-t", "2"]);
    assert!(o.status.success(), "compose down: {}", text(&o));
    let o = c.compose(&["up", "-d"]);
    assert!(o.status.success(), "compose up: {}", text(&o));
    c.wait_healthy();
    println!(
        "compose: down + up with volumes kept, all healthy in {:?}",
        t.elapsed()
    );
    for n in ["wn1", "wn2", "wn3"] {
        poll(&format!("{n} Ready after down + up"), long, || {
            c.node_ready(n).filter(|r| *r)
        });
    }
    c.running("nginx-rc-", 4, long);
    c.running("nginx-rs-", 3, long);
    c.running("nginx-ds-", 2, long);

    // delete -f of every manifest: the objects and their pods are gone.
    for m in [
        "nginx-pod.yml",
        "nginx-rc.yml",
        "nginx-rs.yml",
        "nginx-ds-subsetnodes.yml",
        "fluentds.yml",
    ] {
        // Bare pods (nginx-pod, client) are gone already if they ran on the
        // killed node (evicted, and no controller recreates them).
        c.ok(&["delete", "-f", &manifest(m), "--ignore-not-found"]);
    }
    c.ok(&["delete", "-f", svc.to_str().unwrap(), "--ignore-not-found"]);
    c.ok(&["delete", "pod", "py-pod", "--ignore-not-found"]);
    poll("every pod gone", long, || {
        c.pods_of("")?.is_empty().then_some(())
    });
    let left = c.ok(&["get", "rc,rs,ds"]);
    assert!(!left.contains("nginx"), "{left}");
    println!(
        "compose: walkthrough and node loss took {:?}",
        suite.elapsed()
    );
}

/// The leader's service name (cpN), from `rkubectl cluster-info`.
/// The node holding a LoadBalancer address's Lease.
fn lease_holder(c: &Compose, ip: &str) -> Option<String> {
    let o = c.rkubectl(&[
        "get",
        "lease",
        &format!("lb-{ip}"),
        "-n",
        "kube-system",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn leader(c: &Compose) -> Option<String> {
    let o = c.rkubectl(&["cluster-info"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Leader: replica "))
        .and_then(|r| r.split_whitespace().next())
        .map(|id| format!("cp{id}"))
}

fn leader_loss(c: &Compose, tmp: &Path) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let long = Duration::from_secs(120);
    let old = poll("a leader", long, || leader(c));
    let old_id = c.container(&old);
    let stop = AtomicBool::new(false);
    // (namespace, when its create was acknowledged)
    let acked: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let mut killed = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("e2e-{i}");
                let file = tmp.join(format!("{name}.yml"));
                std::fs::write(
                    &file,
                    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
                )
                .unwrap();
                let o = c.rkubectl(&["create", "-f", file.to_str().unwrap()]);
                if o.status.success() {
                    acked.lock().unwrap().push((name, Instant::now()));
                    i += 1;
                } else if text(&o).contains("AlreadyExists") {
                    // An earlier try went through without its answer.
                    i += 1;
                }
            }
        });
        poll("writes before the kill", long, || {
            (acked.lock().unwrap().len() >= 5).then_some(())
        });
        let o = run(Command::new("docker").args(["kill", &old_id]));
        // (Writes acknowledged while `docker kill` ran may predate the kill.)
        killed = Instant::now();
        assert!(o.status.success(), "docker kill: {}", text(&o));
        poll("writes acknowledged after the kill", long, || {
            let n = acked
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, t)| *t > killed + Duration::from_millis(100))
                .count();
            (n >= 5).then_some(())
        });
        stop.store(true, Ordering::SeqCst);
    });
    let acked = acked.into_inner().unwrap();
    let first_after = acked
        .iter()
        .find(|(_, t)| *t > killed)
        .map(|(_, t)| t.duration_since(killed))
        .unwrap();
    let new = poll("a new leader", long, || leader(c).filter(|l| *l != old));
    println!(
        "compose: leader {old} killed; first write acknowledged {first_after:?} later, new leader {new}, {} writes acknowledged",
        acked.len()
    );
    // Nothing acknowledged is lost.
    let o = c.ok(&["get", "namespaces", "-o", "name"]);
    for (name, _) in &acked {
        assert!(
            o.contains(&format!("namespace/{name}\n")),
            "{name} lost:\n{o}"
        );
    }
    // The controllers run on the new leader.
    c.ok(&["scale", "rc", "nginx-rc", "--replicas=4"]);
    c.running("nginx-rc-", 4, long);
    // Started again, the old leader catches up: a linearizable read on it
    // sees the last write.
    let started = Instant::now();
    let o = run(Command::new("docker").args(["start", &old_id]));
    assert!(o.status.success(), "docker start: {}", text(&o));
    let n: usize = old.trim_start_matches("cp").parse().unwrap();
    let addr = format!("{}.{}:7000", c.net, 10 + n);
    let last = &acked.last().unwrap().0;
    poll(&format!("{old} serving the last write"), long, || {
        let o = c.rkubectl(&["-s", &addr, "get", "namespace", last]);
        o.status.success().then_some(())
    });
    println!(
        "compose: {old} caught up {:?} after docker start",
        started.elapsed()
    );
    let mut args = vec!["delete", "namespace", "--wait=false"];
    args.extend(acked.iter().map(|(n, _)| n.as_str()));
    c.ok(&args);
}

/// examples/python against the compose cluster: nodes and pods listed, the
/// seed's pod created from a dict and run by a real node.
fn python_scripts(c: &Compose, tmp: &Path) {
    let ready = run(Command::new("python3").args(["-c", "import grpc, grpc_tools"]))
        .status
        .success();
    if !ready {
        println!("RKUBE-SKIP: compose: python3 with grpcio and grpcio-tools is not installed (the Python examples)");
        return;
    }
    let gen = tmp.join("python-gen");
    let py = |script: &str, args: &[&str]| {
        let o = run(Command::new("python3")
            .arg(repo().join("examples/python").join(script))
            .args(args)
            .env_remove("RKUBE_SERVER")
            .env("RKUBECONFIG", c.kubeconfig("admin"))
            .env("RKUBE_PY_GEN", &gen));
        assert!(o.status.success(), "{script} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = py("list_pods_nodes.py", &[]);
    for n in ["wn1", "wn2", "wn3"] {
        assert!(out.contains(&format!("{n}\tTrue")), "{out}");
    }
    let out = py("create_pod.py", &["py-pod"]);
    assert!(out.contains("\"name\": \"py-pod\""), "{out}");
    poll(
        "py-pod Running (list_pods_nodes.py)",
        Duration::from_secs(120),
        || {
            py("list_pods_nodes.py", &[])
                .lines()
                .any(|l| l.contains("py-pod") && l.contains("Running"))
                .then_some(())
        },
    );
    println!("compose: the Python examples listed the nodes and ran py-pod");
}

/// What each container has under /etc/rkube: its own credentials only, and
/// never the CA's key.
fn credentials_mounted(c: &Compose) {
    let expect: [(&str, &[&str]); 8] = [
        ("cp1", &["ca.crt", "tls.crt", "tls.key", "tokens.csv"]),
        ("cp2", &["ca.crt", "tls.crt", "tls.key", "tokens.csv"]),
        ("cp3", &["ca.crt", "tls.crt", "tls.key", "tokens.csv"]),
        ("wn1", &["kube-proxy.kubeconfig", "kubelet.kubeconfig"]),
        ("wn2", &["kube-proxy.kubeconfig", "kubelet.kubeconfig"]),
        ("wn3", &["kube-proxy.kubeconfig", "kubelet.kubeconfig"]),
        ("dns1", &["kube-dns.kubeconfig"]),
        ("dns2", &["kube-dns.kubeconfig"]),
    ];
    let ca_key = std::fs::read_to_string(c.pki.path().join("ca.key")).unwrap();
    // Key material only: the first line of a P-256 PKCS#8 key is mostly a
    // header every such key shares.
    let ca_key_line = ca_key.lines().nth(2).unwrap().to_string();
    for (service, files) in expect {
        let id = c.container(service);
        let o = run(Command::new("docker").args(["exec", &id, "ls", "/etc/rkube"]));
        let listed: Vec<&str> = std::str::from_utf8(&o.stdout)
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(listed, files, "/etc/rkube of {service}");
        // The key is nowhere in the container's credentials, as PEM or in
        // a kubeconfig's base64 of the PEM (past the shared header).
        let b64 = rkube_api::kubeconfig::encode_data(ca_key.as_bytes());
        for needle in [ca_key_line.as_str(), &b64[140..200]] {
            let o = run(Command::new("docker").args([
                "exec",
                &id,
                "grep",
                "-rqF",
                needle,
                "/etc/rkube",
            ]));
            assert_eq!(
                o.status.code(),
                Some(1),
                "the CA key is in {service}'s /etc/rkube"
            );
        }
        // And the node's own credential is the right one.
        if service.starts_with("wn") {
            let mine = std::fs::read_to_string(c.kubeconfig(&format!("node-{service}"))).unwrap();
            let o = run(Command::new("docker").args([
                "exec",
                &id,
                "cat",
                "/etc/rkube/kubelet.kubeconfig",
            ]));
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                mine,
                "{service}'s credential"
            );
        }
    }
    println!("compose: every container holds only its own credentials");
}

/// Plaintext and TLS without credentials are refused by every replica.
fn strangers_refused(c: &Compose) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin = c.connect_config("admin");
    rt.block_on(async {
        for server in &admin.servers {
            // TLS with the cluster's CA, no certificate, no token.
            let mut anon = admin.clone();
            anon.servers = vec![server.clone()];
            let tls = anon.tls.as_mut().unwrap();
            tls.cert_pem = None;
            tls.key_pem = None;
            let anon = Client::connect(&anon)
                .unwrap()
                .with_failover_timeout(Duration::from_secs(5));
            let s = anon
                .get("Namespace", "", "default")
                .await
                .expect_err("an anonymous TLS client was served");
            assert_eq!(s.code(), Code::Unauthenticated, "{server}: {}", s.message());
            // Plaintext to the TLS port: no answer at all.
            let plain = Client::from_list(server)
                .unwrap()
                .with_failover_timeout(Duration::from_secs(2));
            let r = plain.get("Namespace", "", "default").await;
            assert!(r.is_err(), "{server} answered a plaintext client");
            // A wrong bearer token.
            let mut forged = admin.clone();
            forged.servers = vec![server.clone()];
            let tls = forged.tls.as_mut().unwrap();
            tls.cert_pem = None;
            tls.key_pem = None;
            forged.token = Some("0123456789abcdef0123456789abcdef".into());
            let s = Client::connect(&forged)
                .unwrap()
                .with_failover_timeout(Duration::from_secs(5))
                .get("Namespace", "", "default")
                .await
                .expect_err("a wrong token was served");
            assert_eq!(s.code(), Code::Unauthenticated, "{server}: {}", s.message());
        }
        // The admin token (tokens.csv on every replica) is accepted.
        let tok = Client::connect(&c.connect_config("admin-token")).unwrap();
        tok.get("Namespace", "", "default")
            .await
            .expect("the admin token");
    });
    // rkubectl with the short-form (plaintext) config: refused, and says
    // it could not connect.
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("config");
    std::fs::write(&short, format!("servers: [{}]\n", c.servers())).unwrap();
    let o = run(Command::new(bin("rkubectl"))
        .arg("--kubeconfig")
        .arg(&short)
        .args(["get", "ns"])
        .env_remove("RKUBE_SERVER"));
    assert!(
        !o.status.success(),
        "plaintext rkubectl was served: {}",
        text(&o)
    );
    println!("compose: plaintext, anonymous TLS and a wrong token refused by every replica");
}

/// wn1's credential reads a pod bound to wn2 but cannot change or delete
/// it; the pod's logs come from wn2's kubelet over TLS, to the admin only.
fn node_confined(c: &Compose) {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("on-wn2.yml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-wn2\nspec:\n  nodeName: wn2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, \"echo hello from wn2; sleep 3600\"]\n",
    )
    .unwrap();
    c.ok(&["create", "-f", f.to_str().unwrap()]);
    c.running("on-wn2", 1, Duration::from_secs(120));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let wn1 = Client::connect(&c.connect_config("node-wn1")).unwrap();
        let pod = wn1
            .get("Pod", "default", "on-wn2")
            .await
            .expect("wn1 reads the pod");
        let rv = pod.resource_version().to_string();
        // Status (what a kubelet writes), spec, delete: all refused.
        let mut changed = pod.clone();
        if let Some(Body::Pod(p)) = changed.kind.as_mut() {
            p.status.get_or_insert_with(Default::default).phase = "Failed".into();
        }
        let s = wn1
            .update_status(changed.clone())
            .await
            .expect_err("wn1 updated wn2's pod status");
        assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
        assert!(
            s.message().contains("system:node:wn1") && s.message().contains("bound to node wn1"),
            "{}",
            s.message()
        );
        changed
            .metadata_mut()
            .unwrap()
            .labels
            .insert("by".into(), "wn1".into());
        let s = wn1
            .update(changed.clone())
            .await
            .expect_err("wn1 updated wn2's pod");
        assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
        // Moving it to wn1 does not help: the stored pod is wn2's.
        if let Some(Body::Pod(p)) = changed.kind.as_mut() {
            p.spec.as_mut().unwrap().node_name = "wn1".into();
        }
        let s = wn1
            .update_status(changed)
            .await
            .expect_err("wn1 took wn2's pod");
        assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
        let s = wn1
            .delete(DeleteRequest {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: "on-wn2".into(),
                ..Default::default()
            })
            .await
            .expect_err("wn1 deleted wn2's pod");
        assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
        let now = wn1.get("Pod", "default", "on-wn2").await.unwrap();
        assert_eq!(
            now.resource_version(),
            rv,
            "a refused write changed the pod"
        );
    });
    // logs through wn2's kubelet over TLS (verified as wn2): the admin may,
    // wn1's credential may not.
    let logs = poll("the logs of on-wn2", Duration::from_secs(60), || {
        let o = c.rkubectl(&["logs", "on-wn2"]);
        (o.status.success() && text(&o).contains("hello from wn2")).then(|| text(&o))
    });
    assert!(logs.contains("hello from wn2"));
    let o = c.rkubectl_as("node-wn1", &["logs", "on-wn2"]);
    assert!(
        !o.status.success() && text(&o).contains("may not use the kubelet endpoint"),
        "wn1 read logs through wn2's kubelet: {}",
        text(&o)
    );
    c.ok(&["delete", "pod", "on-wn2"]);
    println!(
        "compose: wn1's credential refused on wn2's pod (update, status, delete, kubelet logs)"
    );
}

/// An extra node from scripts/add-node.sh: its own credential, Ready,
/// removed again. The `wn` service started without one stops saying why.
fn extra_node(c: &Compose, bin_dir: &Path) {
    let t = Instant::now();
    let o = run(Command::new(repo().join("scripts/add-node.sh"))
        .arg("wn4")
        .env("COMPOSE_PROJECT_NAME", &c.project)
        .env("RKUBE_NET", &c.net)
        .env("RKUBE_IMAGE", &c.image)
        .env("RKUBE_PKI", c.pki.path())
        .env("RKUBE_BIN_DIR", bin_dir));
    assert!(o.status.success(), "scripts/add-node.sh wn4: {}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    assert!(
        !id.is_empty(),
        "add-node printed no container: {}",
        text(&o)
    );
    poll("wn4 Ready", Duration::from_secs(120), || {
        c.node_ready("wn4").filter(|r| *r)
    });
    println!(
        "compose: extra node wn4 Ready {:?} after add-node.sh",
        t.elapsed()
    );
    let o = run(Command::new("docker").args(["exec", &id, "ls", "/etc/rkube"]));
    let listed: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(listed, ["kube-proxy.kubeconfig", "kubelet.kubeconfig"]);
    let mine = std::fs::read_to_string(c.kubeconfig("node-wn4")).unwrap();
    let o = run(Command::new("docker").args(["exec", &id, "cat", "/etc/rkube/kubelet.kubeconfig"]));
    assert_eq!(String::from_utf8_lossy(&o.stdout), mine);
    // The same name twice: refused.
    let o = run(Command::new(repo().join("scripts/add-node.sh"))
        .arg("wn4")
        .env("COMPOSE_PROJECT_NAME", &c.project)
        .env("RKUBE_NET", &c.net)
        .env("RKUBE_IMAGE", &c.image)
        .env("RKUBE_PKI", c.pki.path())
        .env("RKUBE_BIN_DIR", bin_dir));
    assert!(
        !o.status.success() && text(&o).contains("already exists"),
        "{}",
        text(&o)
    );
    let o = run(Command::new("docker").args(["rm", "-fv", &id]));
    assert!(o.status.success(), "{}", text(&o));
    c.ok(&["delete", "node", "wn4"]);

    // `wn` without a credential (what `up --scale wn=N` would start).
    let o = c.compose(&["--profile", "extra", "run", "-d", "--no-deps", "wn"]);
    assert!(o.status.success(), "compose run wn: {}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let logs = poll(
        "the uncredentialed wn to stop",
        Duration::from_secs(60),
        || {
            let st = run(Command::new("docker").args(["inspect", "-f", "{{.State.Status}}", &id]));
            if String::from_utf8_lossy(&st.stdout).trim() != "exited" {
                return None;
            }
            Some(text(&run(Command::new("docker").args(["logs", &id]))))
        },
    );
    assert!(
        logs.contains("no credential at /etc/rkube/kubelet.kubeconfig"),
        "{logs}"
    );
    let _ = run(Command::new("docker").args(["rm", "-fv", &id]));
    println!("compose: extra node checks took {:?}", t.elapsed());
}
