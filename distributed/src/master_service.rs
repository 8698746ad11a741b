//! The master service: a client that is not a Rill library hands a whole graph to any
//! task, which runs it as a [`ClusterSession`] on the cluster it was started with.
//!
//! Invariants: every session lives until `CloseSession`; blocking session work runs on
//! blocking threads, never on the async runtime's workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rill_graph::{Error, Graph, Result, Tensor};
use tonic::{Request, Response, Status};

use crate::cluster::ClusterSpec;
use crate::master::{ClusterOptions, ClusterSession, Placement};
use crate::proto::master_service_server::MasterService;
use crate::proto::*;
use crate::status::to_status;
use crate::transport::Security;
use crate::wire;

pub struct MasterServiceImpl {
    cluster: ClusterSpec,
    security: Security,
    sessions: Arc<Mutex<HashMap<String, Arc<ClusterSession>>>>,
}

impl MasterServiceImpl {
    pub fn new(cluster: ClusterSpec, security: Security) -> MasterServiceImpl {
        MasterServiceImpl {
            cluster,
            security,
            sessions: Arc::default(),
        }
    }

    fn session(&self, handle: &str) -> Result<Arc<ClusterSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(handle)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no session '{handle}' on this master")))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<Response<T>, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("master work panicked: {e}")))?
        .map(Response::new)
        .map_err(|e| to_status(&e))
}

#[tonic::async_trait]
impl MasterService for MasterServiceImpl {
    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionResponse>, Status> {
        let r = request.into_inner();
        let cluster = self.cluster.clone();
        let sessions = self.sessions.clone();
        let config = r.config.unwrap_or_default();
        let options = ClusterOptions {
            optimize: config.optimize,
            placement: match config.placement.as_str() {
                "" | "replica_device_setter" => Placement::ReplicaDeviceSetter,
                "as_requested" => Placement::AsRequested,
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unknown placement '{other}'"
                    )))
                }
            },
            security: self.security.clone(),
            ..ClusterOptions::default()
        };
        let handle = tokio::runtime::Handle::current();
        blocking(move || {
            if cluster.is_empty() {
                return Err(Error::failed_precondition(
                    "this server was started without a cluster spec; it cannot be a master",
                ));
            }
            let graph = Graph::from_binary(&r.graph_def, rill_ops::registry())?;
            let session = ClusterSession::on_runtime(graph, cluster, options, handle)?;
            let id = session.handle().to_string();
            sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), Arc::new(session));
            Ok(CreateSessionResponse { session_handle: id })
        })
        .await
    }

    async fn run_step(
        &self,
        request: Request<RunStepRequest>,
    ) -> Result<Response<RunStepResponse>, Status> {
        let r = request.into_inner();
        let session = self.session(&r.session_handle).map_err(|e| to_status(&e))?;
        blocking(move || {
            let feeds = r
                .feeds
                .iter()
                .map(|f| {
                    let t = f.tensor.as_ref().ok_or_else(|| {
                        Error::invalid_argument(format!("feed '{}' has no tensor", f.name))
                    })?;
                    Ok((f.name.as_str(), wire::from_wire(t)?))
                })
                .collect::<Result<Vec<(&str, Tensor)>>>()?;
            let fetches: Vec<&str> = r.fetches.iter().map(String::as_str).collect();
            let targets: Vec<&str> = r.targets.iter().map(String::as_str).collect();
            let values = session.run(&feeds, &fetches, &targets)?;
            Ok(RunStepResponse {
                fetches: values.iter().map(wire::to_wire).collect(),
            })
        })
        .await
    }

    async fn close_session(
        &self,
        request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        let r = request.into_inner();
        let session = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&r.session_handle);
        let Some(session) = session else {
            return Err(Status::not_found(format!(
                "no session '{}'",
                r.session_handle
            )));
        };
        blocking(move || {
            session.close_with(r.shutdown_ps)?;
            Ok(CloseSessionResponse {})
        })
        .await
    }

    async fn list_devices(
        &self,
        _: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let cluster = self.cluster.clone();
        let security = self.security.clone();
        let handle = tokio::runtime::Handle::current();
        blocking(move || {
            let devices = crate::master::list_devices(&cluster, &security, &handle)?;
            Ok(ListDevicesResponse { devices })
        })
        .await
    }
}
