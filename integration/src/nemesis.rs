//! Fault injection for the control plane, and the recorded workload whose
//! history the linearizability checker (`rkube-linearizability`) judges.
//!
//! [`ReplicaNet`] gives each replica a network namespace of its own on a
//! host bridge (as the node tier does for nodes), so links between replicas
//! can be cut: `iptables -j DROP` inside the namespaces for a partition
//! between replicas (clients on the host still reach every replica, as
//! clients on both sides of a real partition do), `ip link set eth0 down`
//! to cut a replica off from everyone. Kills (SIGKILL), pauses (SIGSTOP /
//! SIGCONT) and restarts go through [`crate::Cluster`].
//!
//! [`Workload`] runs clients that create, update and patch (with and
//! without a resourceVersion precondition), get, list and delete Leases in
//! one namespace,
//! each write storing a value unique to it, and records every call's
//! invocation and answer; watchers record what their watches deliver,
//! reopening them after errors where they left off.

use crate::{Cluster, Options};
use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, DeleteRequest, Lease, LeaseSpec, ListRequest, Namespace, ObjectMeta,
    PatchRequest, Preconditions, WatchRequest,
};
use rkube_api::Object;
use rkube_linearizability::kv::{Input, KvOp, Output, Revision, Value};
use rkube_linearizability::watch::{Event, EventType, Segment, WatchLog};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output as ProcOutput, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why replicas cannot get namespaces of their own here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces and iptables need it)".into());
    }
    for tool in ["ip", "iptables", "nsenter"] {
        if which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn sh(args: &[&str]) -> ProcOutput {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The replicas' network: a host bridge `rkzK` with 172.30.K.1, replica i
/// in namespace `rkzK-i` at 172.30.K.(10+i).
pub struct ReplicaNet {
    pub k: u32,
    pub bridge: String,
    pub replicas: usize,
}

impl ReplicaNet {
    /// Creates the bridge and one namespace per replica; `None` (after
    /// printing `RKUBE-SKIP: nemesis: <why>`) without root or tools.
    pub fn create(replicas: usize) -> Option<ReplicaNet> {
        if let Some(why) = skip_reason() {
            println!("RKUBE-SKIP: nemesis: {why}");
            return None;
        }
        // A slot whose bridge exists belongs to another test (or to a
        // killed one): `ip link add` fails when the name is taken.
        let first = (std::process::id() % 10) * 10 + NEXT.fetch_add(1, Ordering::SeqCst) % 10;
        let k = (0..100)
            .map(|i| 100 + (first + i) % 100)
            .find(|k| {
                sh(&["ip", "link", "add", &format!("rkz{k}"), "type", "bridge"])
                    .status
                    .success()
            })
            .expect("a free replica-network slot (bridges rkz100-rkz199 all exist)");
        let net = ReplicaNet {
            k,
            bridge: format!("rkz{k}"),
            replicas,
        };
        net.cleanup_namespaces();
        must(&[
            "ip",
            "addr",
            "add",
            &format!("172.30.{k}.1/24"),
            "dev",
            &net.bridge,
        ]);
        must(&["ip", "link", "set", &net.bridge, "up"]);
        // Bridged frames may pass the host's FORWARD chain (br_netfilter,
        // Docker's DROP policy): let replica-to-replica traffic through.
        must(&[
            "iptables",
            "-I",
            "FORWARD",
            "-i",
            &net.bridge,
            "-o",
            &net.bridge,
            "-j",
            "ACCEPT",
        ]);
        for i in 0..replicas {
            let ns = net.netns(i);
            let veth = format!("rkz{k}v{i}");
            let _ = sh(&["ip", "link", "del", &veth]);
            must(&["ip", "netns", "add", &ns]);
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["ip", "link", "set", &veth, "master", &net.bridge, "up"]);
            net.inns(
                i,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", net.ip(i)),
                    "dev",
                    "eth0",
                ],
            );
            net.inns(i, &["ip", "link", "set", "eth0", "up"]);
            net.inns(i, &["ip", "link", "set", "lo", "up"]);
        }
        Some(net)
    }

    pub fn netns(&self, i: usize) -> String {
        format!("rkz{}-{}", self.k, i)
    }

    pub fn ip(&self, i: usize) -> String {
        format!("172.30.{}.{}", self.k, 10 + i)
    }

    fn inns(&self, i: usize, args: &[&str]) {
        let ns = self.netns(i);
        let mut v = vec!["ip", "netns", "exec", ns.as_str()];
        v.extend_from_slice(args);
        must(&v);
    }

    /// Cluster options placing replica i in namespace i.
    pub fn options(&self, base: Options) -> Options {
        Options {
            replicas: self.replicas,
            hosts: (0..self.replicas).map(|i| self.ip(i)).collect(),
            netns: (0..self.replicas).map(|i| self.netns(i)).collect(),
            ..base
        }
    }

    /// Drops all traffic between replicas `a` and `b` (both ways, in both
    /// namespaces); clients still reach both.
    pub fn cut(&self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ip(y);
            self.inns(x, &["iptables", "-A", "INPUT", "-s", &peer, "-j", "DROP"]);
            self.inns(x, &["iptables", "-A", "OUTPUT", "-d", &peer, "-j", "DROP"]);
        }
    }

    /// Cuts every link between replicas of different groups.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        for (gi, g) in groups.iter().enumerate() {
            for h in &groups[gi + 1..] {
                for &a in g {
                    for &b in h {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Replica `i` still receives everything, but what it sends to the
    /// host (answers to the test's clients) is lost.
    pub fn drop_answers(&self, i: usize) {
        let host = format!("172.30.{}.1", self.k);
        self.inns(i, &["iptables", "-A", "OUTPUT", "-d", &host, "-j", "DROP"]);
    }

    /// Takes replica `i`'s link down: nobody (no peer, no client) reaches
    /// it, and it reaches nobody.
    pub fn isolate(&self, i: usize) {
        self.inns(i, &["ip", "link", "set", "eth0", "down"]);
    }

    /// Undoes every cut and isolation.
    pub fn heal(&self) {
        for i in 0..self.replicas {
            self.inns(i, &["iptables", "-F"]);
            self.inns(i, &["ip", "link", "set", "eth0", "up"]);
        }
    }

    fn cleanup_namespaces(&self) {
        for i in 0..10 {
            let _ = sh(&["ip", "netns", "del", &self.netns(i)]);
        }
    }
}

impl Drop for ReplicaNet {
    fn drop(&mut self) {
        self.cleanup_namespaces();
        let _ = sh(&["ip", "link", "del", &self.bridge]);
        while sh(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ])
        .status
        .success()
        {}
    }
}

// ------------------------------------------------------------ workload

/// Whether a status came from the server (a gRPC status it sent) rather
/// than from the client's transport (no connection, connection lost,
/// keep-alive timeout): tonic keeps the transport error as the source.
pub fn from_server(s: &Status) -> bool {
    std::error::Error::source(s).is_none()
}

/// The value a Lease of the workload holds (`spec.holderIdentity` "vN").
pub fn value_of(o: &Object) -> Option<Value> {
    match &o.kind {
        Some(Body::Lease(l)) => l
            .spec
            .as_ref()?
            .holder_identity
            .strip_prefix('v')?
            .parse()
            .ok(),
        _ => None,
    }
}

pub fn lease(namespace: &str, name: &str, value: Value, resource_version: &str) -> Object {
    Object::from_body(Body::Lease(Lease {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            resource_version: resource_version.into(),
            ..Default::default()
        }),
        spec: Some(LeaseSpec {
            holder_identity: format!("v{value}"),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn revision_of(o: &Object) -> Revision {
    o.resource_version().parse().unwrap_or(-1)
}

/// Knobs of a workload.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    pub namespace: String,
    pub clients: usize,
    pub keys: usize,
    pub watchers: usize,
    /// Longest a call may take before the client gives up on it (a write
    /// then has an unknown outcome).
    pub call_timeout: Duration,
    /// How long the failover client keeps trying other replicas.
    pub failover: Duration,
    /// Clients (of `clients`) that do not fail over: they record the
    /// server's `Unavailable` answers (its promise that nothing was done,
    /// which the checker holds it to) and move to another replica.
    pub direct_clients: usize,
    /// Chance, per call, that a client moves to a random replica (so
    /// consecutive calls of one client land on different replicas).
    pub hop: f64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            namespace: "nemesis".into(),
            clients: 5,
            keys: 10,
            watchers: 2,
            call_timeout: Duration::from_secs(30),
            failover: Duration::from_secs(10),
            direct_clients: 2,
            hop: 0.3,
        }
    }
}

/// Counts of what the clients saw, by outcome.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    pub definite_failures: u64,
    pub unknown: u64,
    pub refused: u64,
    pub read_errors: u64,
    /// Lists (each recorded as a read of every key) and merge patches
    /// (recorded as updates) among the calls.
    pub lists: u64,
    pub patches: u64,
    /// Answers that fit no category (printed).
    pub odd: Vec<String>,
}

struct Shared {
    opts: WorkloadOptions,
    addresses: String,
    start: Instant,
    next_value: AtomicU64,
    ops: Mutex<Vec<KvOp>>,
    tally: Mutex<Tally>,
    stop: AtomicBool,
    /// The start revision of the watches.
    watch_from: Revision,
    watch_logs: Mutex<Vec<WatchLog>>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Clients and watchers working on one namespace, recording everything.
pub struct Workload {
    shared: Arc<Shared>,
    clients: Vec<tokio::task::JoinHandle<()>>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

/// What a finished workload recorded.
pub struct Recorded {
    pub ops: Vec<KvOp>,
    pub watches: Vec<WatchLog>,
    pub tally: Tally,
    /// The revision the watches started after.
    pub watch_from: Revision,
}

impl Workload {
    /// Creates the namespace and starts clients and watchers.
    pub async fn start(cluster: &Cluster, opts: WorkloadOptions) -> Workload {
        let c = cluster.client();
        let ns = Object::from_body(Body::Namespace(Namespace {
            metadata: Some(ObjectMeta {
                name: opts.namespace.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }));
        let created = crate::wait_for("the workload's namespace", Duration::from_secs(30), || {
            let (c, ns) = (c.clone(), ns.clone());
            async move {
                match c.create(ns.clone()).await {
                    Ok(o) => Some(revision_of(&o)),
                    Err(s) if s.code() == Code::AlreadyExists => {
                        let o = c.get("Namespace", "", ns.name()).await.ok()?;
                        Some(revision_of(&o))
                    }
                    Err(_) => None,
                }
            }
        })
        .await;
        let shared = Arc::new(Shared {
            addresses: cluster.addresses(),
            opts: opts.clone(),
            start: Instant::now(),
            next_value: AtomicU64::new(1),
            ops: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
            stop: AtomicBool::new(false),
            watch_from: created,
            watch_logs: Mutex::new(Vec::new()),
        });
        let clients = (0..opts.clients)
            .map(|i| tokio::spawn(client_loop(shared.clone(), i as u64)))
            .collect();
        let watchers = (0..opts.watchers)
            .map(|i| tokio::spawn(watch_loop(shared.clone(), i)))
            .collect();
        Workload {
            shared,
            clients,
            watchers,
        }
    }

    pub fn operations(&self) -> usize {
        self.shared.ops.lock().unwrap().len()
    }

    /// Stops the clients (each finishes its call in flight).
    pub async fn stop_clients(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for c in self.clients.drain(..) {
            let _ = c.await;
        }
    }

    /// Reads every key once more (recorded), then writes a last object
    /// (recorded) and waits until every watcher has seen it. Returns the
    /// history and the watches.
    pub async fn finish(mut self, deadline: Duration) -> Recorded {
        self.stop_clients().await;
        let sh = self.shared.clone();
        let client = Client::from_list(&sh.addresses)
            .expect("client")
            .with_failover_timeout(Duration::from_secs(20));
        for k in 0..sh.opts.keys {
            let key = format!("k{k}");
            let mut tries = 0;
            while !record(
                &sh,
                &client,
                u64::MAX,
                &key,
                Input::Get,
                &mut HashMap::new(),
            )
            .await
            {
                tries += 1;
                assert!(tries < 10, "the closing read of {key} keeps failing");
            }
        }
        // The closing write (a key of its own per attempt, in case one
        // has an unknown outcome).
        let mut end = None;
        for attempt in 0..5 {
            let value = sh.next_value.fetch_add(1, Ordering::SeqCst);
            let before = sh.ops.lock().unwrap().len();
            let key = format!("zz-end{attempt}");
            let input = Input::Create { value };
            record(&sh, &client, u64::MAX, &key, input, &mut HashMap::new()).await;
            if let Some(Output::Written { revision }) = sh.ops.lock().unwrap()[before..]
                .last()
                .map(|o| o.output.clone())
            {
                end = Some(revision);
                break;
            }
        }
        let end = end.expect("a closing write");
        let logs = crate::wait_for(
            "every watcher to see the closing write",
            deadline,
            || async {
                let logs = sh.watch_logs.lock().unwrap();
                let caught = logs.iter().all(|l| {
                    l.segments
                        .iter()
                        .flat_map(|s| s.events.last())
                        .any(|e| e.revision >= end)
                });
                (logs.len() == sh.opts.watchers && caught).then(|| logs.clone())
            },
        )
        .await;
        for w in self.watchers.drain(..) {
            w.abort();
        }
        let watches = logs
            .into_iter()
            .map(|mut l| {
                l.caught_up_to = end;
                l
            })
            .collect();
        let ops = sh.ops.lock().unwrap().clone();
        let tally = sh.tally.lock().unwrap().clone();
        Recorded {
            ops,
            watches,
            tally,
            watch_from: sh.watch_from,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.clients.iter().chain(self.watchers.iter()) {
            t.abort();
        }
    }
}

/// Runs one call and records it. `client_id` u64::MAX: the closing reads.
/// Returns false when a read got no answer (not recorded).
async fn record(
    sh: &Shared,
    client: &Client,
    client_id: u64,
    key: &str,
    input: Input,
    seen: &mut HashMap<String, Revision>,
) -> bool {
    record_as(sh, client, client_id, key, input, false, seen)
        .await
        .is_some()
}

/// As [`record`]; `patch`: an update made as a JSON merge patch (same
/// semantics, the Patch verb's code path). Returns what was recorded.
async fn record_as(
    sh: &Shared,
    client: &Client,
    client_id: u64,
    key: &str,
    input: Input,
    patch: bool,
    seen: &mut HashMap<String, Revision>,
) -> Option<Output> {
    let ns = sh.opts.namespace.as_str();
    let call = sh.now();
    let fut = async {
        match &input {
            Input::Update {
                value,
                precondition,
            } if patch => {
                let mut doc = serde_json::json!({"spec": {"holderIdentity": format!("v{value}")}});
                if let Some(p) = precondition {
                    doc["metadata"] = serde_json::json!({"resourceVersion": p.to_string()});
                }
                client
                    .patch(PatchRequest {
                        kind: "Lease".into(),
                        namespace: ns.into(),
                        name: key.into(),
                        patch_type: "merge".into(),
                        patch: doc.to_string(),
                        status: false,
                    })
                    .await
            }
            Input::Create { value } => client.create(lease(ns, key, *value, "")).await,
            Input::Update {
                value,
                precondition,
            } => {
                let rv = precondition.map(|p| p.to_string()).unwrap_or_default();
                client.update(lease(ns, key, *value, &rv)).await
            }
            Input::Delete { precondition } => {
                client
                    .delete(DeleteRequest {
                        kind: "Lease".into(),
                        namespace: ns.into(),
                        name: key.into(),
                        preconditions: precondition.map(|p| Preconditions {
                            resource_version: p.to_string(),
                            uid: String::new(),
                        }),
                        ..Default::default()
                    })
                    .await
            }
            Input::Get => client.get("Lease", ns, key).await,
        }
    };
    let answer = tokio::time::timeout(sh.opts.call_timeout, fut).await;
    let ret = sh.now();
    let is_read = matches!(input, Input::Get);
    let output = match answer {
        Ok(Ok(o)) => {
            let rev = revision_of(&o);
            match &input {
                Input::Create { .. } | Input::Update { .. } => Output::Written { revision: rev },
                Input::Delete { .. } => match value_of(&o) {
                    Some(value) => Output::Deleted {
                        value,
                        revision: rev,
                    },
                    None => {
                        sh.tally
                            .lock()
                            .unwrap()
                            .odd
                            .push(format!("delete returned an object without value: {o:?}"));
                        Output::Unknown
                    }
                },
                Input::Get => match value_of(&o) {
                    Some(value) => Output::Found {
                        value,
                        revision: rev,
                    },
                    None => {
                        sh.tally.lock().unwrap().odd.push(format!("get: {o:?}"));
                        return None;
                    }
                },
            }
        }
        Ok(Err(s)) => match s.code() {
            Code::NotFound => Output::NotFound,
            Code::AlreadyExists => Output::AlreadyExists,
            Code::Aborted => Output::Conflict,
            _ if is_read => {
                sh.tally.lock().unwrap().read_errors += 1;
                return None;
            }
            // The server's promise: nothing was done.
            // The server's promise, or no connection at all: nothing done.
            _ if rkube_api::client::surely_not_done(&s) => Output::Failed,
            Code::DeadlineExceeded => Output::Unknown,
            _ if !from_server(&s) => Output::Unknown,
            _ => {
                sh.tally
                    .lock()
                    .unwrap()
                    .odd
                    .push(format!("{input:?} on {key}: {s:?}"));
                Output::Unknown
            }
        },
        Err(_) if is_read => {
            sh.tally.lock().unwrap().read_errors += 1;
            return None;
        }
        Err(_) => Output::Unknown,
    };
    {
        let mut t = sh.tally.lock().unwrap();
        if patch {
            t.patches += 1;
        }
        match &output {
            Output::Written { .. } | Output::Deleted { .. } | Output::Found { .. } => t.ok += 1,
            Output::Unknown => t.unknown += 1,
            Output::Failed => t.refused += 1,
            _ => t.definite_failures += 1,
        }
    }
    match &output {
        Output::Written { revision } | Output::Found { revision, .. } => {
            seen.insert(key.to_string(), *revision);
        }
        Output::Deleted { .. } | Output::NotFound => {
            seen.remove(key);
        }
        _ => {}
    }
    sh.ops.lock().unwrap().push(KvOp {
        client: client_id,
        key: key.to_string(),
        input,
        output: output.clone(),
        call,
        ret,
    });
    Some(output)
}

/// Lists the namespace's Leases and records the answer as one read of
/// every key at once (found or not found), all with the list's interval: a
/// linearizable list reads every key at one point inside it.
async fn record_list(
    sh: &Shared,
    client: &Client,
    client_id: u64,
    seen: &mut HashMap<String, Revision>,
) {
    let call = sh.now();
    let answer = tokio::time::timeout(
        sh.opts.call_timeout,
        client.list(ListRequest {
            kind: "Lease".into(),
            namespace: sh.opts.namespace.clone(),
            ..Default::default()
        }),
    )
    .await;
    let ret = sh.now();
    let Ok(Ok(list)) = answer else {
        sh.tally.lock().unwrap().read_errors += 1;
        return;
    };
    let found: HashMap<String, (Value, Revision)> = list
        .items
        .iter()
        .filter_map(|o| Some((o.name().to_string(), (value_of(o)?, revision_of(o)))))
        .collect();
    let mut ops = sh.ops.lock().unwrap();
    for k in 0..sh.opts.keys {
        let key = format!("k{k}");
        let output = match found.get(&key) {
            Some(&(value, revision)) => {
                seen.insert(key.clone(), revision);
                Output::Found { value, revision }
            }
            None => {
                seen.remove(&key);
                Output::NotFound
            }
        };
        ops.push(KvOp {
            client: client_id,
            key,
            input: Input::Get,
            output,
            call,
            ret,
        });
    }
    let mut t = sh.tally.lock().unwrap();
    t.ok += 1;
    t.lists += 1;
}

async fn client_loop(sh: Arc<Shared>, id: u64) {
    let direct = (id as usize) < sh.opts.direct_clients;
    let client = Client::from_list(&sh.addresses)
        .expect("client")
        .with_failover_timeout(if direct {
            Duration::ZERO
        } else {
            sh.opts.failover
        });
    let n = client.addresses().len();
    // The last revision this client saw of each key: its preconditions.
    let mut seen: HashMap<String, Revision> = HashMap::new();
    while !sh.stop.load(Ordering::SeqCst) {
        if rand::random::<f64>() < sh.opts.hop {
            client.prefer(rand::random::<usize>() % n);
        }
        let key = format!("k{}", rand::random::<usize>() % sh.opts.keys);
        let known = seen.get(&key).copied();
        let value = sh.next_value.fetch_add(1, Ordering::SeqCst);
        let dice = rand::random::<u32>() % 40;
        if dice == 0 {
            record_list(&sh, &client, id, &mut seen).await;
            continue;
        }
        let input = match dice / 2 {
            0..=6 => Input::Get,
            7..=9 => Input::Create { value },
            10..=14 if known.is_some() => Input::Update {
                value,
                precondition: known,
            },
            10..=15 => Input::Update {
                value,
                precondition: None,
            },
            16..=17 if known.is_some() => Input::Delete {
                precondition: known,
            },
            _ => Input::Delete { precondition: None },
        };
        // One update in four as a merge patch.
        let patch = matches!(input, Input::Update { .. }) && dice % 4 == 1;
        let out = record_as(&sh, &client, id, &key, input, patch, &mut seen).await;
        if matches!(out, None | Some(Output::Unknown | Output::Failed)) {
            // No answer here: try another replica, without spinning.
            client.prefer(rand::random::<usize>() % n);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Watches the namespace's Leases, reopening after errors (on the next
/// replica) from the last revision seen.
async fn watch_loop(sh: Arc<Shared>, id: usize) {
    let client = Client::from_list(&sh.addresses)
        .expect("client")
        .with_failover_timeout(Duration::from_secs(3600));
    let n = client.addresses().len();
    client.prefer(id % n);
    let index = {
        let mut logs = sh.watch_logs.lock().unwrap();
        logs.push(WatchLog {
            name: format!("watcher {id}"),
            ..Default::default()
        });
        logs.len() - 1
    };
    let mut from = sh.watch_from;
    let mut relisted = false;
    let mut too_old_in_a_row = 0;
    loop {
        {
            let mut logs = sh.watch_logs.lock().unwrap();
            logs[index].segments.push(Segment {
                from,
                events: Vec::new(),
                relisted,
            });
        }
        relisted = false;
        let req = WatchRequest {
            kind: "Lease".into(),
            namespace: sh.opts.namespace.clone(),
            resource_version: from.to_string(),
            ..Default::default()
        };
        let mut too_old = false;
        match tokio::time::timeout(Duration::from_secs(10), client.watch(req)).await {
            Ok(Ok(mut stream)) => {
                while let Some(item) = stream.next().await {
                    let ev = match item {
                        Ok(ev) => ev,
                        Err(s) => {
                            too_old = s.code() == Code::OutOfRange;
                            break;
                        }
                    };
                    too_old_in_a_row = 0;
                    let Some(obj) = ev.object.as_ref() else {
                        continue;
                    };
                    let kind = match ev.r#type.as_str() {
                        "ADDED" => EventType::Added,
                        "MODIFIED" => EventType::Modified,
                        "DELETED" => EventType::Deleted,
                        _ => continue,
                    };
                    let revision: Revision = ev.resource_version.parse().unwrap_or(-1);
                    let e = Event {
                        revision,
                        key: obj.name().to_string(),
                        kind,
                        value: value_of(obj).unwrap_or(0),
                    };
                    from = from.max(revision);
                    let mut logs = sh.watch_logs.lock().unwrap();
                    logs[index]
                        .segments
                        .last_mut()
                        .expect("a segment")
                        .events
                        .push(e);
                }
            }
            Ok(Err(s)) => too_old = s.code() == Code::OutOfRange,
            Err(_) => {}
        }
        if too_old {
            too_old_in_a_row += 1;
        }
        if too_old_in_a_row >= n {
            // No replica keeps the history from `from` on: relist, as a
            // Kubernetes informer does.
            let list = client
                .list(ListRequest {
                    kind: "Lease".into(),
                    namespace: sh.opts.namespace.clone(),
                    ..Default::default()
                })
                .await;
            if let Ok(l) = list {
                from = l.resource_version.parse().unwrap_or(from);
                relisted = true;
                too_old_in_a_row = 0;
            }
        }
        // Broken or refused: try the next replica.
        let i = rand::random::<usize>() % n;
        client.prefer(i);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The committed history of the workload's namespace: a watch from the
/// run's first revision up to the closing write, on a healed cluster, from
/// the first replica that still holds that much history (`None` when every
/// replica restarted from, or installed, a snapshot during the run).
pub async fn committed_history(
    cluster: &Cluster,
    ns: &str,
    from: i64,
    end: i64,
) -> Option<Vec<Event>> {
    'replicas: for i in 0..cluster.replicas.len() {
        if !cluster.is_running(i) {
            continue;
        }
        let req = WatchRequest {
            kind: "Lease".into(),
            namespace: ns.into(),
            resource_version: from.to_string(),
            ..Default::default()
        };
        let mut stream = match cluster.client_of(i).watch(req).await {
            Ok(s) => s,
            Err(s) if s.code() == tonic::Code::OutOfRange => continue,
            Err(s) => panic!("the reference watch on replica {}: {s:?}", i + 1),
        };
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.last().is_none_or(|e: &Event| e.revision < end) {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = match tokio::time::timeout(left, stream.next())
                .await
                .expect("the reference watch stalled")
                .expect("the reference watch ended")
            {
                Ok(ev) => ev,
                Err(s) if s.code() == tonic::Code::OutOfRange => continue 'replicas,
                Err(s) => panic!("the reference watch failed: {s:?}"),
            };
            let obj = ev.object.expect("an object");
            let kind = match ev.r#type.as_str() {
                "ADDED" => EventType::Added,
                "MODIFIED" => EventType::Modified,
                "DELETED" => EventType::Deleted,
                t => panic!("unexpected event type {t}"),
            };
            out.push(Event {
                revision: ev.resource_version.parse().expect("a revision"),
                key: obj.name().to_string(),
                kind,
                value: value_of(&obj).unwrap_or(0),
            });
        }
        return Some(out);
    }
    None
}

impl Recorded {
    /// The revision of the workload's closing write (`finish` made it).
    pub fn closing_revision(&self) -> Revision {
        self.ops
            .iter()
            .rev()
            .find(|o| o.key.starts_with("zz-end") && o.acknowledged_revision().is_some())
            .and_then(|o| o.acknowledged_revision())
            .expect("the closing write")
    }
}

/// Everything checked of a recorded workload.
pub struct Checked {
    /// The history as recorded (unknown outcomes left open).
    pub report: rkube_linearizability::kv::Report,
    /// Against the committed history (default when there is none).
    pub reference: rkube_linearizability::watch::ReferenceReport,
    /// Anomalies, undecided keys and odd answers: empty when all is well.
    pub problems: Vec<String>,
}

/// Checks a recorded workload: the history linearizable as recorded; with
/// the committed history (`reference`), every acknowledged write in it, the
/// history again with unknown writes settled by it, and every watch against
/// it (each committed change once, in order, nothing uncommitted).
pub fn check_recorded(
    ops: &[KvOp],
    watches: &[WatchLog],
    tally: &Tally,
    reference: Option<&[Event]>,
) -> Checked {
    use rkube_linearizability::kv::check_history;
    use rkube_linearizability::watch::{check_reference, check_watch, resolve_unknown_writes};
    use rkube_linearizability::Budget;
    let mut problems = Vec::new();
    let report = check_history(ops, Budget::default());
    problems.extend(report.anomalies.iter().cloned());
    problems.extend(report.undecided.iter().cloned());
    let mut rr = Default::default();
    if let Some(reference) = reference {
        rr = check_reference(reference, ops);
        problems.extend(rr.anomalies.iter().cloned());
        let (settled, anomalies) = resolve_unknown_writes(ops, reference);
        problems.extend(anomalies);
        let settled = check_history(&settled, Budget::default());
        problems.extend(settled.anomalies.iter().cloned());
        problems.extend(settled.undecided.iter().cloned());
        for w in watches {
            problems.extend(check_watch(reference, w));
        }
    }
    problems.extend(tally.odd.iter().map(|o| format!("odd answer: {o}")));
    Checked {
        report,
        reference: rr,
        problems,
    }
}
