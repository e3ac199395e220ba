//! OCI image-layout archives (a tar holding `oci-layout`, `index.json` and
//! `blobs/sha256/...`), as `docker save` (OCI mode), `skopeo` and the
//! project's own builder write them: reading one yields the images it
//! holds, named by their `io.containerd.image.name` or
//! `org.opencontainers.image.ref.name` annotation.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::path::{Component, Path};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::digest::hex_part;
use super::reference::Reference;
use super::registry::{platform_arch, DOCKER_LIST, OCI_INDEX};
use super::store::ImageSource;

pub const NAME_ANNOTATION: &str = "io.containerd.image.name";
pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Extracts `archive` into `scratch` (an empty directory) and describes
/// every image in it.
pub fn read_archive(archive: &Path, scratch: &Path) -> anyhow::Result<Vec<ImageSource>> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    fs::create_dir_all(scratch.join("blobs/sha256"))?;
    for entry in tar.entries().context("reading the archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let parts: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let wanted = match parts.as_slice() {
            [f] if f == "index.json" || f == "oci-layout" => true,
            [b, s, h] if b == "blobs" && s == "sha256" => hex_part(&format!("sha256:{h}")).is_ok(),
            _ => false,
        };
        if wanted {
            entry
                .unpack(scratch.join(parts.join("/")))
                .with_context(|| format!("extracting {}", path.display()))?;
        }
    }
    let index_path = scratch.join("index.json");
    anyhow::ensure!(
        index_path.is_file(),
        "{} is not an OCI image layout archive (it has no index.json)",
        archive.display()
    );
    let index: Value = read_json(&index_path)?;
    let mut images = Vec::new();
    for desc in index["manifests"]
        .as_array()
        .context("index.json has no manifests")?
    {
        let names = names_of(desc);
        let mut digest = desc["digest"]
            .as_str()
            .context("a manifest without digest")?
            .to_string();
        let media_type = desc["mediaType"].as_str().unwrap_or_default();
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            let nested: Value = read_json(&blob(scratch, &digest)?)?;
            digest = nested["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| {
                    m["platform"]["os"] == "linux"
                        && m["platform"]["architecture"] == platform_arch()
                })
                .and_then(|m| m["digest"].as_str())
                .with_context(|| format!("no linux/{} image in {digest}", platform_arch()))?
                .to_string();
        }
        let manifest: Value = read_json(&blob(scratch, &digest)?)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .context("a manifest without config")?;
        let config = fs::read(blob(scratch, config_digest)?)
            .with_context(|| format!("reading config {config_digest}"))?;
        let layer_blobs = manifest["layers"]
            .as_array()
            .context("a manifest without layers")?
            .iter()
            .map(|l| blob(scratch, l["digest"].as_str().unwrap_or_default()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        images.push(ImageSource {
            config,
            manifest_digest: digest,
            layer_blobs,
            names,
        });
    }
    Ok(images)
}

fn names_of(desc: &Value) -> Vec<Reference> {
    let ann = &desc["annotations"];
    if let Some(full) = ann[NAME_ANNOTATION].as_str() {
        return Reference::parse(full).into_iter().collect();
    }
    // A bare tag ("latest") names no repository; only a full name counts.
    match ann[REF_ANNOTATION].as_str() {
        Some(r) if r.contains(':') || r.contains('/') => Reference::parse(r).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn blob(scratch: &Path, digest: &str) -> anyhow::Result<std::path::PathBuf> {
    let hex = hex_part(digest).map_err(anyhow::Error::msg)?;
    let path = scratch.join("blobs/sha256").join(hex);
    anyhow::ensure!(path.is_file(), "the archive lacks blob {digest}");
    Ok(path)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("decoding {}", path.display()))
}

/// One image to write into an archive.
pub struct ArchiveImage<'a> {
    pub name: &'a Reference,
    pub manifest: &'a [u8],
    pub manifest_digest: &'a str,
    /// Every blob the manifest refers to (config and layers).
    pub blobs: &'a [(String, Vec<u8>)],
}

/// Writes an OCI image-layout archive holding `images`, byte for byte the
/// same for the same input.
pub fn write_archive(out: &Path, images: &[ArchiveImage]) -> anyhow::Result<()> {
    if images.is_empty() {
        bail!("no images to write");
    }
    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut manifests = Vec::new();
    for image in images {
        for (digest, data) in image.blobs {
            blobs.insert(digest.clone(), data);
        }
        blobs.insert(image.manifest_digest.to_string(), image.manifest);
        manifests.push(json!({
            "mediaType": super::registry::OCI_MANIFEST,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {
                NAME_ANNOTATION: image.name.to_string(),
                REF_ANNOTATION: image.name.tag.clone().unwrap_or_else(|| "latest".into()),
            }
        }));
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests}))?;
    let layout = serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"}))?;
    let tmp = out.with_extension("tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |path: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append_data(&mut h, path, data)
            .with_context(|| format!("writing {path}"))
    };
    add("oci-layout", &layout)?;
    for (digest, data) in &blobs {
        let hex = hex_part(digest).map_err(anyhow::Error::msg)?;
        add(&format!("blobs/sha256/{hex}"), data)?;
    }
    add("index.json", &index)?;
    let mut w = tar.into_inner().context("finishing the archive")?;
    w.flush()?;
    drop(w);
    fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
