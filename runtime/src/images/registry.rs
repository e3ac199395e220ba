//! A small OCI distribution client over plain HTTP (registries on loopback
//! or a node-local network; TLS is not spoken): pulls an image's manifest
//! (choosing this platform from an index), config and layers, verifying
//! every digest, and pushes images (tests seed their registry with it).
//! Anonymous and basic auth, and the bearer-token challenge, are handled.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::digest::{hex, hex_part, sha256};
use super::reference::Reference;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Why a pull failed, so the caller can tell "no such image" from the rest.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// A bearer token given outright.
    pub token: String,
}

/// What a pull fetched.
pub struct Pulled {
    pub manifest_digest: String,
    pub config: Vec<u8>,
    /// Downloaded (still compressed) layer blobs, lowest first.
    pub layer_blobs: Vec<PathBuf>,
}

pub struct RegistryClient {
    credentials: Credentials,
    token: tokio::sync::Mutex<Option<String>>,
}

impl RegistryClient {
    pub fn new(credentials: Credentials) -> RegistryClient {
        let token = (!credentials.token.is_empty()).then(|| credentials.token.clone());
        RegistryClient {
            credentials,
            token: tokio::sync::Mutex::new(token),
        }
    }

    /// Pulls `reference`, writing layer blobs under `dir`.
    pub async fn pull(&self, reference: &Reference, dir: &Path) -> Result<Pulled, PullError> {
        if reference.registry == "docker.io" {
            return Err(PullError::Other(anyhow!(
                "{reference}: docker.io is reached over HTTPS, which this runtime does not speak; \
                 load the image from an archive (LoadImage) or use a registry on the node's network"
            )));
        }
        let base = format!("http://{}/v2/{}", reference.registry, reference.repository);
        let (mut manifest, mut media_type) = self
            .manifest(&base, reference.manifest_ref(), reference)
            .await?;
        let mut manifest_digest = sha256(&manifest);
        if let Some(want) = &reference.digest {
            if *want != manifest_digest {
                return Err(anyhow!(
                    "{reference}: the registry sent a manifest with digest {manifest_digest}"
                )
                .into());
            }
        }
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            let index: Value =
                serde_json::from_slice(&manifest).context("decoding the image index")?;
            let digest = pick_platform(&index).ok_or_else(|| {
                PullError::NotFound(format!(
                    "{reference}: the image has no linux/{} variant",
                    platform_arch()
                ))
            })?;
            let (m, t) = self.manifest(&base, &digest, reference).await?;
            manifest_digest = sha256(&m);
            if manifest_digest != digest {
                return Err(anyhow!(
                    "{reference}: manifest {digest} arrived with digest {manifest_digest}"
                )
                .into());
            }
            manifest = m;
            media_type = t;
        }
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(anyhow!("{reference}: unsupported manifest type {media_type:?}").into());
        }
        let manifest: Value = serde_json::from_slice(&manifest).context("decoding the manifest")?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .context("the manifest has no config digest")?;
        let config = self.blob_bytes(&base, config_digest).await?;
        let mut layer_blobs = Vec::new();
        for layer in manifest["layers"]
            .as_array()
            .context("the manifest has no layers")?
        {
            let digest = layer["digest"].as_str().context("a layer has no digest")?;
            let path = dir.join(hex_part(digest).map_err(|e| anyhow!(e))?);
            self.blob_to_file(&base, digest, &path).await?;
            layer_blobs.push(path);
        }
        Ok(Pulled {
            manifest_digest,
            config,
            layer_blobs,
        })
    }

    async fn manifest(
        &self,
        base: &str,
        reference: &str,
        image: &Reference,
    ) -> Result<(Vec<u8>, String), PullError> {
        let accept = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
        let url = format!("{base}/manifests/{reference}");
        let resp = self
            .send(Method::GET, &url, &[("accept", &accept)], Bytes::new())
            .await?;
        let status = resp.status();
        let media_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let body = read_body(resp).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(PullError::NotFound(format!(
                    "{image}: not found in registry {} ({})",
                    image.registry,
                    registry_error(&body)
                )))
            }
            s => {
                return Err(
                    anyhow!("{image}: registry answered {s}: {}", registry_error(&body)).into(),
                )
            }
        }
        // Some registries answer with a generic type; the body says.
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                .unwrap_or_else(|| OCI_MANIFEST.to_string())
        } else {
            media_type
        };
        Ok((body, media_type))
    }

    async fn blob_bytes(&self, base: &str, digest: &str) -> anyhow::Result<Vec<u8>> {
        let resp = self
            .send(
                Method::GET,
                &format!("{base}/blobs/{digest}"),
                &[],
                Bytes::new(),
            )
            .await?;
        let status = resp.status();
        let body = read_body(resp).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "blob {digest}: registry answered {status}"
        );
        anyhow::ensure!(
            sha256(&body) == digest,
            "blob {digest} arrived with another digest"
        );
        Ok(body)
    }

    async fn blob_to_file(&self, base: &str, digest: &str, path: &Path) -> anyhow::Result<()> {
        let resp = self
            .send(
                Method::GET,
                &format!("{base}/blobs/{digest}"),
                &[],
                Bytes::new(),
            )
            .await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = read_body(resp).await.unwrap_or_default();
            bail!(
                "blob {digest}: registry answered {status}: {}",
                registry_error(&body)
            );
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .with_context(|| format!("creating {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.with_context(|| format!("downloading blob {digest}"))?;
            if let Some(data) = frame.data_ref() {
                hasher.update(data);
                file.write_all(data).await.context("writing a blob")?;
            }
        }
        file.flush().await?;
        let got = format!("sha256:{}", hex(&hasher.finalize()));
        anyhow::ensure!(got == digest, "blob {digest} arrived with digest {got}");
        Ok(())
    }

    /// Pushes an image: its blobs (skipping those the registry has), then
    /// the manifest under the reference's tag.
    pub async fn push(
        &self,
        reference: &Reference,
        blobs: &[(String, Vec<u8>)],
        manifest: &[u8],
        manifest_type: &str,
    ) -> anyhow::Result<()> {
        let base = format!("http://{}/v2/{}", reference.registry, reference.repository);
        for (digest, data) in blobs {
            let head = self
                .send(
                    Method::HEAD,
                    &format!("{base}/blobs/{digest}"),
                    &[],
                    Bytes::new(),
                )
                .await?;
            if head.status() == StatusCode::OK {
                continue;
            }
            let start = self
                .send(
                    Method::POST,
                    &format!("{base}/blobs/uploads/"),
                    &[],
                    Bytes::new(),
                )
                .await?;
            anyhow::ensure!(
                start.status() == StatusCode::ACCEPTED,
                "starting an upload: {}",
                start.status()
            );
            let location = start
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .context("the registry gave no upload location")?
                .to_string();
            let location = absolute(&base, &location);
            let sep = if location.contains('?') { '&' } else { '?' };
            let put = self
                .send(
                    Method::PUT,
                    &format!("{location}{sep}digest={digest}"),
                    &[("content-type", "application/octet-stream")],
                    Bytes::from(data.clone()),
                )
                .await?;
            let status = put.status();
            let body = read_body(put).await.unwrap_or_default();
            anyhow::ensure!(
                status == StatusCode::CREATED,
                "uploading {digest}: {status}: {}",
                registry_error(&body)
            );
        }
        let tag = reference.manifest_ref();
        let put = self
            .send(
                Method::PUT,
                &format!("{base}/manifests/{tag}"),
                &[("content-type", manifest_type)],
                Bytes::from(manifest.to_vec()),
            )
            .await?;
        let status = put.status();
        let body = read_body(put).await.unwrap_or_default();
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "putting the manifest: {status}: {}",
            registry_error(&body)
        );
        Ok(())
    }

    /// One request, following redirects and answering auth challenges.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut url = url.to_string();
        let mut challenged = false;
        for _ in 0..6 {
            let auth = self
                .token
                .lock()
                .await
                .clone()
                .map(|t| format!("Bearer {t}"));
            let auth = auth.or_else(|| self.basic());
            let resp = request(&method, &url, headers, auth.as_deref(), body.clone()).await?;
            match resp.status() {
                StatusCode::UNAUTHORIZED if !challenged => {
                    challenged = true;
                    let challenge = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    self.answer_challenge(&challenge).await?;
                }
                s if s.is_redirection() => {
                    let to = resp
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .context("a redirect without a location")?;
                    url = absolute(&url, to);
                }
                _ => return Ok(resp),
            }
        }
        bail!("{url}: too many redirects or auth rounds")
    }

    fn basic(&self) -> Option<String> {
        (!self.credentials.username.is_empty()).then(|| {
            let pair = format!(
                "{}:{}",
                self.credentials.username, self.credentials.password
            );
            format!("Basic {}", base64(pair.as_bytes()))
        })
    }

    async fn answer_challenge(&self, challenge: &str) -> anyhow::Result<()> {
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            anyhow::ensure!(
                challenge.starts_with("Basic") && self.basic().is_some(),
                "the registry wants credentials ({challenge})"
            );
            return Ok(());
        };
        let param = |key: &str| -> Option<String> {
            params.split(',').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm = param("realm").context("a bearer challenge without a realm")?;
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(v) = param(key) {
                query.push(format!("{key}={v}"));
            }
        }
        let url = format!("{realm}?{}", query.join("&"));
        let basic = self.basic();
        let resp = request(&Method::GET, &url, &[], basic.as_deref(), Bytes::new()).await?;
        let status = resp.status();
        let body = read_body(resp).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "getting a registry token from {realm}: {status}"
        );
        let v: Value = serde_json::from_slice(&body).context("decoding the registry token")?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .context("the token answer holds no token")?;
        *self.token.lock().await = Some(token.to_string());
        Ok(())
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn request(
    method: &Method,
    url: &str,
    headers: &[(&str, &str)],
    auth: Option<&str>,
    body: Bytes,
) -> anyhow::Result<Response<Incoming>> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// registries are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connecting to registry {addr}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .with_context(|| format!("talking HTTP to {addr}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", host)
        .header("user-agent", "rkube-runtime")
        .header("content-length", body.len());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let req = req.body(Full::new(body)).context("building a request")?;
    sender
        .send_request(req)
        .await
        .with_context(|| format!("{method} {url}"))
}

async fn read_body(resp: Response<Incoming>) -> anyhow::Result<Vec<u8>> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .context("reading a registry answer")?
        .to_bytes()
        .to_vec())
}

/// A registry's error body in one line.
fn registry_error(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let errs = v["errors"].as_array()?;
            Some(
                errs.iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(200)
                .collect()
        })
}

/// `location` made absolute against `base`'s scheme and host.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let host_end = base
        .strip_prefix("http://")
        .and_then(|r| r.find('/'))
        .map_or(base.len(), |i| i + "http://".len());
    format!("{}{}", &base[..host_end], location)
}

/// The manifest digest of this platform's variant in an index.
fn pick_platform(index: &Value) -> Option<String> {
    let arch = platform_arch();
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        (p["os"] == "linux" && p["architecture"] == arch)
            .then(|| m["digest"].as_str().map(str::to_string))?
    })
}

pub fn platform_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn resolves_locations() {
        assert_eq!(
            absolute(
                "http://127.0.0.1:5000/v2/x",
                "/v2/x/blobs/uploads/u?_state=1"
            ),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u?_state=1"
        );
        assert_eq!(absolute("http://a/v2", "http://b/c"), "http://b/c");
    }

    #[test]
    fn picks_this_platform() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "s390x"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": platform_arch()}}
        ]});
        assert_eq!(pick_platform(&index).as_deref(), Some("sha256:b"));
    }

    #[test]
    fn summarizes_registry_errors() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(registry_error(body), "MANIFEST_UNKNOWN: manifest unknown");
    }
}
