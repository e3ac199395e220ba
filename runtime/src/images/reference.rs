//! Image references and their normal form, as Docker and containerd read
//! them: `nginx` is `docker.io/library/nginx:latest`; a first component with
//! a dot, a colon or `localhost` names a registry (`127.0.0.1:5000/echo`).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// "docker.io", "127.0.0.1:5000".
    pub registry: String,
    /// "library/nginx".
    pub repository: String,
    pub tag: Option<String>,
    /// "sha256:<hex>".
    pub digest: Option<String>,
}

const DEFAULT_REGISTRY: &str = "docker.io";

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty image reference".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| format!("{s:?}: only sha256 digests are supported"))?;
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("{s:?}: bad digest"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(format!("{s:?}: bad tag {tag:?}"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !ok {
            return Err(format!(
                "{s:?}: a repository is lowercase letters, digits and . _ - between slashes"
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// "docker.io/library/nginx".
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tagged form ("docker.io/library/nginx:latest"), if tagged.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// What the registry's manifest endpoint is asked for.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(norm("rkube/echo"), "docker.io/rkube/echo:latest");
        assert_eq!(norm("127.0.0.1:5000/echo:v1"), "127.0.0.1:5000/echo:v1");
        assert_eq!(norm("localhost/a/b"), "localhost/a/b:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/echo@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.registry, "127.0.0.1:5000");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "a//b",
            "x@sha256:12",
            "x@md5:ab",
            "nginx:bad tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
