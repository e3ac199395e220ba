//! RuntimeService: requests in, runtime verbs called, answers out.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::oci::cri_log::{read_log, LogQuery};
use crate::oci::task::TaskStatus;
use crate::proto::runtime_service_server::RuntimeService;
use crate::proto::*;
use crate::runtime::{Runtime, API_VERSION, RUNTIME_NAME};

type Answer<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct RuntimeApi {
    rt: Arc<Runtime>,
}

impl RuntimeApi {
    pub fn new(rt: Arc<Runtime>) -> Self {
        RuntimeApi { rt }
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(&self, _: Request<VersionRequest>) -> Answer<VersionResponse> {
        Ok(Response::new(VersionResponse {
            version: API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: API_VERSION.into(),
        }))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Answer<StatusResponse> {
        let mut info = std::collections::HashMap::new();
        if req.into_inner().verbose {
            info.insert(
                "podCIDR".into(),
                self.rt.network.pod_cidr().unwrap_or_default(),
            );
            info.insert("cgroups".into(), format!("{:?}", self.rt.cgroups.version));
            info.insert("runc".into(), self.rt.runc.binary.display().to_string());
        }
        Ok(Response::new(StatusResponse {
            conditions: self.rt.conditions(),
            info,
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Answer<UpdateRuntimeConfigResponse> {
        let cidr = req
            .into_inner()
            .network_config
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            self.rt
                .network
                .set_pod_cidr(&cidr)
                .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        }
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Answer<RunPodSandboxResponse> {
        let id = self.rt.run_pod_sandbox(req.into_inner().config).await?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Answer<StopPodSandboxResponse> {
        self.rt
            .stop_pod_sandbox(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Answer<RemovePodSandboxResponse> {
        self.rt
            .remove_pod_sandbox(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Answer<PodSandboxStatusResponse> {
        let req = req.into_inner();
        let (status, info) = self
            .rt
            .pod_sandbox_status(&req.pod_sandbox_id, req.verbose)
            .await?;
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(status),
            info,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Answer<ListPodSandboxResponse> {
        Ok(Response::new(ListPodSandboxResponse {
            items: self.rt.list_pod_sandbox(req.into_inner().filter),
        }))
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Answer<CreateContainerResponse> {
        let req = req.into_inner();
        let id = self
            .rt
            .create_container(&req.pod_sandbox_id, req.config)
            .await?;
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Answer<StartContainerResponse> {
        self.rt
            .start_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Answer<StopContainerResponse> {
        let req = req.into_inner();
        self.rt
            .stop_container(&req.container_id, req.timeout)
            .await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Answer<RemoveContainerResponse> {
        self.rt
            .remove_container(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Answer<ListContainersResponse> {
        Ok(Response::new(ListContainersResponse {
            containers: self.rt.list_containers(req.into_inner().filter),
        }))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Answer<ContainerStatusResponse> {
        let status = self.rt.container_status(&req.into_inner().container_id)?;
        Ok(Response::new(ContainerStatusResponse {
            status: Some(status),
        }))
    }

    async fn exec_sync(&self, req: Request<ExecSyncRequest>) -> Answer<ExecSyncResponse> {
        let req = req.into_inner();
        let answer = self
            .rt
            .exec_sync(&req.container_id, &req.cmd, req.timeout)
            .await?;
        Ok(Response::new(answer))
    }

    type ExecStream = BoxStream<ExecResponse>;

    async fn exec(&self, req: Request<Streaming<ExecRequest>>) -> Answer<Self::ExecStream> {
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(ExecRequest {
                msg: Some(exec_request::Msg::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Exec message must be `start`",
                ))
            }
        };
        // Refuse at once (not in the stream) what cannot run.
        let container = self.rt.container(&start.container_id)?;
        if !matches!(container.task.status(), TaskStatus::Running(_)) {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                container.id
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        let rt = self.rt.clone();
        let input = Box::pin(
            input
                .take_while(|r| futures::future::ready(r.is_ok()))
                .filter_map(|r| futures::future::ready(r.ok())),
        );
        tokio::spawn(async move {
            if let Err(e) = rt.exec_stream(start, input, tx.clone()).await {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ContainerLogsStream = BoxStream<LogEntry>;

    async fn container_logs(
        &self,
        req: Request<ContainerLogsRequest>,
    ) -> Answer<Self::ContainerLogsStream> {
        let req = req.into_inner();
        let container = self.rt.container(&req.container_id)?;
        let path = container.record.log_path.clone();
        let task = container.task.clone();
        let query = LogQuery {
            follow: req.follow,
            tail_lines: req.tail_lines.max(0) as usize,
            since: req.since_time,
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let sink = tx.clone();
            let send = move |entry: LogEntry| {
                let sink = sink.clone();
                Box::pin(async move { sink.send(Ok(entry)).await.is_ok() })
                    as futures::future::BoxFuture<'static, bool>
            };
            // Following ends once the container has exited (or is gone).
            let exited =
                move || !task.dir.exists() || matches!(task.status(), TaskStatus::Exited(_));
            if let Err(e) = read_log(&path, query, send, exited).await {
                let _ = tx
                    .send(Err(Status::internal(format!(
                        "reading {}: {e}",
                        path.display()
                    ))))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type GetContainerEventsStream = BoxStream<ContainerEvent>;

    async fn get_container_events(
        &self,
        _: Request<GetEventsRequest>,
    ) -> Answer<Self::GetContainerEventsStream> {
        let events = BroadcastStream::new(self.rt.events.subscribe())
            .filter_map(|e| futures::future::ready(e.ok().map(Ok)));
        Ok(Response::new(Box::pin(events)))
    }
}
