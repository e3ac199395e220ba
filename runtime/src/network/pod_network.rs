//! The node's default pod network, as the design names it: the `bridge`
//! plugin on `cbr0` (the pods' gateway, no masquerade: pods reach pods
//! without NAT), `host-local` addresses from the node's pod CIDR, `portmap`
//! for hostPort and `firewall` (the FORWARD chain's policy is DROP where
//! Docker runs, and bridged pod traffic passes through it), plus `loopback`
//! for each pod's `lo`. The pod CIDR comes from a flag or from the kubelet
//! (UpdateRuntimeConfig) and is kept on disk across restarts.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::cni::{result_ips, Attachment, CniPlugins, NetworkList};
use crate::proto::{PodSandboxMetadata, PortMapping, Protocol};
use crate::records;

/// Settings of the default network (from flags).
#[derive(Clone, Debug)]
pub struct PodNetworkOptions {
    pub bin_dirs: Vec<PathBuf>,
    pub bridge: String,
    pub network_name: String,
    /// host-local's allocation files.
    pub ipam_data_dir: PathBuf,
    /// Where the chosen pod CIDR is persisted.
    pub state_file: PathBuf,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PersistedNetwork {
    pod_cidr: String,
}

/// What attaching a pod produced; kept in the sandbox's record because DEL
/// and CHECK need it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub ip: String,
    pub additional_ips: Vec<String>,
    pub result: Value,
}

pub struct PodNetwork {
    opts: PodNetworkOptions,
    plugins: CniPlugins,
    pod_cidr: RwLock<Option<String>>,
}

impl PodNetwork {
    /// Loads the persisted pod CIDR; `flag_cidr`, when given, wins.
    pub fn new(opts: PodNetworkOptions, flag_cidr: Option<&str>) -> anyhow::Result<PodNetwork> {
        let net = PodNetwork {
            plugins: CniPlugins {
                bin_dirs: opts.bin_dirs.clone(),
            },
            opts,
            pod_cidr: RwLock::new(None),
        };
        match flag_cidr {
            Some(cidr) => net.set_pod_cidr(cidr)?,
            None => {
                if let Some(saved) = records::read::<PersistedNetwork>(&net.opts.state_file)? {
                    if !saved.pod_cidr.is_empty() {
                        validate_cidr(&saved.pod_cidr)?;
                        *net.write_cidr() = Some(saved.pod_cidr);
                    }
                }
            }
        }
        Ok(net)
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn write_cidr(&self) -> std::sync::RwLockWriteGuard<'_, Option<String>> {
        self.pod_cidr.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (and persists) the node's pod CIDR. Pods already attached keep
    /// their addresses.
    pub fn set_pod_cidr(&self, cidr: &str) -> anyhow::Result<()> {
        validate_cidr(cidr)?;
        records::write(
            &self.opts.state_file,
            &PersistedNetwork {
                pod_cidr: cidr.to_string(),
            },
        )?;
        *self.write_cidr() = Some(cidr.to_string());
        Ok(())
    }

    /// Why pods cannot be attached yet, if they cannot.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.pod_cidr().is_none() {
            return Some(
                "no pod CIDR: start the shim with --pod-cidr or call UpdateRuntimeConfig".into(),
            );
        }
        for plugin in ["bridge", "host-local", "loopback", "portmap", "firewall"] {
            if !self.opts.bin_dirs.iter().any(|d| d.join(plugin).is_file()) {
                return Some(format!(
                    "CNI plugin {plugin} is missing from {:?} (install containernetworking-plugins)",
                    self.opts.bin_dirs
                ));
            }
        }
        None
    }

    /// The network configuration list for the current pod CIDR.
    pub fn network_list(&self) -> anyhow::Result<NetworkList> {
        let cidr = self
            .pod_cidr()
            .context("the pod network has no pod CIDR yet")?;
        NetworkList::parse(&self.conflist(&cidr))
    }

    fn conflist(&self, cidr: &str) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.opts.network_name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.opts.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.opts.ipam_data_dir,
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall", "backend": "iptables"}
            ]
        })
    }

    fn loopback_list() -> NetworkList {
        NetworkList {
            name: "cni-loopback".into(),
            cni_version: "1.0.0".into(),
            plugins: vec![json!({"type": "loopback"})
                .as_object()
                .cloned()
                .unwrap_or_default()],
        }
    }

    /// Attaches the pod's namespace: `lo` up, then `eth0` on the bridge with
    /// an address from the pod CIDR and the pod's host ports.
    pub async fn attach(
        &self,
        sandbox_id: &str,
        netns: &Path,
        meta: &PodSandboxMetadata,
        ports: &[PortMapping],
    ) -> anyhow::Result<NetworkAttachment> {
        let list = self.network_list()?;
        let lo = self.attachment(sandbox_id, netns, "lo", meta, &[]);
        self.plugins
            .add(&Self::loopback_list(), &lo)
            .await
            .context("bringing up lo")?;
        let att = self.attachment(sandbox_id, netns, "eth0", meta, ports);
        let result = self.plugins.add(&list, &att).await?;
        let mut ips = result_ips(&result, "eth0", netns);
        if ips.is_empty() {
            let _ = self.plugins.del(&list, &att, Some(&result)).await;
            anyhow::bail!("the pod network assigned no address: {result}");
        }
        let ip = ips.remove(0);
        Ok(NetworkAttachment {
            ip,
            additional_ips: ips,
            result,
        })
    }

    /// Detaches the pod (releasing its address and host ports). `netns` may
    /// be gone already; the plugins clean up what they can.
    pub async fn detach(
        &self,
        sandbox_id: &str,
        netns: Option<&Path>,
        meta: &PodSandboxMetadata,
        ports: &[PortMapping],
        prev: Option<&Value>,
    ) -> anyhow::Result<()> {
        let netns = netns.filter(|p| p.exists()).unwrap_or(Path::new(""));
        let att = self.attachment(sandbox_id, netns, "eth0", meta, ports);
        match self.network_list() {
            Ok(list) => self.plugins.del(&list, &att, prev).await,
            // Without a pod CIDR nothing can have been attached.
            Err(_) => Ok(()),
        }
    }

    /// CNI CHECK of an attached pod.
    pub async fn check(
        &self,
        sandbox_id: &str,
        netns: &Path,
        meta: &PodSandboxMetadata,
        ports: &[PortMapping],
        prev: &Value,
    ) -> anyhow::Result<()> {
        let list = self.network_list()?;
        let att = self.attachment(sandbox_id, netns, "eth0", meta, ports);
        self.plugins.check(&list, &att, prev).await
    }

    fn attachment(
        &self,
        sandbox_id: &str,
        netns: &Path,
        ifname: &str,
        meta: &PodSandboxMetadata,
        ports: &[PortMapping],
    ) -> Attachment {
        let mut capability_args = Map::new();
        if !ports.is_empty() {
            let mappings: Vec<Value> = ports
                .iter()
                .filter(|p| p.host_port > 0)
                .map(|p| {
                    let protocol = match Protocol::try_from(p.protocol) {
                        Ok(Protocol::Udp) => "udp",
                        Ok(Protocol::Sctp) => "sctp",
                        _ => "tcp",
                    };
                    let mut m = json!({
                        "hostPort": p.host_port,
                        "containerPort": p.container_port,
                        "protocol": protocol,
                    });
                    if !p.host_ip.is_empty() {
                        m["hostIP"] = json!(p.host_ip);
                    }
                    m
                })
                .collect();
            capability_args.insert("portMappings".into(), Value::Array(mappings));
        }
        Attachment {
            container_id: sandbox_id.to_string(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), meta.namespace.clone()),
                ("K8S_POD_NAME".into(), meta.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.to_string()),
                ("K8S_POD_UID".into(), meta.uid.clone()),
            ],
            capability_args,
        }
    }
}

/// An IPv4 network in CIDR notation with a usable host range.
fn validate_cidr(cidr: &str) -> anyhow::Result<()> {
    let (addr, len) = cidr
        .split_once('/')
        .with_context(|| format!("pod CIDR {cidr:?} is not address/length"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("pod CIDR {cidr:?}: bad IPv4 address"))?;
    let len: u32 = len
        .parse()
        .with_context(|| format!("pod CIDR {cidr:?}: bad prefix length"))?;
    anyhow::ensure!(
        (8..=29).contains(&len),
        "pod CIDR {cidr:?}: prefix length must be 8..29"
    );
    let mask = u32::MAX << (32 - len);
    anyhow::ensure!(
        u32::from(addr) & !mask == 0,
        "pod CIDR {cidr:?} has host bits set"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_pod_cidrs() {
        assert!(validate_cidr("10.244.1.0/24").is_ok());
        assert!(validate_cidr("10.244.1.1/24").is_err());
        assert!(validate_cidr("10.244.1.0").is_err());
        assert!(validate_cidr("10.244.1.0/31").is_err());
        assert!(validate_cidr("fd00::/64").is_err());
    }

    fn network(dir: &Path) -> PodNetwork {
        PodNetwork::new(
            PodNetworkOptions {
                bin_dirs: vec![dir.join("bin")],
                bridge: "cbr0".into(),
                network_name: "rkube".into(),
                ipam_data_dir: dir.join("ipam"),
                state_file: dir.join("network.json"),
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn pod_cidr_persists_and_shapes_the_conflist() {
        let dir = tempfile::tempdir().unwrap();
        let net = network(dir.path());
        assert!(net.not_ready_reason().unwrap().contains("no pod CIDR"));
        net.set_pod_cidr("10.244.3.0/24").unwrap();
        let again = network(dir.path());
        assert_eq!(again.pod_cidr().as_deref(), Some("10.244.3.0/24"));
        let list = again.network_list().unwrap();
        assert_eq!(list.plugins[0]["bridge"], "cbr0");
        assert_eq!(list.plugins[0]["ipMasq"], false);
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert!(again.not_ready_reason().unwrap().contains("missing"));
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let dir = tempfile::tempdir().unwrap();
        let net = network(dir.path());
        let ports = [
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            },
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        let att = net.attachment("id", Path::new("/x"), "eth0", &Default::default(), &ports);
        let mappings = att.capability_args["portMappings"].as_array().unwrap();
        assert_eq!(mappings.len(), 1);
        assert_eq!(mappings[0]["hostPort"], 8080);
        assert_eq!(mappings[0]["protocol"], "tcp");
    }
}
