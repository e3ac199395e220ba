//! OCI runtime specs (`config.json`) for the two kinds of task: a pod's
//! pause process (new PID, mount, IPC and UTS namespaces; the pod's network
//! namespace by path) and a container (new PID and mount namespaces; the
//! pause process's network, IPC and UTS namespaces by path), with cgroup
//! limits from the container's resources.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::proto::LinuxContainerResources;

/// The capabilities a container gets unless it asks otherwise (Docker's
/// and containerd's default set).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Capability names by bit number (linux/capability.h).
const CAPABILITY_BITS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where a task's namespace comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// A new one of its own.
    New,
    /// Join the one at this path (/run/netns/..., /proc/<pid>/ns/...).
    Join(PathBuf),
    /// The host's.
    Host,
}

/// The pause process of a pod.
pub struct PauseSpec<'a> {
    pub rootfs: &'a Path,
    pub hostname: &'a str,
    pub network: Namespace,
    pub ipc: Namespace,
    pub uts: Namespace,
    pub cgroup: String,
}

pub fn pause_spec(p: &PauseSpec) -> anyhow::Result<Spec> {
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(vec!["/pause".to_string()])
        .env(vec!["PATH=/".to_string()])
        .cwd("/")
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(Capabilities::new())
                .effective(Capabilities::new())
                .permitted(Capabilities::new())
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()?,
        )
        .build()?;
    let mut process = process;
    // Inherit the shim's limits rather than oci-spec's default of 1024 files.
    process.set_rlimits(None);
    let mut namespaces = vec![ns(LinuxNamespaceType::Pid, &Namespace::New)?];
    namespaces.push(ns(LinuxNamespaceType::Mount, &Namespace::New)?);
    for (typ, how) in [
        (LinuxNamespaceType::Network, &p.network),
        (LinuxNamespaceType::Ipc, &p.ipc),
        (LinuxNamespaceType::Uts, &p.uts),
    ] {
        if *how != Namespace::Host {
            namespaces.push(ns(typ, how)?);
        }
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&p.cgroup))
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_all_devices()?])
                .cpu(LinuxCpuBuilder::default().shares(2u64).build()?)
                .build()?,
        )
        .masked_paths(strings(MASKED_PATHS))
        .readonly_paths(strings(READONLY_PATHS))
        .build()?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(
            RootBuilder::default()
                .path(p.rootfs)
                .readonly(true)
                .build()?,
        )
        .mounts(vec![
            mount("/proc", "proc", "proc", &[])?,
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=64k"],
            )?,
        ])
        .linux(linux)
        .build()?;
    // The builder starts from oci-spec's example spec; say what we mean.
    spec.set_hostname((p.uts == Namespace::New).then(|| p.hostname.to_string()));
    Ok(spec)
}

/// A user, as the container's process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A bind mount into the container.
#[derive(Clone, Debug)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// A container of a pod.
pub struct ContainerSpec<'a> {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: RunAs,
    pub rootfs: &'a Path,
    pub readonly_rootfs: bool,
    /// The pod's /dev/shm; None: a private one.
    pub shm: Option<&'a Path>,
    /// /etc/hosts, /etc/hostname, /etc/resolv.conf, then the config's.
    pub binds: Vec<BindMount>,
    pub network: Namespace,
    pub ipc: Namespace,
    pub uts: Namespace,
    pub cgroup: String,
    pub resources: Option<&'a LinuxContainerResources>,
    pub add_capabilities: &'a [String],
    pub drop_capabilities: &'a [String],
    pub privileged: bool,
    pub no_new_privileges: bool,
}

pub fn container_spec(c: &ContainerSpec) -> anyhow::Result<Spec> {
    let caps = capabilities(c.privileged, c.add_capabilities, c.drop_capabilities)?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(c.user.uid)
                .gid(c.user.gid)
                .additional_gids(c.user.additional_gids.clone())
                .build()?,
        )
        .args(c.args.clone())
        .env(c.env.clone())
        .cwd(c.cwd.clone())
        .no_new_privileges(c.no_new_privileges)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                // Not inheritable or ambient: a non-root user keeps none.
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()?,
        )
        .build()?;
    process.set_rlimits(None);
    if let Some(adj) = c.resources.map(|r| r.oom_score_adj).filter(|a| *a != 0) {
        process.set_oom_score_adj(Some(adj.clamp(-1000, 1000) as i32));
    }

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if c.privileged { "rw" } else { "ro" },
            ],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ];
    mounts.push(match c.shm {
        Some(shm) => bind(shm, "/dev/shm", false)?,
        None => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    });
    // A later mount of the same destination wins (the config's over the
    // pod's /etc files).
    let mut seen = HashSet::new();
    let binds: Vec<&BindMount> = c
        .binds
        .iter()
        .rev()
        .filter(|b| seen.insert(b.destination.trim_end_matches('/').to_string()))
        .collect();
    for b in binds.into_iter().rev() {
        mounts.push(bind(&b.source, &b.destination, b.readonly)?);
    }

    let mut namespaces = vec![
        ns(LinuxNamespaceType::Pid, &Namespace::New)?,
        ns(LinuxNamespaceType::Mount, &Namespace::New)?,
    ];
    for (typ, how) in [
        (LinuxNamespaceType::Network, &c.network),
        (LinuxNamespaceType::Ipc, &c.ipc),
        (LinuxNamespaceType::Uts, &c.uts),
    ] {
        if *how != Namespace::Host {
            namespaces.push(ns(typ, how)?);
        }
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&c.cgroup))
        .resources(resources(c.resources)?)
        .build()?;
    linux.set_masked_paths((!c.privileged).then(|| strings(MASKED_PATHS)));
    linux.set_readonly_paths((!c.privileged).then(|| strings(READONLY_PATHS)));
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(
            RootBuilder::default()
                .path(c.rootfs)
                .readonly(c.readonly_rootfs)
                .build()?,
        )
        .mounts(mounts)
        .linux(linux)
        .build()?;
    // The container joins the pause process's UTS namespace.
    spec.set_hostname(None);
    Ok(spec)
}

/// cgroup limits from the container's resources.
fn resources(r: Option<&LinuxContainerResources>) -> anyhow::Result<LinuxResources> {
    let mut b = LinuxResourcesBuilder::default().devices(vec![deny_all_devices()?]);
    let Some(r) = r else {
        return Ok(b.build()?);
    };
    if r.memory_limit_in_bytes > 0 {
        b = b.memory(
            LinuxMemoryBuilder::default()
                .limit(r.memory_limit_in_bytes)
                .build()?,
        );
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares as u64);
        any_cpu = true;
    }
    if r.cpu_quota > 0 {
        let period = if r.cpu_period > 0 {
            r.cpu_period
        } else {
            100_000
        };
        cpu = cpu.quota(r.cpu_quota).period(period as u64);
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(cpu.build()?);
    }
    if r.pids_limit > 0 {
        b = b.pids(LinuxPidsBuilder::default().limit(r.pids_limit).build()?);
    }
    Ok(b.build()?)
}

/// The container's capabilities: the default set (or, privileged, every
/// capability the host can grant), plus `add`, minus `drop`; "ALL" is
/// accepted in both. Capabilities the host itself lacks are left out so
/// runc does not refuse the container (e.g. CAP_SYS_RESOURCE in a Docker
/// node on these machines).
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> anyhow::Result<Capabilities> {
    let host = host_capabilities();
    let mut names: HashSet<String> = if privileged {
        host.clone()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    let norm = |n: &String| {
        n.trim()
            .to_uppercase()
            .trim_start_matches("CAP_")
            .to_string()
    };
    for a in add {
        let a = norm(a);
        if a == "ALL" {
            names.extend(host.iter().cloned());
        } else {
            names.insert(a);
        }
    }
    for d in drop {
        let d = norm(d);
        if d == "ALL" {
            names.clear();
        } else {
            names.remove(&d);
        }
    }
    let mut caps = Capabilities::new();
    for name in names.into_iter().filter(|n| host.contains(n)) {
        let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
            .with_context(|| format!("unknown capability {name:?}"))?;
        caps.insert(cap);
    }
    Ok(caps)
}

/// Names of the capabilities in this process's bounding set.
fn host_capabilities() -> HashSet<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    CAPABILITY_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

fn ns(typ: LinuxNamespaceType, how: &Namespace) -> anyhow::Result<LinuxNamespace> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match how {
        Namespace::Join(path) => b.path(path.clone()).build()?,
        _ => b.build()?,
    })
}

fn deny_all_devices() -> anyhow::Result<oci_spec::runtime::LinuxDeviceCgroup> {
    // runc adds the standard devices (null, zero, tty, ...) after this.
    Ok(LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> anyhow::Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(strings(options))
        .build()?)
}

fn bind(source: &Path, dest: &str, readonly: bool) -> anyhow::Result<Mount> {
    let mut options = vec!["rbind", "rprivate"];
    if readonly {
        options.push("ro");
    }
    Ok(MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(strings(&options))
        .build()?)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(caps: &Capabilities) -> HashSet<String> {
        caps.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn default_capabilities_with_add_and_drop() {
        let caps = capabilities(false, &["NET_ADMIN".into()], &["CAP_MKNOD".into()]).unwrap();
        let n = names(&caps);
        assert!(n.contains("NET_ADMIN") || !host_capabilities().contains("NET_ADMIN"));
        assert!(!n.contains("MKNOD"));
        assert!(n.contains("CHOWN"));
        assert!(capabilities(false, &[], &["ALL".into()])
            .unwrap()
            .is_empty());
        assert!(
            capabilities(false, &["NOPE".into()], &[]).is_ok(),
            "unknown names the host lacks are dropped"
        );
    }

    #[test]
    fn container_spec_joins_the_pods_namespaces_and_sets_limits() {
        let res = LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        };
        let spec = container_spec(&ContainerSpec {
            args: vec!["nginx".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: RunAs::default(),
            rootfs: Path::new("/r"),
            readonly_rootfs: false,
            shm: Some(Path::new("/pod/shm")),
            binds: vec![
                BindMount {
                    source: "/pod/hosts".into(),
                    destination: "/etc/hosts".into(),
                    readonly: false,
                },
                BindMount {
                    source: "/vol/hosts".into(),
                    destination: "/etc/hosts".into(),
                    readonly: true,
                },
            ],
            network: Namespace::Join("/run/netns/x".into()),
            ipc: Namespace::Join("/proc/7/ns/ipc".into()),
            uts: Namespace::Join("/proc/7/ns/uts".into()),
            cgroup: "/rkube/p/c".into(),
            resources: Some(&res),
            add_capabilities: &[],
            drop_capabilities: &[],
            privileged: false,
            no_new_privileges: false,
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let nss = json["linux"]["namespaces"].as_array().unwrap();
        assert!(nss
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/x"));
        assert!(nss
            .iter()
            .any(|n| n["type"] == "pid" && n.get("path").is_none()));
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["period"], 100_000);
        assert!(
            json.get("hostname").is_none(),
            "the UTS namespace is joined"
        );
        let hosts: Vec<_> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/etc/hosts")
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0]["source"], "/vol/hosts");
    }

    #[test]
    fn pause_spec_owns_uts_and_sets_the_hostname() {
        let spec = pause_spec(&PauseSpec {
            rootfs: Path::new("/pause"),
            hostname: "web-0",
            network: Namespace::Join("/run/netns/x".into()),
            ipc: Namespace::New,
            uts: Namespace::New,
            cgroup: "/rkube/p/pause".into(),
        })
        .unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));
        let host = pause_spec(&PauseSpec {
            rootfs: Path::new("/pause"),
            hostname: "node",
            network: Namespace::Host,
            ipc: Namespace::Host,
            uts: Namespace::Host,
            cgroup: "/rkube/p/pause".into(),
        })
        .unwrap();
        assert!(host.hostname().is_none());
    }
}
