//! ImageService: requests in, image verbs called, answers out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::images::registry::Credentials;
use crate::proto::image_service_server::ImageService;
use crate::proto::*;
use crate::records;
use crate::runtime::Runtime;

type Answer<T> = Result<Response<T>, Status>;

pub struct ImageApi {
    rt: Arc<Runtime>,
}

impl ImageApi {
    pub fn new(rt: Arc<Runtime>) -> Self {
        ImageApi { rt }
    }
}

fn image_of(spec: Option<ImageSpec>) -> Result<String, Status> {
    spec.map(|s| s.image)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Status::invalid_argument("image is required"))
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(&self, req: Request<ListImagesRequest>) -> Answer<ListImagesResponse> {
        let wanted = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let images = match wanted {
            Some(name) => self.rt.images.resolve(&name).into_iter().collect(),
            None => self.rt.images.list(),
        };
        Ok(Response::new(ListImagesResponse {
            images: images.iter().map(|i| i.to_proto()).collect(),
        }))
    }

    async fn image_status(&self, req: Request<ImageStatusRequest>) -> Answer<ImageStatusResponse> {
        let req = req.into_inner();
        let name = image_of(req.image)?;
        let found = self.rt.images.resolve(&name);
        let mut info = HashMap::new();
        if let (true, Some(image)) = (req.verbose, &found) {
            info.insert("config".into(), image.config.to_string());
        }
        Ok(Response::new(ImageStatusResponse {
            image: found.map(|i| i.to_proto()),
            info,
        }))
    }

    async fn pull_image(&self, req: Request<PullImageRequest>) -> Answer<PullImageResponse> {
        let req = req.into_inner();
        let name = image_of(req.image)?;
        let auth = req.auth.unwrap_or_default();
        let id = self
            .rt
            .pull_image(
                &name,
                Credentials {
                    username: auth.username,
                    password: auth.password,
                    token: auth.registry_token,
                },
            )
            .await?;
        Ok(Response::new(PullImageResponse { image_ref: id }))
    }

    async fn remove_image(&self, req: Request<RemoveImageRequest>) -> Answer<RemoveImageResponse> {
        let name = image_of(req.into_inner().image)?;
        self.rt.remove_image(&name).await?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn load_image(
        &self,
        req: Request<Streaming<LoadImageRequest>>,
    ) -> Answer<LoadImageResponse> {
        let mut input = req.into_inner();
        let mut path: Option<PathBuf> = None;
        let mut spool: Option<(PathBuf, tokio::fs::File)> = None;
        while let Some(msg) = input.message().await? {
            match msg.source {
                Some(load_image_request::Source::Path(p)) => path = Some(PathBuf::from(p)),
                Some(load_image_request::Source::Chunk(data)) => {
                    if spool.is_none() {
                        let p = self
                            .rt
                            .images
                            .tmp_dir()
                            .join(format!("upload-{}.tar", records::new_id()));
                        let f = tokio::fs::File::create(&p)
                            .await
                            .map_err(|e| Status::internal(format!("spooling the archive: {e}")))?;
                        spool = Some((p, f));
                    }
                    if let Some((_, f)) = spool.as_mut() {
                        f.write_all(&data)
                            .await
                            .map_err(|e| Status::internal(format!("spooling the archive: {e}")))?;
                    }
                }
                None => {}
            }
        }
        let (archive, cleanup) = match (path, spool) {
            (Some(p), None) => (p, None),
            (None, Some((p, mut f))) => {
                f.flush()
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                (p.clone(), Some(p))
            }
            (Some(_), Some((p, _))) => {
                let _ = std::fs::remove_file(p);
                return Err(Status::invalid_argument("send a path or chunks, not both"));
            }
            (None, None) => {
                return Err(Status::invalid_argument(
                    "no archive: send a path or chunks",
                ))
            }
        };
        let loaded = self.rt.load_image_archive(&archive).await;
        if let Some(p) = cleanup {
            let _ = std::fs::remove_file(p);
        }
        Ok(Response::new(LoadImageResponse {
            images: loaded?.iter().map(|i| i.to_proto()).collect(),
        }))
    }
}
