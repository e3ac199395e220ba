//! Where the cluster is and who we are: `--kubeconfig`, else
//! `$RKUBECONFIG`, else `~/.rkube/config` (if present), else
//! a plaintext cluster on the built-in default addresses. `-s/--server` (or
//! `RKUBE_SERVER`) replaces the file's addresses and keeps its TLS settings
//! and credentials. The file is kubeconfig-shaped (see
//! `rkube_api::kubeconfig`); the short form `servers: [...]` /
//! `namespace: dev` names a plaintext cluster.

use anyhow::{anyhow, bail, Result};
use rkube_api::client::DEFAULT_SERVERS;
use rkube_api::kubeconfig::{load_connect_config, ConnectConfig};
use std::path::PathBuf;

/// The config file path: `--kubeconfig` or `$RKUBECONFIG` (which must
/// exist), else `~/.rkube/config` (if it exists).
fn config_path(flag: Option<&std::path::Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = flag {
        if !p.exists() {
            bail!(
                "config file {} (from --kubeconfig) does not exist",
                p.display()
            );
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("RKUBECONFIG").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!(
                "config file {} (from RKUBECONFIG) does not exist",
                p.display()
            );
        }
        return Ok(Some(p));
    }
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let p = PathBuf::from(home).join(".rkube").join("config");
    Ok(p.is_file().then_some(p))
}

/// Resolves the connection settings; `server` is `-s` (or `RKUBE_SERVER`,
/// which clap already folded into it).
pub fn resolve(
    server: Option<&str>,
    kubeconfig: Option<&std::path::Path>,
) -> Result<ConnectConfig> {
    let server = server.map(str::trim).filter(|s| !s.is_empty());
    let mut cfg = match config_path(kubeconfig)? {
        Some(p) => load_connect_config(&p).map_err(|e| anyhow!(e))?,
        None => ConnectConfig::default(),
    };
    match server {
        Some(s) => cfg.servers = ConnectConfig::insecure(s).servers,
        None if cfg.servers.is_empty() => {
            cfg.servers = ConnectConfig::insecure(DEFAULT_SERVERS).servers
        }
        None => {}
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_and_overrides() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config");
        std::fs::write(
            &f,
            "servers: [127.0.0.1:7001, 127.0.0.1:7002]\nnamespace: dev\n",
        )
        .unwrap();
        let c = resolve(None, Some(&f)).unwrap();
        assert_eq!(c.servers, ["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert_eq!(c.namespace.as_deref(), Some("dev"));
        assert!(c.tls.is_none());
        let c = resolve(Some("a:1, b:2"), Some(&f)).unwrap();
        assert_eq!(c.servers, ["a:1", "b:2"]);
        std::fs::write(&f, "server: a:1\n").unwrap();
        assert!(resolve(None, Some(&f)).is_err());
        assert!(resolve(None, Some(&d.path().join("missing")))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }
}
