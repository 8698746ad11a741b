//! A task's gRPC server: the worker service (and the master service, so a client can hand
//! a whole graph to any task), behind the cluster token check, over TLS when configured.
//! [`serve`] runs until its shutdown future resolves, or a master asks it to stop (a ps
//! task whose client closed its session).
//!
//! Invariants: the server listens where it is told (127.0.0.1 by default in the CLI);
//! without TLS and token on a non-loopback address it warns on stderr; message sizes are
//! not capped (large tensors stream through `RecvTensor`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rill_graph::{Error, Result};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};

use crate::cluster::{ClusterSpec, TaskName};
use crate::master_service::MasterServiceImpl;
use crate::proto::master_service_server::MasterServiceServer;
use crate::proto::worker_service_server::WorkerServiceServer;
use crate::recv_stream::ZeroCopyRecv;
use crate::transport::{CheckToken, Security, CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::worker::{Worker, WorkerServiceImpl};

/// What a server serves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub task: TaskName,
    /// The cluster (for the master service; workers learn it from each session).
    pub cluster: ClusterSpec,
    pub security: Security,
}

/// Binds `address`, warning when it is not loopback and the cluster is open.
pub async fn bind(address: SocketAddr, security: &Security) -> Result<TcpListener> {
    if !address.ip().is_loopback() && (security.tls.is_none() || security.token.is_none()) {
        eprintln!(
            "warning: serving on non-loopback {address} without {}: anyone who can reach \
             it can run graphs here",
            match (security.tls.is_none(), security.token.is_none()) {
                (true, true) => "TLS or a cluster token",
                (true, false) => "TLS",
                _ => "a cluster token",
            }
        );
    }
    TcpListener::bind(address).await.map_err(|e| {
        Error::new(
            rill_graph::Code::Unavailable,
            format!("cannot listen on {address}: {e}"),
        )
    })
}

/// Serves `listener` as `options.task` until `shutdown` resolves or a master stops it.
pub async fn serve(
    listener: TcpListener,
    options: ServerOptions,
    incarnation: u64,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let worker = Arc::new(Worker::new(
        options.task.clone(),
        incarnation,
        options.security.clone(),
    )?);
    serve_worker(listener, worker, options, shutdown).await
}

/// As [`serve`] with a worker made by the caller (who may watch its state).
pub async fn serve_worker(
    listener: TcpListener,
    worker: Arc<Worker>,
    options: ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let token = CheckToken(options.security.token.as_deref().map(Arc::from));
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_frame_size(Some(MAX_FRAME))
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)));
    if let Some(tls) = &options.security.tls {
        let mut config = ServerTlsConfig::new().identity(tls.identity()?);
        if let Some(ca) = tls.ca()? {
            config = config.client_ca_root(ca);
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| Error::invalid_argument(format!("TLS setup: {e}")))?;
    }
    let worker_service = ZeroCopyRecv::new(
        WorkerServiceServer::new(WorkerServiceImpl(worker.clone()))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
        worker.clone(),
    );
    let master_service = MasterServiceServer::new(MasterServiceImpl::new(
        options.cluster.clone(),
        options.security.clone(),
    ))
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    let stop = worker.shutdown.clone();
    let stopped_by_master = async move {
        stop.notified().await;
    };
    let until = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = stopped_by_master => {}
        }
    };
    builder
        .add_service(tonic::service::interceptor::InterceptedService::new(
            worker_service,
            token.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            master_service,
            token,
        ))
        .serve_with_incoming_shutdown(
            // The builder's tcp_nodelay does not reach sockets accepted from our listener.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            until,
        )
        .await
        .map_err(|e| Error::internal(format!("server for {} failed: {e}", options.task)))
}

/// A server running on a thread of its own (the embedded, in-process cluster).
pub struct InProcessServer {
    pub task: TaskName,
    pub address: SocketAddr,
    pub worker: Arc<Worker>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl InProcessServer {
    /// Starts `task` on a free loopback port.
    pub fn start(
        task: TaskName,
        cluster: ClusterSpec,
        security: Security,
    ) -> Result<InProcessServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("rill-{}", task.short()))
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start a runtime: {e}")))?;
        let listener =
            runtime.block_on(bind("127.0.0.1:0".parse().expect("loopback"), &security))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::internal(format!("no local address: {e}")))?;
        let worker = Arc::new(Worker::new(
            task.clone(),
            rill_runtime::device::random_incarnation(),
            security.clone(),
        )?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = ServerOptions {
            task: task.clone(),
            cluster,
            security,
        };
        let w = worker.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rill-server-{}", task.short()))
            .spawn(move || {
                runtime.block_on(serve_worker(listener, w, options, async move {
                    let _ = rx.await;
                }))
            })
            .map_err(|e| Error::internal(format!("cannot start a server thread: {e}")))?;
        Ok(InProcessServer {
            task,
            address,
            worker,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An in-process cluster: `ps` ps tasks and `workers` worker tasks on loopback, started
/// by the library (tests and examples need no launcher).
pub struct InProcessCluster {
    pub cluster: ClusterSpec,
    pub servers: Vec<InProcessServer>,
}

impl InProcessCluster {
    pub fn start(ps: usize, workers: usize, security: Security) -> Result<InProcessCluster> {
        if workers == 0 {
            return Err(Error::invalid_argument(
                "a cluster needs at least one worker",
            ));
        }
        let tasks: Vec<TaskName> = (0..workers)
            .map(|i| TaskName {
                job: "worker".into(),
                task: i,
            })
            .chain((0..ps).map(|i| TaskName {
                job: "ps".into(),
                task: i,
            }))
            .collect();
        // Servers learn the cluster per session; the master service of each gets it after
        // every address is known, so start them with an empty spec first.
        let mut servers = vec![];
        let mut cluster = ClusterSpec::new();
        for t in &tasks {
            let s = InProcessServer::start(t.clone(), ClusterSpec::new(), security.clone())?;
            cluster.add_task(&t.job, t.task, &s.address.to_string())?;
            servers.push(s);
        }
        Ok(InProcessCluster { cluster, servers })
    }
}
