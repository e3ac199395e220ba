//! Routes between nodes: every node reaches every other node's pod CIDR via
//! that node's InternalIP (no overlay, no NAT), plus `unreachable` guard
//! routes for the cluster and service ranges so nothing addressed to them
//! ever leaves the node by the default route.
//!
//! Our routes carry their own protocol number (`proto 77`), so after a
//! restart the kubelet finds the routes it made before and removes those of
//! nodes that are gone.

use rkube_api::client::Client;
use rkube_api::proto::{object::Kind as Body, ListRequest, Node, WatchRequest};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio_stream::StreamExt;

pub const ROUTE_PROTO: &str = "77";

fn ip(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Installs the guard routes (idempotent).
pub fn install_guards(cidrs: &[String]) {
    for c in cidrs.iter().filter(|c| !c.is_empty()) {
        if let Err(e) = ip(&["route", "replace", "unreachable", c, "proto", ROUTE_PROTO]) {
            tracing::warn!(cidr = %c, error = %e, "guard route not installed");
        }
    }
}

/// The routes we want: pod CIDR -> node address, for every other node.
pub fn desired(nodes: &HashMap<String, Node>, me: &str) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    for (name, n) in nodes {
        if name == me {
            continue;
        }
        let cidr = n
            .spec
            .as_ref()
            .map(|s| s.pod_cidr.clone())
            .unwrap_or_default();
        let addr = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.iter().find(|a| a.r#type == "InternalIP"))
            .map(|a| a.address.clone())
            .unwrap_or_default();
        if !cidr.is_empty() && !addr.is_empty() {
            want.insert(cidr, addr);
        }
    }
    want
}

/// Our current `via` routes: destination -> gateway.
fn current() -> BTreeMap<String, String> {
    let mut have = BTreeMap::new();
    if let Ok(out) = ip(&["-4", "route", "show", "proto", ROUTE_PROTO]) {
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let Some(pos) = f.iter().position(|w| *w == "via") {
                if let Some(gw) = f.get(pos + 1) {
                    have.insert(f[0].to_string(), gw.to_string());
                }
            }
        }
    }
    have
}

/// Makes the routing table match `want` (only routes we own are touched).
pub fn sync(want: &BTreeMap<String, String>) {
    let have = current();
    for (dst, gw) in want {
        if have.get(dst) != Some(gw) {
            match ip(&["route", "replace", dst, "via", gw, "proto", ROUTE_PROTO]) {
                Ok(_) => tracing::info!(%dst, via = %gw, "route to node's pods installed"),
                Err(e) => tracing::warn!(%dst, via = %gw, error = %e, "route not installed"),
            }
        }
    }
    for dst in have.keys() {
        if !want.contains_key(dst) {
            match ip(&["route", "del", dst, "proto", ROUTE_PROTO]) {
                Ok(_) => tracing::info!(%dst, "route to a removed node's pods deleted"),
                Err(e) => tracing::warn!(%dst, error = %e, "stale route not deleted"),
            }
        }
    }
}

/// Watches Nodes and keeps the routes in step, forever.
pub async fn run(client: Client, me: String) {
    loop {
        if let Err(e) = watch_nodes(&client, &me).await {
            tracing::debug!(error = %e, "node watch ended; relisting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn watch_nodes(client: &Client, me: &str) -> anyhow::Result<()> {
    let list = client
        .list(ListRequest {
            kind: "Node".into(),
            ..Default::default()
        })
        .await?;
    let mut nodes: HashMap<String, Node> = HashMap::new();
    for o in list.items {
        if let Some(Body::Node(n)) = o.kind {
            let name = n
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            nodes.insert(name, n);
        }
    }
    let mut last = desired(&nodes, me);
    tokio::task::block_in_place(|| sync(&last));
    let mut stream = client
        .watch(WatchRequest {
            kind: "Node".into(),
            resource_version: list.resource_version,
            ..Default::default()
        })
        .await?;
    // A periodic resync repairs routes someone else removed.
    let mut resync = tokio::time::interval(Duration::from_secs(30));
    resync.tick().await;
    loop {
        tokio::select! {
            ev = stream.next() => {
                let Some(ev) = ev else { return Ok(()) };
                let ev = ev?;
                if let Some(Body::Node(n)) = ev.object.and_then(|o| o.kind) {
                    let name = n.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                    if ev.r#type == "DELETED" {
                        nodes.remove(&name);
                    } else {
                        nodes.insert(name, n);
                    }
                }
                let want = desired(&nodes, me);
                if want != last {
                    tokio::task::block_in_place(|| sync(&want));
                    last = want;
                }
            }
            _ = resync.tick() => {
                tokio::task::block_in_place(|| sync(&last));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{NodeAddress, NodeSpec, NodeStatus, ObjectMeta};

    fn node(name: &str, cidr: &str, ip: &str) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                pod_cidr: cidr.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: vec![NodeAddress {
                    r#type: "InternalIP".into(),
                    address: ip.into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn routes_to_every_other_node_with_a_cidr_and_address() {
        let mut nodes = HashMap::new();
        nodes.insert("a".into(), node("a", "10.244.1.0/24", "172.30.0.2"));
        nodes.insert("b".into(), node("b", "10.244.2.0/24", "172.30.0.3"));
        nodes.insert("c".into(), node("c", "", "172.30.0.4"));
        nodes.insert("d".into(), node("d", "10.244.4.0/24", ""));
        let want = desired(&nodes, "a");
        assert_eq!(want.len(), 1);
        assert_eq!(
            want.get("10.244.2.0/24").map(String::as_str),
            Some("172.30.0.3")
        );
    }
}
