//! Who a caller is: the verified client certificate's CN and O, or the user
//! of a bearer token (see docs/architecture.md, "Security").

use std::collections::HashMap;
use std::sync::Arc;
use tonic::Status;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// The node name of a node credential (`system:node:<name>` in
    /// `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        use crate::kubeconfig::identities as id;
        if !self.in_group(id::GROUP_NODES) {
            return None;
        }
        self.user
            .strip_prefix(id::NODE_USER_PREFIX)
            .filter(|n| !n.is_empty())
    }
}

/// The CN (user) and O values (groups) of a DER certificate's subject.
pub fn identity_from_cert(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable client certificate: {e}"))?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .filter(|s| !s.is_empty())
        .ok_or("the client certificate has no common name")?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(Identity { user, groups })
}

/// The identity in the client certificate the TLS layer verified for `req`.
#[allow(clippy::result_large_err)]
pub fn certificate_identity<T>(req: &tonic::Request<T>) -> Result<Identity, Status> {
    match req.peer_certs() {
        Some(certs) if !certs.is_empty() => {
            identity_from_cert(certs[0].as_ref()).map_err(Status::unauthenticated)
        }
        _ => Err(Status::unauthenticated("no client certificate")),
    }
}

/// Static bearer tokens, read from a file in Kubernetes' `--token-auth-file`
/// format: `token,user,uid[,"group1,group2"]` per line.
#[derive(Clone, Debug, Default)]
pub struct Tokens(Arc<HashMap<String, Identity>>);

impl Tokens {
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, groups) = match line.find('"') {
                Some(q) => {
                    let rest = &line[q + 1..];
                    let end = rest
                        .find('"')
                        .ok_or_else(|| format!("line {}: unterminated quoted groups", i + 1))?;
                    if !rest[end + 1..].trim().is_empty() {
                        return Err(format!("line {}: text after the groups", i + 1));
                    }
                    (line[..q].trim_end_matches(','), &rest[..end])
                }
                None => (line, ""),
            };
            let fields: Vec<&str> = head.split(',').map(str::trim).collect();
            if fields.len() < 3 || fields.len() > 4 {
                return Err(format!(
                    "line {}: expected token,user,uid[,\"groups\"]",
                    i + 1
                ));
            }
            let (token, user) = (fields[0], fields[1]);
            if token.len() < 16 {
                return Err(format!(
                    "line {}: the token is shorter than 16 characters",
                    i + 1
                ));
            }
            if user.is_empty() {
                return Err(format!("line {}: empty user", i + 1));
            }
            let mut gs: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            if fields.len() == 4 && !fields[3].is_empty() {
                gs.push(fields[3].to_string());
            }
            if map
                .insert(
                    token.to_string(),
                    Identity {
                        user: user.to_string(),
                        groups: gs,
                    },
                )
                .is_some()
            {
                return Err(format!("line {}: the token appears twice", i + 1));
            }
        }
        Ok(Tokens(Arc::new(map)))
    }

    pub fn lookup(&self, token: &str) -> Option<&Identity> {
        self.0.get(token)
    }
}

/// How a server authenticates its callers.
#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    /// `false`: plaintext, nobody is asked who they are (`--insecure`).
    pub secure: bool,
    pub tokens: Tokens,
}

/// The identity every caller of an insecure server has.
pub fn insecure_identity() -> Identity {
    Identity {
        user: "insecure".into(),
        groups: vec![crate::kubeconfig::identities::GROUP_MASTERS.into()],
    }
}

impl Authenticator {
    /// Authenticates a request: a bearer token if one is sent (a bad one is
    /// refused even if a certificate is also presented), else the client
    /// certificate the TLS layer verified.
    pub fn authenticate<T>(&self, req: &tonic::Request<T>) -> Result<Identity, Status> {
        if !self.secure {
            return Ok(insecure_identity());
        }
        if let Some(h) = req.metadata().get("authorization") {
            let h = h
                .to_str()
                .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
            let token = h
                .strip_prefix("Bearer ")
                .ok_or_else(|| Status::unauthenticated("authorization is not a Bearer token"))?
                .trim();
            return self
                .tokens
                .lookup(token)
                .cloned()
                .ok_or_else(|| Status::unauthenticated("invalid bearer token"));
        }
        certificate_identity(req).map_err(|s| match req.peer_certs() {
            Some(c) if !c.is_empty() => s,
            _ => Status::unauthenticated(
                "anonymous requests are refused: present a client certificate or a bearer token",
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let t = Tokens::parse(
            "# comment\n0123456789abcdef0123,alice,u1,\"system:masters,dev\"\n\
             fedcba98765432100000,bob,u2\n",
        )
        .unwrap();
        let a = t.lookup("0123456789abcdef0123").unwrap();
        assert_eq!(a.user, "alice");
        assert_eq!(a.groups, ["system:masters", "dev"]);
        assert!(t.lookup("fedcba98765432100000").unwrap().groups.is_empty());
        assert!(t.lookup("nope").is_none());
        for bad in [
            "short,alice,u1\n",
            "0123456789abcdef0123,alice\n",
            "0123456789abcdef0123,,u1\n",
            "0123456789abcdef0123,alice,u1,\"g\n",
            "0123456789abcdef0123,a,u\n0123456789abcdef0123,b,u\n",
        ] {
            assert!(Tokens::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_names() {
        let n = Identity {
            user: "system:node:wn1".into(),
            groups: vec!["system:nodes".into()],
        };
        assert_eq!(n.node_name(), Some("wn1"));
        let not = Identity {
            user: "system:node:wn1".into(),
            groups: vec![],
        };
        assert_eq!(not.node_name(), None);
    }
}
