//! The image verbs: pull from a registry, load OCI archives (also at start,
//! from --preload), remove (keeping layers that containers still use).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::images::archive::read_archive;
use crate::images::reference::Reference;
use crate::images::registry::{Credentials, PullError, RegistryClient};
use crate::images::store::{ImageRecord, ImageSource};
use crate::records;
use crate::runtime::Runtime;

/// What --preload loaded, so unchanged archives are not read again.
#[derive(Default, Serialize, Deserialize)]
struct PreloadStamps {
    /// Archive file name -> (size, mtime, image ids).
    archives: BTreeMap<String, (u64, i64, Vec<String>)>,
}

impl Runtime {
    #[tracing::instrument(skip(self, credentials))]
    pub async fn pull_image(&self, image: &str, credentials: Credentials) -> Result<String> {
        let reference = Reference::parse(image).map_err(RuntimeError::invalid)?;
        let dir = self
            .images
            .tmp_dir()
            .join(format!("pull-{}", records::new_id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let result = async {
            let pulled = RegistryClient::new(credentials)
                .pull(&reference, &dir)
                .await
                .map_err(|e| match e {
                    PullError::NotFound(m) => RuntimeError::NotFound(m),
                    PullError::Other(e) => {
                        RuntimeError::Internal(e.context(format!("pulling {reference}")))
                    }
                })?;
            let source = ImageSource {
                config: pulled.config,
                manifest_digest: pulled.manifest_digest,
                layer_blobs: pulled.layer_blobs,
                names: vec![reference.clone()],
            };
            self.import(source).await
        }
        .await;
        let _ = fs::remove_dir_all(&dir);
        let record = result?;
        tracing::info!(id = %record.id, "pulled");
        Ok(record.id)
    }

    async fn import(&self, source: ImageSource) -> Result<ImageRecord> {
        let images = self.images.clone();
        Ok(tokio::task::spawn_blocking(move || images.import(source))
            .await
            .context("the import task failed")??)
    }

    /// Loads every image of the OCI archive at `path`.
    #[tracing::instrument(skip(self))]
    pub async fn load_image_archive(&self, path: &Path) -> Result<Vec<ImageRecord>> {
        if !path.is_file() {
            return Err(RuntimeError::not_found(format!(
                "archive {} does not exist on the node",
                path.display()
            )));
        }
        let scratch = self
            .images
            .tmp_dir()
            .join(format!("load-{}", records::new_id()));
        let archive = path.to_path_buf();
        let dir = scratch.clone();
        let sources = tokio::task::spawn_blocking(move || read_archive(&archive, &dir))
            .await
            .context("the archive task failed")?;
        let result = async {
            let mut loaded = Vec::new();
            for source in sources? {
                loaded.push(self.import(source).await?);
            }
            Ok::<_, RuntimeError>(loaded)
        }
        .await;
        let _ = fs::remove_dir_all(&scratch);
        let loaded = result?;
        for image in &loaded {
            tracing::info!(id = %image.id, tags = ?image.repo_tags, "loaded");
        }
        Ok(loaded)
    }

    /// Removes an image; layers that containers use stay.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let in_use: HashSet<String> = self
            .all_containers()
            .iter()
            .flat_map(|c| c.record.diff_ids.clone())
            .collect();
        let images = self.images.clone();
        let image = image.to_string();
        let removed = tokio::task::spawn_blocking(move || images.remove(&image, &in_use))
            .await
            .context("the removal task failed")??;
        if let Some(r) = removed {
            tracing::info!(id = %r.id, "removed image");
        }
        Ok(())
    }

    /// Loads the archives (*.tar) in `dir` that changed since last time.
    pub async fn preload(&self, dir: &Path) -> anyhow::Result<()> {
        let stamps_path = self.opts.root.join("preloaded.json");
        let mut stamps: PreloadStamps = records::read(&stamps_path)?.unwrap_or_default();
        let mut archives: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("reading --preload {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("tar"))
            .collect();
        archives.sort();
        for path in archives {
            let meta = fs::metadata(&path)?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let fresh = stamps
                .archives
                .get(&name)
                .is_some_and(|(size, mtime, ids)| {
                    *size == meta.len()
                        && *mtime == meta.mtime()
                        && ids.iter().all(|id| self.images.resolve(id).is_some())
                });
            if fresh {
                continue;
            }
            let loaded = self
                .load_image_archive(&path)
                .await
                .map_err(|e| anyhow::anyhow!("preloading {}: {e}", path.display()))?;
            stamps.archives.insert(
                name,
                (
                    meta.len(),
                    meta.mtime(),
                    loaded.iter().map(|i| i.id.clone()).collect(),
                ),
            );
        }
        records::write(&stamps_path, &stamps)
    }
}
