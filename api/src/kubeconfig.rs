//! Connection settings: rkube's kubeconfig-shaped file.
//!
//! The file has Kubernetes' kubeconfig shape (`clusters`, `users`,
//! `contexts`, `current-context`, with `certificate-authority[-data]`,
//! `client-certificate[-data]`, `client-key[-data]`, `token`,
//! `tls-server-name`) plus rkube's `servers:` list on a cluster, since every
//! control-plane replica is dialled directly. The short form of earlier
//! versions (top-level `servers:` and `namespace:`, no credentials) is still
//! read: it means a plaintext cluster (`--insecure`).
//!
//! [`ConnectConfig`] is what a component needs to dial the API: addresses,
//! TLS material and credentials, resolved from the current context.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The name the control plane's serving certificates carry, which clients
/// verify instead of the address they dial (addresses are not known when
/// certificates are issued).
pub const CONTROL_PLANE_SERVER_NAME: &str = "control-plane.rkube.local";

/// Everything a client needs to reach the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectConfig {
    /// `host:port` of every replica.
    pub servers: Vec<String>,
    /// TLS settings; `None` is a plaintext (insecure) cluster.
    pub tls: Option<TlsConfig>,
    /// A bearer token sent with every call.
    pub token: Option<String>,
    /// The context's default namespace.
    pub namespace: Option<String>,
}

/// PEM material for a TLS client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_pem: Vec<u8>,
    /// Client certificate and key (mTLS identity), if any.
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    /// The name the server's certificate is verified against.
    pub server_name: String,
}

impl ConnectConfig {
    /// A plaintext configuration over a comma-separated address list.
    pub fn insecure(list: &str) -> ConnectConfig {
        ConnectConfig {
            servers: split_list(list),
            ..Default::default()
        }
    }
}

/// The file, as written and read.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(
        default,
        rename = "apiVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<NamedUser>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<NamedContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Short form: the replicas of a plaintext cluster.
    #[serde(default, skip_serializing_if = "Servers::is_none")]
    pub servers: Servers,
    /// Short form: the default namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<serde_yaml::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Cluster {
    /// One address (`https://host:port`), as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// rkube: every replica.
    #[serde(default, skip_serializing_if = "Servers::is_none")]
    pub servers: Servers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Plaintext (the control plane runs with `--insecure`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub cluster: String,
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `servers:` as a list or as one comma-separated string.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Servers {
    #[default]
    None,
    List(Vec<String>),
    Text(String),
}

impl Servers {
    pub fn is_none(&self) -> bool {
        matches!(self, Servers::None)
    }

    /// The addresses, trimmed, empty ones dropped.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Servers::None => Vec::new(),
            Servers::List(l) => l
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Servers::Text(t) => split_list(t),
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Strips a scheme: the client picks its own from the TLS settings.
pub(crate) fn strip_scheme(s: &str) -> String {
    s.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

impl Kubeconfig {
    /// Parses a file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Kubeconfig, String> {
        if text.trim().is_empty() {
            return Ok(Kubeconfig::default());
        }
        serde_yaml::from_str(text).map_err(|e| format!("invalid config file {source}: {e}"))
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Kubeconfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Kubeconfig::parse(&text, &path.display().to_string())
    }

    /// Resolves the current context (or `context`, if given) into connection
    /// settings. Relative file paths are read relative to `base` (the
    /// file's directory).
    pub fn resolve(&self, context: Option<&str>, base: &Path) -> Result<ConnectConfig, String> {
        if self.clusters.is_empty() && self.contexts.is_empty() && self.users.is_empty() {
            return Ok(ConnectConfig {
                servers: self.servers.to_vec(),
                tls: None,
                token: None,
                namespace: self.namespace.clone().filter(|n| !n.is_empty()),
            });
        }
        if !self.servers.is_none() {
            return Err("top-level `servers` cannot be mixed with `clusters`: \
                        put `servers` inside the cluster"
                .into());
        }
        let name = match context.or(self.current_context.as_deref()) {
            Some(n) => n,
            None if self.contexts.len() == 1 => self.contexts[0].name.as_str(),
            None => return Err("no current-context set and more than one context".into()),
        };
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("context {name:?} not found"))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| {
                format!(
                    "context {name:?}: cluster {:?} not found",
                    ctx.context.cluster
                )
            })?
            .cluster
            .clone();
        let user = if ctx.context.user.is_empty() {
            User::default()
        } else {
            self.users
                .iter()
                .find(|u| u.name == ctx.context.user)
                .ok_or_else(|| format!("context {name:?}: user {:?} not found", ctx.context.user))?
                .user
                .clone()
        };
        let mut servers: Vec<String> = cluster.servers.to_vec();
        if let Some(s) = &cluster.server {
            servers.extend(split_list(s));
        }
        let mut seen = std::collections::HashSet::new();
        let servers: Vec<String> = servers
            .iter()
            .map(|s| strip_scheme(s))
            .filter(|s| seen.insert(s.clone()))
            .collect();
        if servers.is_empty() {
            return Err(format!(
                "cluster {:?} has no `server` or `servers`",
                ctx.context.cluster
            ));
        }
        let token = match (&user.token, &user.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(base.join(f))
                    .map_err(|e| format!("token-file {f}: {e}"))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        }
        .filter(|t| !t.is_empty());
        let tls = if cluster.insecure {
            if user.client_certificate.is_some() || user.client_certificate_data.is_some() {
                return Err("an insecure cluster cannot use client certificates".into());
            }
            None
        } else {
            let ca_pem = material(
                "certificate-authority",
                &cluster.certificate_authority,
                &cluster.certificate_authority_data,
                base,
            )?
            .ok_or_else(|| {
                format!(
                    "cluster {:?} has no certificate-authority(-data) (set `insecure: true` \
                     for a plaintext cluster)",
                    ctx.context.cluster
                )
            })?;
            let cert_pem = material(
                "client-certificate",
                &user.client_certificate,
                &user.client_certificate_data,
                base,
            )?;
            let key_pem = material("client-key", &user.client_key, &user.client_key_data, base)?;
            if cert_pem.is_some() != key_pem.is_some() {
                return Err(format!(
                    "user {:?}: client-certificate and client-key go together",
                    ctx.context.user
                ));
            }
            Some(TlsConfig {
                ca_pem,
                cert_pem,
                key_pem,
                server_name: cluster
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| CONTROL_PLANE_SERVER_NAME.to_string()),
            })
        };
        Ok(ConnectConfig {
            servers,
            tls,
            token,
            namespace: ctx.context.namespace.clone().filter(|n| !n.is_empty()),
        })
    }
}

/// Reads PEM material given as a path or as base64 data.
fn material(
    what: &str,
    path: &Option<String>,
    data: &Option<String>,
    base: &Path,
) -> Result<Option<Vec<u8>>, String> {
    match (path, data) {
        (Some(_), Some(_)) => Err(format!("{what} and {what}-data are both set")),
        (Some(p), None) => {
            let p = base.join(p);
            std::fs::read(&p)
                .map(Some)
                .map_err(|e| format!("{what} {}: {e}", p.display()))
        }
        (None, Some(d)) => {
            use base64::Engine as _;
            let compact: String = d.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(Some)
                .map_err(|e| format!("{what}-data is not base64: {e}"))
        }
        (None, None) => Ok(None),
    }
}

/// Base64 of `bytes`, for `*-data` fields.
pub fn encode_data(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Loads `path` and resolves its current context.
pub fn load_connect_config(path: &Path) -> Result<ConnectConfig, String> {
    let kc = Kubeconfig::load(path)?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    kc.resolve(None, &base)
        .map_err(|e| format!("config file {}: {e}", path.display()))
}

/// What a daemon dials: `--kubeconfig` if given, else plaintext `--server`.
pub fn daemon_connect_config(
    kubeconfig: Option<&Path>,
    servers: &str,
) -> Result<ConnectConfig, String> {
    match kubeconfig {
        Some(p) => load_connect_config(p),
        None => Ok(ConnectConfig::insecure(servers)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
apiVersion: v1
kind: Config
current-context: admin@rkube
clusters:
- name: rkube
  cluster:
    server: https://10.0.0.1:7000
    servers: [10.0.0.1:7000, "10.0.0.2:7000", https://10.0.0.3:7000]
    certificate-authority-data: Q0EgUEVN
contexts:
- name: admin@rkube
  context: {cluster: rkube, user: admin, namespace: dev}
- name: node@rkube
  context: {cluster: rkube, user: node}
users:
- name: admin
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
- name: node
  user: {token: " abc "}
"#;

    #[test]
    fn resolves_the_current_context() {
        let kc = Kubeconfig::parse(FULL, "x").unwrap();
        let c = kc.resolve(None, Path::new(".")).unwrap();
        assert_eq!(
            c.servers,
            ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]
        );
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca_pem, b"CA PEM");
        assert_eq!(tls.cert_pem.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(tls.key_pem.as_deref(), Some(&b"KEY"[..]));
        assert_eq!(tls.server_name, CONTROL_PLANE_SERVER_NAME);
        assert_eq!(c.namespace.as_deref(), Some("dev"));
        let n = kc.resolve(Some("node@rkube"), Path::new(".")).unwrap();
        assert_eq!(n.token.as_deref(), Some("abc"));
        assert!(n.tls.unwrap().cert_pem.is_none());
    }

    #[test]
    fn short_form_is_plaintext() {
        let kc = Kubeconfig::parse("servers: [a:1, b:2]\nnamespace: dev\n", "x").unwrap();
        let c = kc.resolve(None, Path::new(".")).unwrap();
        assert_eq!(c.servers, ["a:1", "b:2"]);
        assert!(c.tls.is_none());
        let kc = Kubeconfig::parse("servers: \"a:1, b:2\"\n", "x").unwrap();
        assert_eq!(
            kc.resolve(None, Path::new(".")).unwrap().servers,
            ["a:1", "b:2"]
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        assert!(Kubeconfig::parse("server: a:1\n", "x")
            .unwrap_err()
            .contains("server"));
        let kc = Kubeconfig::parse(&FULL.replace("Q0EgUEVN", "not*base64"), "x").unwrap();
        assert!(kc
            .resolve(None, Path::new("."))
            .unwrap_err()
            .contains("certificate-authority-data is not base64"));
        let kc = Kubeconfig::parse(&FULL.replace("current-context: admin@rkube", ""), "x").unwrap();
        assert!(kc
            .resolve(None, Path::new("."))
            .unwrap_err()
            .contains("no current-context"));
        let kc = Kubeconfig::parse(&FULL.replace("user: admin,", "user: nobody,"), "x").unwrap();
        assert!(kc
            .resolve(None, Path::new("."))
            .unwrap_err()
            .contains("user \"nobody\" not found"));
        let kc = Kubeconfig::parse(
            &FULL.replace("    certificate-authority-data: Q0EgUEVN\n", ""),
            "x",
        )
        .unwrap();
        assert!(kc
            .resolve(None, Path::new("."))
            .unwrap_err()
            .contains("no certificate-authority"));
        let kc = Kubeconfig::parse(&FULL.replace(", client-key-data: S0VZ", ""), "x").unwrap();
        assert!(kc
            .resolve(None, Path::new("."))
            .unwrap_err()
            .contains("go together"));
    }

    #[test]
    fn writes_what_it_reads() {
        let kc = Kubeconfig::parse(FULL, "x").unwrap();
        let text = serde_yaml::to_string(&kc).unwrap();
        assert_eq!(Kubeconfig::parse(&text, "y").unwrap(), kc);
    }
}

/// The identities rkube's PKI issues and the control plane authorizes
/// (Kubernetes' names where Kubernetes has them).
pub mod identities {
    /// May do anything (the admin).
    pub const GROUP_MASTERS: &str = "system:masters";
    /// Control-plane replicas: Raft peers, and anything on the API.
    pub const GROUP_CONTROL_PLANE: &str = "system:control-plane";
    /// Every node's kubelet; its user is `system:node:<name>`.
    pub const GROUP_NODES: &str = "system:nodes";
    pub const NODE_USER_PREFIX: &str = "system:node:";
    pub const USER_KUBE_PROXY: &str = "system:kube-proxy";
    pub const USER_KUBE_DNS: &str = "system:kube-dns";
    pub const USER_CONTROL_PLANE_PREFIX: &str = "system:control-plane:";
}
