//! Throwaway network namespaces for the proxy's tests and benchmark.
//!
//! Everything the tests send must stay on this machine: a namespace made
//! here has only `lo`, with `unreachable` routes for the service and
//! cluster CIDRs, so a mistake cannot put a packet on a real network.
//! Network namespaces are per thread in Linux: [`Netns::enter`] moves the
//! *calling thread* (and so every socket it opens and every process it
//! spawns afterwards) into the namespace; the rest of the process stays
//! where it was. Dropping the `Netns` deletes the namespace, also when a
//! test panics.

use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;

/// The guard routes every test namespace gets (DESIGN.md, "Addresses").
pub const GUARDED_CIDRS: [&str; 2] = ["10.96.0.0/12", "10.244.0.0/16"];

pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `<prefix>-<random>` with `lo` up and the guard routes.
    pub fn create(prefix: &str) -> Result<Netns, String> {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        for cidr in GUARDED_CIDRS {
            ns.ip(&["route", "add", "unreachable", cidr])?;
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Adds an address (e.g. `10.244.0.11/32`) to the namespace's `lo`: a
    /// local address to stand in for a pod.
    pub fn add_address(&self, cidr: &str) -> Result<(), String> {
        self.ip(&["addr", "add", cidr, "dev", "lo"]).map(|_| ())
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) -> io::Result<()> {
        let f = std::fs::File::open(format!("/run/netns/{}", self.name))?;
        // SAFETY: setns on a descriptor we hold open; affects this thread only.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("deleting network namespace {}: {e}", self.name);
        }
    }
}

/// Why namespaces cannot be made here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2's `ip` is not installed".into());
    }
    None
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("running {cmd} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
