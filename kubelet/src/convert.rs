//! From a Pod to the runtime's sandbox and container configurations.

use crate::labels;
use rkube_api::proto::{Container, Pod, PodSpec};
use rkube_api::quantity::{parse_millis, parse_value};
use rkube_runtime::proto as rt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Identity of a pod, as everything in the kubelet names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodId {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodId {
    pub fn of(pod: &Pod) -> PodId {
        let m = pod.metadata.clone().unwrap_or_default();
        PodId {
            namespace: if m.namespace.is_empty() {
                "default".into()
            } else {
                m.namespace
            },
            name: m.name,
            uid: m.uid,
        }
    }
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (labels::POD_UID.to_string(), self.uid.clone()),
            (labels::POD_NAME.to_string(), self.name.clone()),
            (labels::POD_NAMESPACE.to_string(), self.namespace.clone()),
        ])
    }
}

/// Where a pod's files live on the node.
pub struct PodDirs {
    pub volumes: PathBuf,
    pub logs: PathBuf,
    pub root: PathBuf,
}

pub fn pod_dirs(root_dir: &Path, log_dir: &Path, id: &PodId) -> PodDirs {
    let root = root_dir.join("pods").join(&id.uid);
    PodDirs {
        volumes: root.join("volumes"),
        logs: log_dir.join(format!("{}_{}_{}", id.namespace, id.name, id.uid)),
        root,
    }
}

pub fn protocol(p: &str) -> rt::Protocol {
    match p {
        "UDP" => rt::Protocol::Udp,
        "SCTP" => rt::Protocol::Sctp,
        _ => rt::Protocol::Tcp,
    }
}

/// The sandbox for `pod`, attempt `attempt`.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    dns: rt::DnsConfig,
    cluster_domain: &str,
    log_directory: &Path,
) -> rt::PodSandboxConfig {
    let id = PodId::of(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut hostname = if spec.hostname.is_empty() {
        id.name.clone()
    } else {
        spec.hostname.clone()
    };
    hostname.truncate(63);
    let hostname = hostname.trim_end_matches(['-', '.']).to_string();
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter(|p| p.host_port > 0)
        .map(|p| rt::PortMapping {
            protocol: protocol(&p.protocol) as i32,
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        })
        .collect();
    rt::PodSandboxConfig {
        metadata: Some(rt::PodSandboxMetadata {
            name: id.name.clone(),
            uid: id.uid.clone(),
            namespace: id.namespace.clone(),
            attempt,
        }),
        hostname,
        log_directory: log_directory.display().to_string(),
        dns_config: Some(dns),
        port_mappings,
        labels: id.labels(),
        annotations: pod
            .metadata
            .as_ref()
            .map(|m| m.annotations.clone())
            .unwrap_or_default(),
        namespace_options: Some(rt::NamespaceOption {
            network: if spec.host_network {
                rt::NamespaceMode::Node as i32
            } else {
                rt::NamespaceMode::Pod as i32
            },
            pid: rt::NamespaceMode::Container as i32,
            ipc: rt::NamespaceMode::Pod as i32,
        }),
        host_aliases: vec![],
        subdomain: spec.subdomain.clone(),
        cluster_domain: cluster_domain.to_string(),
    }
}

/// cgroup settings from a container's requests and limits (as the kubelet
/// computes them: shares from the CPU request, CFS quota from the CPU limit
/// over a 100 ms period, the memory limit in bytes).
pub fn resources(c: &Container) -> Result<rt::LinuxContainerResources, String> {
    let r = c.resources.clone().unwrap_or_default();
    // The CPU request defaults to the limit, as in Kubernetes.
    let cpu_req = match (r.requests.get("cpu"), r.limits.get("cpu")) {
        (Some(q), _) => Some(
            parse_millis(q)
                .ok_or_else(|| format!("resources.requests.cpu: {q:?} is not a quantity"))?,
        ),
        (None, Some(q)) => Some(
            parse_millis(q)
                .ok_or_else(|| format!("resources.limits.cpu: {q:?} is not a quantity"))?,
        ),
        (None, None) => None,
    };
    let mut out = rt::LinuxContainerResources {
        cpu_shares: cpu_req.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2),
        ..Default::default()
    };
    if let Some(q) = r.limits.get("cpu") {
        let m = parse_millis(q)
            .ok_or_else(|| format!("resources.limits.cpu: {q:?} is not a quantity"))?;
        if m <= 0 {
            return Err(format!(
                "resources.limits.cpu: {q:?} must be greater than zero"
            ));
        }
        out.cpu_period = 100_000;
        out.cpu_quota = (m * 100_000 / 1000).max(1000);
    }
    if let Some(q) = r.limits.get("memory") {
        let b = parse_value(q)
            .ok_or_else(|| format!("resources.limits.memory: {q:?} is not a quantity"))?;
        if b < 4 << 20 {
            // runc cannot start anything in less; Kubernetes' runtimes
            // refuse such limits too.
            return Err(format!(
                "resources.limits.memory: {q:?} is below the minimum memory limit of 4Mi"
            ));
        }
        out.memory_limit_in_bytes = b;
    }
    Ok(out)
}

/// The container configuration for `c` in `pod`, attempt `attempt`.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    volume_dir: &Path,
) -> Result<rt::ContainerConfig, String> {
    let id = PodId::of(pod);
    let spec: PodSpec = pod.spec.clone().unwrap_or_default();
    let mut mounts = Vec::new();
    for vm in &c.volume_mounts {
        let Some(v) = spec.volumes.iter().find(|v| v.name == vm.name) else {
            return Err(format!(
                "volumeMounts[{}]: volume {:?} is not defined in spec.volumes",
                vm.mount_path, vm.name
            ));
        };
        let mut host = if let Some(hp) = &v.host_path {
            PathBuf::from(&hp.path)
        } else {
            volume_dir.join("empty-dir").join(&v.name)
        };
        if !vm.sub_path.is_empty() {
            if vm.sub_path.split('/').any(|p| p == "..") || vm.sub_path.starts_with('/') {
                return Err(format!(
                    "volumeMounts: subPath {:?} must be a relative path without '..'",
                    vm.sub_path
                ));
            }
            host = host.join(&vm.sub_path);
        }
        mounts.push(rt::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: vm.read_only,
        });
    }
    let mut labels = id.labels();
    labels.insert(crate::labels::CONTAINER_NAME.into(), c.name.clone());
    Ok(rt::ContainerConfig {
        metadata: Some(rt::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(rt::ImageSpec {
            image: c.image.clone(),
        }),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs: c
            .env
            .iter()
            .map(|e| rt::KeyValue {
                key: e.name.clone(),
                value: e.value.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations: HashMap::new(),
        log_path: format!("{}/{}.log", c.name, attempt),
        linux: Some(rt::LinuxContainerConfig {
            resources: Some(resources(c)?),
            security_context: None,
        }),
    })
}

/// Prepares the pod's volume directories (emptyDir, hostPath with a
/// Directory[OrCreate] type).
pub fn prepare_volumes(pod: &Pod, volume_dir: &Path) -> Result<(), String> {
    let spec = pod.spec.clone().unwrap_or_default();
    for v in &spec.volumes {
        if let Some(hp) = &v.host_path {
            let p = Path::new(&hp.path);
            match hp.r#type.as_str() {
                "DirectoryOrCreate" => std::fs::create_dir_all(p).map_err(|e| {
                    format!("volume {:?}: creating hostPath {}: {e}", v.name, hp.path)
                })?,
                "Directory" if !p.is_dir() => {
                    return Err(format!(
                        "volume {:?}: hostPath {} is not a directory",
                        v.name, hp.path
                    ))
                }
                "File" if !p.is_file() => {
                    return Err(format!(
                        "volume {:?}: hostPath {} is not a file",
                        v.name, hp.path
                    ))
                }
                _ => {}
            }
        } else {
            let d = volume_dir.join("empty-dir").join(&v.name);
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("volume {:?}: creating {}: {e}", v.name, d.display()))?;
        }
    }
    Ok(())
}

/// The image pull policy, defaulted as Kubernetes does (`Always` for
/// `:latest` or untagged images, else `IfNotPresent`).
pub fn pull_policy(c: &Container) -> &str {
    if !c.image_pull_policy.is_empty() {
        return &c.image_pull_policy;
    }
    let last = c.image.rsplit('/').next().unwrap_or("");
    if c.image.contains('@') {
        "IfNotPresent"
    } else if let Some((_, tag)) = last.rsplit_once(':') {
        if tag == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        }
    } else {
        "Always"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::ResourceRequirements;

    fn ctr(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            image: "busybox".into(),
            resources: Some(ResourceRequirements {
                limits: limits
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                requests: requests
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn resources_like_the_kubelet() {
        let r = resources(&ctr(
            &[("cpu", "500m"), ("memory", "64Mi")],
            &[("cpu", "250m")],
        ))
        .unwrap();
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        let r = resources(&ctr(&[], &[])).unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2, 0, 0)
        );
    }

    #[test]
    fn impossible_limits_are_named() {
        let e = resources(&ctr(&[("memory", "1Ki")], &[])).unwrap_err();
        assert!(e.contains("resources.limits.memory"), "{e}");
        let e = resources(&ctr(&[("cpu", "lots")], &[])).unwrap_err();
        assert!(e.contains("resources.limits.cpu"), "{e}");
    }

    #[test]
    fn pull_policy_defaults() {
        let mut c = Container {
            image: "nginx".into(),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c), "Always");
        c.image = "localhost:5000/nginx:1.2".into();
        assert_eq!(pull_policy(&c), "IfNotPresent");
        c.image = "localhost:5000/nginx".into();
        assert_eq!(pull_policy(&c), "Always");
        c.image_pull_policy = "Never".into();
        assert_eq!(pull_policy(&c), "Never");
    }
}
