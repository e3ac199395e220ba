//! The node's image store: unpacked layers shared by every image that has
//! them (`layers/<diff id>/`, the overlay lower directories) and one record
//! per image (`images/<config digest>.json`: names, layers, config). Images
//! are found by id, by name (normalized) or by name@digest.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::digest::{hex_part, sha256};
use super::layers;
use super::reference::Reference;
use crate::proto;
use crate::records;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageRecord {
    /// "sha256:<digest of the config>".
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Layers, lowest first.
    pub diff_ids: Vec<String>,
    pub size: u64,
    /// The image configuration (OCI image config JSON).
    pub config: Value,
}

/// The defaults an image gives its containers.
#[derive(Clone, Debug, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
}

impl ImageRecord {
    pub fn defaults(&self) -> ImageDefaults {
        let c = &self.config["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let string = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ImageDefaults {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"]),
            working_dir: string(&c["WorkingDir"]),
            user: string(&c["User"]),
            stop_signal: string(&c["StopSignal"]),
        }
    }

    pub fn to_proto(&self) -> proto::Image {
        let user = self.defaults().user;
        let user = user.split(':').next().unwrap_or_default();
        let (uid, username) = match user.parse::<i64>() {
            Ok(uid) => (Some(proto::Int64Value { value: uid }), String::new()),
            Err(_) => (None, user.to_string()),
        };
        proto::Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.size,
            uid,
            username,
            spec: Some(proto::ImageSpec {
                image: self.id.clone(),
            }),
        }
    }
}

/// An image to add: its config, manifest digest, layer blobs and names.
pub struct ImageSource {
    pub config: Vec<u8>,
    pub manifest_digest: String,
    /// Layer blobs (gzipped or plain tars), lowest first.
    pub layer_blobs: Vec<PathBuf>,
    pub names: Vec<Reference>,
}

pub struct ImageStore {
    root: PathBuf,
    index: RwLock<BTreeMap<String, ImageRecord>>,
    /// Serializes changes (imports and removals) to the store.
    changing: Mutex<()>,
}

impl ImageStore {
    /// Opens (creating) the store under `root` and reads its records.
    pub fn open(root: &Path) -> anyhow::Result<ImageStore> {
        for dir in ["images", "layers", "tmp"] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        // Unfinished unpacks of a previous run.
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let mut index = BTreeMap::new();
        for entry in fs::read_dir(root.join("images"))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match records::read::<ImageRecord>(&path) {
                Ok(Some(rec)) => {
                    index.insert(rec.id.clone(), rec);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping image record {}: {e:#}", path.display()),
            }
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            index: RwLock::new(index),
            changing: Mutex::new(()),
        })
    }

    /// A scratch directory on the store's filesystem.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.read_index().values().cloned().collect()
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ImageRecord>> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ImageRecord>> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Finds an image by id ("sha256:<hex>" or the bare hex), by name
    /// ("nginx", "docker.io/library/nginx:latest") or by name@digest.
    pub fn resolve(&self, image: &str) -> Option<ImageRecord> {
        let index = self.read_index();
        let image = image.trim();
        let as_id = if image.len() == 64 && image.chars().all(|c| c.is_ascii_hexdigit()) {
            format!("sha256:{image}")
        } else {
            image.to_string()
        };
        if let Some(rec) = index.get(&as_id) {
            return Some(rec.clone());
        }
        let reference = Reference::parse(image).ok()?;
        if let Some(digest) = &reference.digest {
            let wanted = format!("{}@{digest}", reference.name());
            return index
                .values()
                .find(|r| r.repo_digests.contains(&wanted))
                .cloned();
        }
        let tagged = reference.tagged()?;
        index
            .values()
            .find(|r| r.repo_tags.contains(&tagged))
            .cloned()
    }

    /// The overlay lower directories of an image, lowest first.
    pub fn layer_dirs(&self, image: &ImageRecord) -> anyhow::Result<Vec<PathBuf>> {
        image.diff_ids.iter().map(|d| self.layer_dir(d)).collect()
    }

    fn layer_dir(&self, diff_id: &str) -> anyhow::Result<PathBuf> {
        let hex = hex_part(diff_id).map_err(anyhow::Error::msg)?;
        Ok(self.root.join("layers").join(hex))
    }

    /// Adds an image (unpacking the layers the store does not have yet) and
    /// points its names at it. Blocking: call from a blocking thread.
    pub fn import(&self, src: ImageSource) -> anyhow::Result<ImageRecord> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let id = sha256(&src.config);
        let config: Value =
            serde_json::from_slice(&src.config).context("the image config is not JSON")?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .context("the image config has no rootfs.diff_ids")?
            .iter()
            .map(|d| {
                d.as_str()
                    .map(str::to_string)
                    .context("a diff id is not a string")
            })
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(
            diff_ids.len() == src.layer_blobs.len(),
            "the image config lists {} layers but the manifest {}",
            diff_ids.len(),
            src.layer_blobs.len()
        );
        let mut size = 0;
        for (diff_id, blob) in diff_ids.iter().zip(&src.layer_blobs) {
            size += self.ensure_layer(diff_id, blob)?;
        }
        let mut record = ImageRecord {
            id: id.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            diff_ids,
            size,
            config,
        };
        let mut index = self.write_index();
        if let Some(old) = index.get(&id) {
            record.repo_tags = old.repo_tags.clone();
            record.repo_digests = old.repo_digests.clone();
        }
        let mut moved = Vec::new();
        for name in &src.names {
            if let Some(tagged) = name.tagged() {
                for other in index.values_mut().filter(|r| r.id != id) {
                    if let Some(at) = other.repo_tags.iter().position(|t| *t == tagged) {
                        other.repo_tags.remove(at);
                        moved.push(other.clone());
                    }
                }
                if !record.repo_tags.contains(&tagged) {
                    record.repo_tags.push(tagged);
                }
            }
            if !src.manifest_digest.is_empty() {
                let d = format!("{}@{}", name.name(), src.manifest_digest);
                if !record.repo_digests.contains(&d) {
                    record.repo_digests.push(d);
                }
            }
        }
        for other in &moved {
            records::write(&self.record_path(&other.id)?, other)?;
        }
        records::write(&self.record_path(&id)?, &record)?;
        index.insert(id, record.clone());
        Ok(record)
    }

    /// Unpacks a layer unless the store has it; returns its size.
    fn ensure_layer(&self, diff_id: &str, blob: &Path) -> anyhow::Result<u64> {
        let dir = self.layer_dir(diff_id)?;
        if dir.is_dir() {
            return Ok(dir_size(&dir));
        }
        let tmp = self.tmp_dir().join(format!("layer-{}", records::new_id()));
        let unpacked = layers::unpack(blob, &tmp);
        let unpacked = match unpacked {
            Ok(u) => u,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if unpacked.diff_id != diff_id {
            let _ = fs::remove_dir_all(&tmp);
            anyhow::bail!(
                "layer content does not match the image config: diff id {} but the config says {diff_id}",
                unpacked.diff_id
            );
        }
        fs::rename(&tmp, &dir).with_context(|| format!("moving layer to {}", dir.display()))?;
        Ok(unpacked.size)
    }

    fn record_path(&self, id: &str) -> anyhow::Result<PathBuf> {
        let hex = hex_part(id).map_err(anyhow::Error::msg)?;
        Ok(self.root.join("images").join(format!("{hex}.json")))
    }

    /// Removes an image (all its names) and every layer no remaining image
    /// and no container in `in_use` (diff ids) needs. None: no such image.
    pub fn remove(
        &self,
        image: &str,
        in_use: &HashSet<String>,
    ) -> anyhow::Result<Option<ImageRecord>> {
        let _changing = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(found) = self.resolve(image) else {
            return Ok(None);
        };
        let path = self.record_path(&found.id)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let mut index = self.write_index();
        index.remove(&found.id);
        let mut keep: HashSet<String> = in_use.clone();
        for rec in index.values() {
            keep.extend(rec.diff_ids.iter().cloned());
        }
        for diff_id in &found.diff_ids {
            if !keep.contains(diff_id) {
                let dir = self.layer_dir(diff_id)?;
                fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing layer {}", dir.display()))?;
            }
        }
        Ok(Some(found))
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(path: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
        b.into_inner().unwrap()
    }

    fn source(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> ImageSource {
        let mut blobs = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, (path, data)) in files.iter().enumerate() {
            let tar = tar_of(path, data);
            diff_ids.push(sha256(&tar));
            let blob = dir.join(format!("{name}-{i}"));
            fs::write(&blob, &tar).unwrap();
            blobs.push(blob);
        }
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "User": "1000"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        });
        ImageSource {
            config: serde_json::to_vec(&config).unwrap(),
            manifest_digest: sha256(name.as_bytes()),
            layer_blobs: blobs,
            names: vec![Reference::parse(name).unwrap()],
        }
    }

    #[test]
    fn import_resolve_share_layers_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let a = store
            .import(source(dir.path(), "busybox", &[("bin/sh", b"sh")]))
            .unwrap();
        let b = store
            .import(source(
                dir.path(),
                "nginx",
                &[("bin/sh", b"sh"), ("usr/sbin/nginx", b"n")],
            ))
            .unwrap();
        assert_eq!(a.diff_ids[0], b.diff_ids[0]);
        assert_eq!(store.resolve("busybox").unwrap().id, a.id);
        assert_eq!(
            store.resolve("docker.io/library/nginx:latest").unwrap().id,
            b.id
        );
        assert_eq!(store.resolve(&b.id).unwrap().id, b.id);
        assert_eq!(store.resolve(&b.repo_digests[0]).unwrap().id, b.id);
        assert!(store.resolve("nope").is_none());
        assert_eq!(a.to_proto().uid.unwrap().value, 1000);

        // Reopening reads the records back.
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        assert_eq!(store.list().len(), 2);
        let shared = store.layer_dirs(&a).unwrap()[0].clone();
        store.remove("nginx", &HashSet::new()).unwrap().unwrap();
        assert!(shared.is_dir(), "busybox still uses the shared layer");
        store.remove("busybox", &HashSet::new()).unwrap().unwrap();
        assert!(!shared.exists());
        assert!(store.remove("busybox", &HashSet::new()).unwrap().is_none());
    }

    #[test]
    fn a_tag_moves_to_the_newer_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let old = store
            .import(source(dir.path(), "echo", &[("a", b"1")]))
            .unwrap();
        let new = store
            .import(source(dir.path(), "echo", &[("a", b"2")]))
            .unwrap();
        assert_ne!(old.id, new.id);
        assert_eq!(store.resolve("echo").unwrap().id, new.id);
        assert!(store.resolve(&old.id).unwrap().repo_tags.is_empty());
    }

    #[test]
    fn refuses_layers_that_do_not_match_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        let mut src = source(dir.path(), "bad", &[("a", b"1")]);
        fs::write(&src.layer_blobs[0], tar_of("a", b"tampered")).unwrap();
        src.names.clear();
        let err = store.import(src).unwrap_err();
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    }
}
