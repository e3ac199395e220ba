//! The node interface that holds ClusterIPs, driven through iproute2's `ip`.
//!
//! Each ClusterIP is a /32 on this interface, so the kernel treats it as a
//! local address and the proxy can listen on it. The interface is a
//! `dummy` when the kernel has that driver; kernels built without it (the
//! project's Firecracker VMs among them) get an empty `bridge` instead,
//! which has no ports and so, like a dummy, only holds addresses. Only
//! addresses inside the service CIDR are ever added or removed here.
//!
//! `ip` is used rather than netlink from Rust: it is on every node image,
//! its errors read well in logs, and address changes are rare events.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("interface name {0:?} is not valid (1-15 characters: letters, digits, '-', '_', '.')")]
    BadName(String),
    #[error("running `ip {args}`: {source}")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// The interface ClusterIPs live on.
#[derive(Clone, Debug)]
pub struct ServiceInterface {
    name: String,
}

impl ServiceInterface {
    /// Finds or creates the interface and brings it up.
    pub async fn ensure(name: &str) -> Result<ServiceInterface, IfaceError> {
        let valid = !name.is_empty()
            && name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(IfaceError::BadName(name.to_string()));
        }
        if ip(&["link", "show", "dev", name]).await.is_err() {
            match ip(&["link", "add", name, "type", "dummy"]).await {
                Ok(_) => tracing::info!(interface = name, "created dummy interface"),
                Err(IfaceError::Failed { stderr, .. })
                    if stderr.contains("Unknown device type")
                        || stderr.contains("not supported")
                        || stderr.contains("Operation not supported") =>
                {
                    tracing::info!(
                        interface = name,
                        "no dummy driver in this kernel; using an empty bridge instead"
                    );
                    ip(&["link", "add", name, "type", "bridge"]).await?;
                }
                Err(e) => return Err(e),
            }
        }
        ip(&["link", "set", "dev", name, "up"]).await?;
        Ok(ServiceInterface {
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The IPv4 addresses on the interface now.
    pub async fn addresses(&self) -> Result<BTreeSet<Ipv4Addr>, IfaceError> {
        let out = ip(&["-o", "-4", "addr", "show", "dev", &self.name]).await?;
        Ok(parse_addresses(&out))
    }

    /// Adds `ip/32` (idempotent).
    pub async fn add(&self, addr: Ipv4Addr) -> Result<(), IfaceError> {
        let a = format!("{addr}/32");
        ip(&["addr", "replace", &a, "dev", &self.name])
            .await
            .map(|_| ())
    }

    /// Removes `ip/32`; an address already gone is not an error.
    pub async fn remove(&self, addr: Ipv4Addr) -> Result<(), IfaceError> {
        let a = format!("{addr}/32");
        match ip(&["addr", "del", &a, "dev", &self.name]).await {
            Ok(_) => Ok(()),
            Err(IfaceError::Failed { stderr, .. })
                if stderr.contains("Cannot assign requested address") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Addresses from `ip -o -4 addr show` lines (`... inet 10.96.0.5/32 ...`).
fn parse_addresses(out: &str) -> BTreeSet<Ipv4Addr> {
    out.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            let cidr = words.next()?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect()
}

async fn ip(args: &[&str]) -> Result<String, IfaceError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| IfaceError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(IfaceError::Failed {
            args: joined,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_addr_output() {
        let out = "7: rkube-svc0    inet 10.96.0.5/32 scope global rkube-svc0\\       valid_lft forever preferred_lft forever\n\
                   7: rkube-svc0    inet 10.96.12.1/32 scope global rkube-svc0\\       valid_lft forever preferred_lft forever\n";
        let got: Vec<String> = parse_addresses(out).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, vec!["10.96.0.5", "10.96.12.1"]);
        assert!(parse_addresses("").is_empty());
    }
}
