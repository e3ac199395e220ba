//! The gRPC door onto the API handlers: request decoding, error codes.

use crate::auth::{authorize, denied, Decision, Verb};
use crate::handlers::{ApiError, Handlers, WatchSpec};
use rkube_api::auth::Authenticator;
use rkube_api::proto::api_server::Api;
use rkube_api::proto::*;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

pub struct GrpcApi {
    pub handlers: Handlers,
    pub auth: Authenticator,
}

impl GrpcApi {
    /// Authenticates the caller of `r` and authorizes `verb` on
    /// `kind namespace/name`; `new` is the object an update would store.
    async fn check<T>(
        &self,
        r: &Request<T>,
        verb: Verb,
        kind: &str,
        namespace: &str,
        name: &str,
        new: Option<&Object>,
    ) -> Result<(), Status> {
        let who = self.auth.authenticate(r)?;
        match authorize(&who, verb, kind, namespace, name) {
            Decision::Allow => Ok(()),
            Decision::Deny(m) => Err(denied(m)),
            Decision::IfPodOnNode(node) => {
                let refuse = || {
                    denied(format!(
                        "user {:?} may change only pods bound to node {node}: \
                         pod {namespace}/{name} is not",
                        who.user
                    ))
                };
                if let Some(o) = new {
                    if o.field("spec.nodeName").as_deref() != Some(node.as_str()) {
                        return Err(refuse());
                    }
                }
                let current = self.handlers.get("Pod", namespace, name, "").await?;
                if current.field("spec.nodeName").as_deref() != Some(node.as_str()) {
                    return Err(refuse());
                }
                Ok(())
            }
        }
    }
}

fn object_kind(o: &Object) -> &'static str {
    o.kind().map(|k| k.name()).unwrap_or("")
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
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
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
        if let Some(o) = &r.get_ref().object {
            self.check(
                &r,
                Verb::Create,
                object_kind(o),
                o.namespace(),
                o.name(),
                None,
            )
            .await?;
        } else {
            self.auth.authenticate(&r)?;
        }
        let r = r.into_inner();
        let obj = required(r.object, "object")?;
        Ok(Response::new(self.handlers.create(obj, r.dry_run).await?))
    }

    async fn get(&self, r: Request<GetRequest>) -> Result<Response<Object>, Status> {
        let g = r.get_ref();
        self.check(&r, Verb::Get, &g.kind, &g.namespace, &g.name, None)
            .await?;
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .get(&r.kind, &r.namespace, &r.name, &r.resource_version)
                .await?,
        ))
    }

    async fn list(&self, r: Request<ListRequest>) -> Result<Response<ObjectList>, Status> {
        let g = r.get_ref();
        self.check(&r, Verb::List, &g.kind, &g.namespace, "", None)
            .await?;
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
        let g = r.get_ref();
        self.check(&r, Verb::Watch, &g.kind, &g.namespace, "", None)
            .await?;
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
        if let Some(o) = &r.get_ref().object {
            self.check(
                &r,
                Verb::Update,
                object_kind(o),
                o.namespace(),
                o.name(),
                Some(o),
            )
            .await?;
        } else {
            self.auth.authenticate(&r)?;
        }
        let r = r.into_inner();
        let obj = required(r.object, "object")?;
        Ok(Response::new(
            self.handlers.update(obj, false, r.dry_run).await?,
        ))
    }

    async fn update_status(&self, r: Request<UpdateRequest>) -> Result<Response<Object>, Status> {
        if let Some(o) = &r.get_ref().object {
            self.check(
                &r,
                Verb::UpdateStatus,
                object_kind(o),
                o.namespace(),
                o.name(),
                Some(o),
            )
            .await?;
        } else {
            self.auth.authenticate(&r)?;
        }
        let r = r.into_inner();
        let obj = required(r.object, "object")?;
        Ok(Response::new(
            self.handlers.update(obj, true, r.dry_run).await?,
        ))
    }

    async fn patch(&self, r: Request<PatchRequest>) -> Result<Response<Object>, Status> {
        let g = r.get_ref();
        self.check(&r, Verb::Patch, &g.kind, &g.namespace, &g.name, None)
            .await?;
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
        let g = r.get_ref();
        self.check(&r, Verb::Delete, &g.kind, &g.namespace, &g.name, None)
            .await?;
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
        let g = r.get_ref();
        self.check(&r, Verb::GetScale, &g.kind, &g.namespace, &g.name, None)
            .await?;
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .get_scale(&r.kind, &r.namespace, &r.name)
                .await?,
        ))
    }

    async fn update_scale(&self, r: Request<ScaleRequest>) -> Result<Response<Scale>, Status> {
        let g = r.get_ref();
        self.check(&r, Verb::UpdateScale, &g.kind, &g.namespace, &g.name, None)
            .await?;
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
        let g = r.get_ref();
        self.check(&r, Verb::Bind, "Pod", &g.namespace, &g.name, None)
            .await?;
        let r = r.into_inner();
        Ok(Response::new(
            self.handlers
                .bind(&r.namespace, &r.name, &r.node_name, &r.uid)
                .await?,
        ))
    }

    async fn cluster_status(
        &self,
        r: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        // Any authenticated caller may see the cluster's health.
        self.auth.authenticate(&r)?;
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
        let members = crate::membership::members_of(&st)
            .into_iter()
            .map(member_message)
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

    async fn member_add(
        &self,
        r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberChangeResponse>, Status> {
        self.check_member_admin(&r)?;
        let req = r.into_inner();
        let (members, index) = self.handlers.member_add(req.id, &req.address).await?;
        Ok(Response::new(MemberChangeResponse {
            members: members.into_iter().map(member_message).collect(),
            index,
        }))
    }

    async fn member_remove(
        &self,
        r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberChangeResponse>, Status> {
        self.check_member_admin(&r)?;
        let req = r.into_inner();
        let (members, index) = self.handlers.member_remove(req.id).await?;
        Ok(Response::new(MemberChangeResponse {
            members: members.into_iter().map(member_message).collect(),
            index,
        }))
    }
}

impl GrpcApi {
    /// Membership changes are for cluster administrators (system:masters)
    /// and the replicas themselves.
    fn check_member_admin<T>(&self, r: &Request<T>) -> Result<(), Status> {
        let who = self.auth.authenticate(r)?;
        if self.auth.secure
            && !who.in_group(rkube_api::kubeconfig::identities::GROUP_MASTERS)
            && !who.in_group(rkube_api::kubeconfig::identities::GROUP_CONTROL_PLANE)
        {
            return Err(denied(format!(
                "user {:?} may not change the control-plane membership",
                who.user
            )));
        }
        Ok(())
    }
}

fn member_message(m: crate::membership::MemberView) -> Member {
    Member {
        id: m.id,
        address: m.address,
        is_leader: m.is_leader,
        reachable: m.reachable,
        learner: m.learner,
    }
}
