//! The gRPC door onto the API handlers: request decoding, error codes.

use crate::handlers::{ApiError, Handlers, WatchSpec};
use rkube_api::proto::api_server::Api;
use rkube_api::proto::*;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

pub struct GrpcApi {
    pub handlers: Handlers,
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::Conflict(m) => Status::aborted(m),
            ApiError::Invalid(m) => Status::invalid_argument(m),
            ApiError::Forbidden(m) => Status::permission_denied(m),
            ApiError::Gone(m) => Status::out_of_range(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::OutcomeUnknown(m) => Status::deadline_exceeded(m),
            ApiError::Exhausted(m) => Status::resource_exhausted(m),
            ApiError::Internal(m) => Status::internal(m),
        }
    }
}

fn required<T>(v: Option<T>, what: &str) -> Result<T, Status> {
    v.ok_or_else(|| Status::invalid_argument(format!("{what}: Required value")))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Api for GrpcApi {
    async fn create(&self, r: Request<CreateRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        let obj = required(r.object, "object")?;
        Ok(Response::new(self.handlers.create(obj, r.dry_run).await?))
    }

    async fn get(&self, r: Request<GetRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .get(&r.kind, &r.namespace, &r.name, &r.resource_version)
                .await?,
        ))
    }

    async fn list(&self, r: Request<ListRequest>) -> Result<Response<ObjectList>, Status> {
        let r = r.into_inner();
        let (items, rev) = self
            .handlers
            .list(
                &r.kind,
                &r.namespace,
                &r.label_selector,
                &r.field_selector,
                &r.resource_version,
            )
            .await?;
        Ok(Response::new(ObjectList {
            items,
            resource_version: rev.to_string(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let r = r.into_inner();
        let rx = self
            .handlers
            .watch(WatchSpec {
                kind: r.kind,
                namespace: r.namespace,
                label_selector: r.label_selector,
                field_selector: r.field_selector,
                resource_version: r.resource_version,
                allow_bookmarks: r.allow_bookmarks,
            })
            .await?;
        let stream = ReceiverStream::new(rx).map(|ev| ev.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn update(&self, r: Request<UpdateRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        let obj = required(r.object, "object")?;
        Ok(Response::new(
            self.handlers.update(obj, false, r.dry_run).await?,
        ))
    }

    async fn update_status(&self, r: Request<UpdateRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        let obj = required(r.object, "object")?;
        Ok(Response::new(
            self.handlers.update(obj, true, r.dry_run).await?,
        ))
    }

    async fn patch(&self, r: Request<PatchRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .patch(
                    &r.kind,
                    &r.namespace,
                    &r.name,
                    &r.patch_type,
                    &r.patch,
                    r.status,
                )
                .await?,
        ))
    }

    async fn delete(&self, r: Request<DeleteRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .delete_with_grace(
                    &r.kind,
                    &r.namespace,
                    &r.name,
                    &r.propagation_policy,
                    r.preconditions,
                    r.grace_period_seconds,
                )
                .await?,
        ))
    }

    async fn get_scale(&self, r: Request<GetRequest>) -> Result<Response<Scale>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .get_scale(&r.kind, &r.namespace, &r.name)
                .await?,
        ))
    }

    async fn update_scale(&self, r: Request<ScaleRequest>) -> Result<Response<Scale>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .update_scale(
                    &r.kind,
                    &r.namespace,
                    &r.name,
                    r.replicas,
                    &r.resource_version,
                )
                .await?,
        ))
    }

    async fn bind(&self, r: Request<BindRequest>) -> Result<Response<Object>, Status> {
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .bind(&r.namespace, &r.name, &r.node_name, &r.uid)
                .await?,
        ))
    }

    async fn cluster_status(
        &self,
        _r: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let st = self
            .handlers
            .store()
            .status()
            .await
            .map_err(ApiError::from)?;
        let (revision, count) = {
            let sm = self.handlers.store().state();
            (sm.revision(), sm.len() as i64)
        };
        let members = self
            .handlers
            .peers()
            .iter()
            .map(|p| Member {
                id: p.id,
                address: p.address.clone(),
                is_leader: p.id == st.leader_id,
                reachable: st.peers_active.get(&p.id).copied().unwrap_or(p.id == st.id),
            })
            .collect();
        Ok(Response::new(ClusterStatusResponse {
            id: st.id,
            leader_id: st.leader_id,
            term: st.term,
            members,
            applied_index: st.applied,
            commit_index: st.commit,
            revision,
            snapshot_index: st.snapshot_index,
            first_log_index: st.first_index,
            last_log_index: st.last_index,
            object_count: count,
        }))
    }
}
