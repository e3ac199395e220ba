//! Builds images without a registry or Docker: each layer is a directory
//! turned into a reproducible tar (sorted, mtime 0, gzip without a
//! timestamp), topped with an OCI config and manifest. `rkube-runtime
//! build-image` writes the result as an OCI archive; tests also push it to
//! a registry. The same inputs give the same bytes, so image ids are stable.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Map, Value};

use super::archive::{write_archive, ArchiveImage};
use super::digest::sha256;
use super::reference::Reference;
use super::registry::{platform_arch, OCI_MANIFEST};

/// `rkube-runtime build-image`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct BuildImageArgs {
    /// The image's name ("busybox", "docker.io/library/nginx:latest").
    #[arg(long)]
    pub name: String,
    /// A directory to become a layer, lowest first (repeat).
    #[arg(long = "layer", required = true)]
    pub layers: Vec<PathBuf>,
    /// One Entrypoint word (repeat).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Vec<String>,
    /// One Cmd word (repeat).
    #[arg(long, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// KEY=VALUE (repeat).
    #[arg(long)]
    pub env: Vec<String>,
    #[arg(long)]
    pub workdir: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    /// "80/tcp" (repeat).
    #[arg(long)]
    pub expose: Vec<String>,
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// The OCI archive to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// A built image: its blobs and manifest.
pub struct BuiltImage {
    pub reference: Reference,
    pub config: Vec<u8>,
    /// (digest, gzipped tar), lowest first.
    pub layers: Vec<(String, Vec<u8>)>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl BuiltImage {
    /// Config and layer blobs, as a registry push or an archive wants them.
    pub fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        let mut blobs = self.layers.clone();
        blobs.push((sha256(&self.config), self.config.clone()));
        blobs
    }

    pub fn write_archive(&self, out: &Path) -> anyhow::Result<()> {
        let blobs = self.blobs();
        write_archive(
            out,
            &[ArchiveImage {
                name: &self.reference,
                manifest: &self.manifest,
                manifest_digest: &self.manifest_digest,
                blobs: &blobs,
            }],
        )
    }
}

pub fn run(args: &BuildImageArgs) -> anyhow::Result<()> {
    let image = build(args)?;
    image.write_archive(&args.out)?;
    println!(
        "{} {} -> {}",
        image.reference,
        sha256(&image.config),
        args.out.display()
    );
    Ok(())
}

pub fn build(args: &BuildImageArgs) -> anyhow::Result<BuiltImage> {
    let reference = Reference::parse(&args.name).map_err(anyhow::Error::msg)?;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for dir in &args.layers {
        let tar = layer_tar(dir).with_context(|| format!("packing layer {}", dir.display()))?;
        diff_ids.push(sha256(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar)?;
        let gz = gz.finish()?;
        layers.push((sha256(&gz), gz));
    }
    let mut config = Map::new();
    let mut put = |k: &str, v: Value| {
        config.insert(k.to_string(), v);
    };
    if !args.env.is_empty() {
        put("Env", json!(args.env));
    }
    if !args.entrypoint.is_empty() {
        put("Entrypoint", json!(args.entrypoint));
    }
    if !args.cmd.is_empty() {
        put("Cmd", json!(args.cmd));
    }
    if let Some(w) = &args.workdir {
        put("WorkingDir", json!(w));
    }
    if let Some(u) = &args.user {
        put("User", json!(u));
    }
    if let Some(s) = &args.stop_signal {
        put("StopSignal", json!(s));
    }
    if !args.expose.is_empty() {
        let ports: Map<String, Value> =
            args.expose.iter().map(|p| (p.clone(), json!({}))).collect();
        put("ExposedPorts", Value::Object(ports));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": platform_arch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": (1..=args.layers.len()).map(|n| json!({
            "created": "1970-01-01T00:00:00Z",
            "created_by": format!("rkube-runtime build-image (layer {n})"),
        })).collect::<Vec<_>>(),
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": layers.iter().map(|(d, data)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": data.len(),
        })).collect::<Vec<_>>(),
    }))?;
    Ok(BuiltImage {
        reference,
        manifest_digest: sha256(&manifest),
        config,
        layers,
        manifest,
    })
}

/// A reproducible tar of `dir`: entries sorted by path, times zeroed,
/// owners and modes kept, hard links stored once.
pub fn layer_tar(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    let mut entries = Vec::new();
    while let Some(rel) = stack.pop() {
        let mut children: Vec<PathBuf> = fs::read_dir(dir.join(&rel))
            .with_context(|| format!("reading {}", dir.join(&rel).display()))?
            .map(|e| e.map(|e| rel.join(e.file_name())))
            .collect::<Result<_, _>>()?;
        children.sort();
        for child in children.into_iter().rev() {
            let meta = fs::symlink_metadata(dir.join(&child))?;
            if meta.is_dir() {
                stack.push(child.clone());
            }
            entries.push(child);
        }
    }
    entries.sort();
    for rel in entries {
        let full = dir.join(&rel);
        let meta = fs::symlink_metadata(&full)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(0);
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, &rel, std::io::empty())?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = fs::read_link(&full)?;
            tar.append_link(&mut h, &rel, &target)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, &rel, first)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let file = fs::File::open(&full)?;
            tar.append_data(&mut h, &rel, file)?;
        }
        // Devices, sockets and fifos do not belong in these images.
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::archive::read_archive;

    #[test]
    fn builds_the_same_bytes_twice_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("rootfs");
        fs::create_dir_all(layer.join("bin")).unwrap();
        fs::write(layer.join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::os::unix::fs::symlink("hello", layer.join("bin/hi")).unwrap();
        let args = BuildImageArgs {
            name: "hello:1".into(),
            layers: vec![layer],
            cmd: vec!["/bin/hello".into()],
            out: dir.path().join("hello.tar"),
            ..Default::default()
        };
        let a = build(&args).unwrap();
        let b = build(&args).unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        a.write_archive(&args.out).unwrap();
        let images = read_archive(&args.out, &dir.path().join("x")).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names[0].to_string(), "docker.io/library/hello:1");
        assert_eq!(images[0].manifest_digest, a.manifest_digest);
        assert_eq!(images[0].config, a.config);
    }
}
