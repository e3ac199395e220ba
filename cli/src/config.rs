//! Where the control plane is: `-s/--server`, else `RKUBE_SERVER`, else the
//! config file (`$RKUBECONFIG` or `~/.rkube/config`, YAML `servers: [...]`),
//! else the built-in default. The config file may also name a default
//! namespace (`namespace: dev`).

use anyhow::{bail, Context, Result};
use rkube_api::client::DEFAULT_SERVERS;
use serde::Deserialize;
use std::path::PathBuf;

/// The config file's contents.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub servers: Servers,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `servers:` as a list or as one comma-separated string.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Servers {
    #[default]
    None,
    List(Vec<String>),
    Text(String),
}

impl Servers {
    fn joined(&self) -> Option<String> {
        let list = match self {
            Servers::None => return None,
            Servers::List(l) => l.iter().map(|s| s.trim().to_string()).collect::<Vec<_>>(),
            Servers::Text(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
        };
        let list: Vec<String> = list.into_iter().filter(|s| !s.is_empty()).collect();
        if list.is_empty() {
            None
        } else {
            Some(list.join(","))
        }
    }
}

/// What the command line resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Comma-separated `host:port` list.
    pub servers: String,
    /// The default namespace (before `-n`).
    pub namespace: Option<String>,
}

/// The config file path: `$RKUBECONFIG` (which must exist), else
/// `~/.rkube/config` (if it exists).
fn config_path() -> Result<Option<PathBuf>> {
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

/// Parses a config file's text.
pub fn parse_config(text: &str, source: &str) -> Result<ConfigFile> {
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_yaml::from_str(text).with_context(|| format!("invalid config file {source}"))
}

fn load_config() -> Result<ConfigFile> {
    match config_path()? {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read config file {}", p.display()))?;
            parse_config(&text, &p.display().to_string())
        }
        None => Ok(ConfigFile::default()),
    }
}

/// Resolves the settings; `flag` is `-s` (or `RKUBE_SERVER`, which clap
/// already folded into it).
pub fn resolve(flag: Option<&str>) -> Result<Settings> {
    let flag = flag.map(str::trim).filter(|s| !s.is_empty());
    let file = load_config()?;
    let servers = match flag {
        Some(s) => s.to_string(),
        None => file
            .servers
            .joined()
            .unwrap_or_else(|| DEFAULT_SERVERS.to_string()),
    };
    Ok(Settings {
        servers,
        namespace: file.namespace.filter(|n| !n.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_or_strings() {
        let c = parse_config("servers: [127.0.0.1:7001, 127.0.0.1:7002]\n", "x").unwrap();
        assert_eq!(
            c.servers.joined().as_deref(),
            Some("127.0.0.1:7001,127.0.0.1:7002")
        );
        let c = parse_config("servers:\n- a:1\n- b:2\nnamespace: dev\n", "x").unwrap();
        assert_eq!(c.servers.joined().as_deref(), Some("a:1,b:2"));
        assert_eq!(c.namespace.as_deref(), Some("dev"));
        let c = parse_config("servers: \"a:1, b:2\"\n", "x").unwrap();
        assert_eq!(c.servers.joined().as_deref(), Some("a:1,b:2"));
        assert_eq!(parse_config("", "x").unwrap(), ConfigFile::default());
        assert!(parse_config("server: a:1\n", "x").is_err());
    }
}
