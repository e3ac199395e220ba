//! rkube's cluster PKI: a CA made at bootstrap and every credential issued
//! from it (see docs/architecture.md, "Security").
//!
//! [`bootstrap`] is idempotent: an existing CA, certificate, key or token
//! file is kept; missing ones are made; kubeconfigs (derived from the rest)
//! are rewritten. So `scripts/up.sh` can run it on every start, and adding a
//! node is running it again with one more name.

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rkube_api::kubeconfig::{
    encode_data, identities as id, Cluster, Context as KcContext, Kubeconfig, NamedCluster,
    NamedContext, NamedUser, Servers, User, CONTROL_PLANE_SERVER_NAME,
};
use std::path::{Path, PathBuf};

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA.
pub struct Ca {
    pair: Pair,
}

/// Who a certificate names and what it may be used for.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// DNS names and IP addresses.
    pub sans: Vec<String>,
    pub server: bool,
    pub client: bool,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256, ten years).
    pub fn generate(name: &str) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            pair: Pair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        // Both must parse (and belong together: checked by issuing).
        KeyPair::from_pem(key_pem).context("the CA key does not parse")?;
        Issuer::from_ca_cert_pem(cert_pem, KeyPair::from_pem(key_pem)?)
            .context("the CA certificate does not parse")?;
        Ok(Ca {
            pair: Pair {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.pair.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.pair.key_pem
    }

    /// Issues a certificate for `s` (one year).
    pub fn issue(&self, s: &Subject) -> Result<Pair> {
        let issuer =
            Issuer::from_ca_cert_pem(&self.pair.cert_pem, KeyPair::from_pem(&self.pair.key_pem)?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for san in &s.sans {
            params
                .subject_alt_names
                .push(match san.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        san.clone()
                            .try_into()
                            .with_context(|| format!("{san:?} is not a DNS name or IP address"))?,
                    ),
                });
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, s.common_name.as_str());
        for o in &s.organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, o.as_str());
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if s.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if s.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What [`bootstrap`] makes.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Control-plane replica ids, each with extra SANs (addresses).
    pub replicas: Vec<(u64, Vec<String>)>,
    /// Node names.
    pub nodes: Vec<String>,
    /// The replicas' `host:port`, written into every kubeconfig.
    pub servers: Vec<String>,
}

/// File names inside a PKI directory.
pub fn replica_cert(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("control-plane-{id}.crt")),
        dir.join(format!("control-plane-{id}.key")),
    )
}

pub fn kubeconfig_path(dir: &Path, who: &str) -> PathBuf {
    dir.join(format!("{who}.kubeconfig"))
}

pub fn node_kubeconfig_path(dir: &Path, node: &str) -> PathBuf {
    kubeconfig_path(dir, &format!("node-{node}"))
}

pub const TOKENS_FILE: &str = "tokens.csv";
pub const ADMIN_TOKEN_USER: &str = "admin-token";

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn write_public(path: &Path, text: &str) -> Result<()> {
    write_private(path, text)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Loads the pair at (cert, key), or issues and writes it.
fn pair_at(ca: &Ca, cert: &Path, key: &Path, s: &Subject) -> Result<Pair> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(Pair {
            cert_pem: std::fs::read_to_string(cert)?,
            key_pem: std::fs::read_to_string(key)?,
        }),
        (false, false) => {
            let p = ca.issue(s)?;
            write_private(key, &p.key_pem)?;
            write_public(cert, &p.cert_pem)?;
            Ok(p)
        }
        _ => bail!(
            "{} and {} must both exist or both be missing",
            cert.display(),
            key.display()
        ),
    }
}

/// The CA of `dir`, made if missing.
pub fn ca_at(dir: &Path) -> Result<Ca> {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (cert.exists(), key.exists()) {
        (true, true) => Ca::from_pem(
            &std::fs::read_to_string(&cert)?,
            &std::fs::read_to_string(&key)?,
        )
        .with_context(|| format!("the CA in {}", dir.display())),
        (false, false) => {
            let ca = Ca::generate("rkube-ca")?;
            write_private(&key, ca.key_pem())?;
            write_public(&cert, ca.cert_pem())?;
            Ok(ca)
        }
        _ => bail!(
            "{}: ca.crt and ca.key must both exist or both be missing",
            dir.display()
        ),
    }
}

/// A kubeconfig for one identity.
pub fn kubeconfig(ca_pem: &str, servers: &[String], user: &str, cred: &User) -> Kubeconfig {
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: "rkube".into(),
            cluster: Cluster {
                server: servers.first().map(|s| format!("https://{s}")),
                servers: Servers::List(servers.to_vec()),
                certificate_authority_data: Some(encode_data(ca_pem.as_bytes())),
                tls_server_name: Some(CONTROL_PLANE_SERVER_NAME.into()),
                ..Default::default()
            },
        }],
        users: vec![NamedUser {
            name: user.into(),
            user: cred.clone(),
        }],
        contexts: vec![NamedContext {
            name: format!("{user}@rkube"),
            context: KcContext {
                cluster: "rkube".into(),
                user: user.into(),
                namespace: None,
            },
        }],
        current_context: Some(format!("{user}@rkube")),
        ..Default::default()
    }
}

fn cert_user(p: &Pair) -> User {
    User {
        client_certificate_data: Some(encode_data(p.cert_pem.as_bytes())),
        client_key_data: Some(encode_data(p.key_pem.as_bytes())),
        ..Default::default()
    }
}

fn write_kubeconfig(path: &Path, kc: &Kubeconfig) -> Result<()> {
    write_private(path, &serde_yaml::to_string(kc)?)
}

/// Makes (or completes) the PKI in `dir`.
pub fn bootstrap(dir: &Path, plan: &Plan) -> Result<()> {
    for n in &plan.nodes {
        if let Some(why) = rkube_api::validation::dns1123_subdomain_error(n) {
            bail!("node name {n:?}: {why}");
        }
    }
    if plan.servers.is_empty() {
        bail!("no servers given (the replicas' host:port, for the kubeconfigs)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = ca_at(dir)?;
    for (rid, sans) in &plan.replicas {
        let (c, k) = replica_cert(dir, *rid);
        let mut all = vec![CONTROL_PLANE_SERVER_NAME.to_string()];
        all.extend(sans.iter().cloned());
        pair_at(
            &ca,
            &c,
            &k,
            &Subject {
                common_name: format!("{}{rid}", id::USER_CONTROL_PLANE_PREFIX),
                organizations: vec![id::GROUP_CONTROL_PLANE.into()],
                sans: all,
                server: true,
                client: true,
            },
        )?;
    }
    let client = |cn: &str, orgs: &[&str], sans: Vec<String>, server: bool| Subject {
        common_name: cn.into(),
        organizations: orgs.iter().map(|s| s.to_string()).collect(),
        sans,
        server,
        client: true,
    };
    let admin = pair_at(
        &ca,
        &dir.join("admin.crt"),
        &dir.join("admin.key"),
        &client("admin", &[id::GROUP_MASTERS], vec![], false),
    )?;
    write_kubeconfig(
        &kubeconfig_path(dir, "admin"),
        &kubeconfig(
            &ca.pair.cert_pem,
            &plan.servers,
            "admin",
            &cert_user(&admin),
        ),
    )?;
    for (user, file) in [
        (id::USER_KUBE_PROXY, "kube-proxy"),
        (id::USER_KUBE_DNS, "kube-dns"),
    ] {
        let p = pair_at(
            &ca,
            &dir.join(format!("{file}.crt")),
            &dir.join(format!("{file}.key")),
            &client(user, &[], vec![], false),
        )?;
        write_kubeconfig(
            &kubeconfig_path(dir, file),
            &kubeconfig(&ca.pair.cert_pem, &plan.servers, file, &cert_user(&p)),
        )?;
    }
    for n in &plan.nodes {
        // The node certificate also serves the kubelet's endpoint, verified
        // under the node's name.
        let p = pair_at(
            &ca,
            &dir.join(format!("node-{n}.crt")),
            &dir.join(format!("node-{n}.key")),
            &client(
                &format!("{}{n}", id::NODE_USER_PREFIX),
                &[id::GROUP_NODES],
                vec![n.clone()],
                true,
            ),
        )?;
        write_kubeconfig(
            &node_kubeconfig_path(dir, n),
            &kubeconfig(
                &ca.pair.cert_pem,
                &plan.servers,
                &format!("node-{n}"),
                &cert_user(&p),
            ),
        )?;
    }
    // A static token for the admin (Kubernetes' --token-auth-file format).
    let tokens = dir.join(TOKENS_FILE);
    if !tokens.exists() {
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        write_private(
            &tokens,
            &format!(
                "{token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},\"{}\"\n",
                id::GROUP_MASTERS
            ),
        )?;
    }
    let text = std::fs::read_to_string(&tokens)?;
    let admin_token = text
        .lines()
        .find(|l| l.split(',').nth(1) == Some(ADMIN_TOKEN_USER))
        .and_then(|l| l.split(',').next())
        .map(str::to_string);
    if let Some(t) = admin_token {
        write_kubeconfig(
            &kubeconfig_path(dir, ADMIN_TOKEN_USER),
            &kubeconfig(
                &ca.pair.cert_pem,
                &plan.servers,
                ADMIN_TOKEN_USER,
                &User {
                    token: Some(t),
                    ..Default::default()
                },
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_is_idempotent_and_complete() {
        let d = tempfile::tempdir().unwrap();
        let plan = Plan {
            replicas: vec![(1, vec!["127.0.0.1".into()]), (2, vec![])],
            nodes: vec!["wn1".into()],
            servers: vec!["127.0.0.1:7001".into()],
        };
        bootstrap(d.path(), &plan).unwrap();
        let ca1 = std::fs::read_to_string(d.path().join("ca.crt")).unwrap();
        let node1 = std::fs::read_to_string(d.path().join("node-wn1.crt")).unwrap();
        let mut more = plan.clone();
        more.nodes.push("wn2".into());
        bootstrap(d.path(), &more).unwrap();
        assert_eq!(
            ca1,
            std::fs::read_to_string(d.path().join("ca.crt")).unwrap()
        );
        assert_eq!(
            node1,
            std::fs::read_to_string(d.path().join("node-wn1.crt")).unwrap()
        );
        assert!(d.path().join("node-wn2.kubeconfig").exists());
        let cfg =
            rkube_api::kubeconfig::load_connect_config(&d.path().join("admin.kubeconfig")).unwrap();
        assert_eq!(cfg.servers, ["127.0.0.1:7001"]);
        assert!(cfg.tls.unwrap().cert_pem.is_some());
        let tok =
            rkube_api::kubeconfig::load_connect_config(&d.path().join("admin-token.kubeconfig"))
                .unwrap();
        assert_eq!(tok.token.unwrap().len(), 64);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_plans_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let plan = Plan {
            nodes: vec!["Bad_Name".into()],
            servers: vec!["a:1".into()],
            ..Default::default()
        };
        assert!(bootstrap(d.path(), &plan)
            .unwrap_err()
            .to_string()
            .contains("Bad_Name"));
        assert!(!d.path().join("ca.crt").exists());
        std::fs::write(d.path().join("ca.crt"), "x").unwrap();
        let plan = Plan {
            servers: vec!["a:1".into()],
            ..Default::default()
        };
        assert!(bootstrap(d.path(), &plan)
            .unwrap_err()
            .to_string()
            .contains("both exist"));
    }
}
