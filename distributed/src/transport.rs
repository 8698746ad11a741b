//! How tasks reach each other: gRPC channels with deadlines, keepalives and large flow
//! control windows, optional TLS (rustls) and the cluster token every request carries.
//!
//! Invariants: with a token configured, a server answers a request without the exact
//! token `Unauthenticated` before any service code runs; every client request carries
//! the token; channels are created once per task and shared (they reconnect by
//! themselves); TLS, when configured, is used on both sides.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_graph::{Error, Result};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::cluster::{ClusterSpec, TaskName};
use crate::proto::worker_service_client::WorkerServiceClient;

/// The metadata key of the cluster token.
pub const TOKEN_KEY: &str = "rill-cluster-token";

/// HTTP/2 flow-control windows and frame size: large, so a tensor streams without
/// waiting for window updates and in few frames.
pub const STREAM_WINDOW: u32 = 64 << 20;
pub const CONNECTION_WINDOW: u32 = 256 << 20;
pub const MAX_FRAME: u32 = (1 << 24) - 1;

/// The environment variable the token is read from when no flag gives it.
pub const TOKEN_ENV: &str = "RILL_CLUSTER_TOKEN";

/// PEM files for TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// This task's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The cluster's CA: peers must present a certificate it signed (mutual TLS).
    pub ca: Option<PathBuf>,
    /// The name peers' certificates are checked against (default: the host of the
    /// address).
    pub domain: Option<String>,
}

/// Who may talk to the cluster.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The shared cluster token; `None`: requests need none.
    pub token: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl Security {
    /// The token from `RILL_CLUSTER_TOKEN`, no TLS.
    pub fn from_env() -> Security {
        Security {
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            tls: None,
        }
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::invalid_argument(format!("cannot read {}: {e}", path.display())))
}

impl TlsFiles {
    pub(crate) fn identity(&self) -> Result<Identity> {
        Ok(Identity::from_pem(read(&self.cert)?, read(&self.key)?))
    }

    pub(crate) fn ca(&self) -> Result<Option<Certificate>> {
        self.ca
            .as_ref()
            .map(|p| read(p).map(Certificate::from_pem))
            .transpose()
    }
}

/// Adds the token to every request.
#[derive(Clone)]
pub struct AddToken(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            request.metadata_mut().insert(TOKEN_KEY, t.clone());
        }
        Ok(request)
    }
}

/// Rejects requests without the token (server side).
#[derive(Clone)]
pub struct CheckToken(pub Option<Arc<str>>);

impl tonic::service::Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get(TOKEN_KEY)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, expected.as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "this cluster needs its token (rill-cluster-token) on every request",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, AddToken>>;

/// A channel to `address` ("host:port") with the cluster's security.
pub fn channel(address: &str, security: &Security) -> Result<Channel> {
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| Error::invalid_argument(format!("bad task address '{address}': {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_frame_size(Some(MAX_FRAME));
    if let Some(tls) = &security.tls {
        let host = address
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']))
            .unwrap_or(address);
        let mut config = ClientTlsConfig::new()
            .identity(tls.identity()?)
            .domain_name(tls.domain.clone().unwrap_or_else(|| host.to_string()));
        if let Some(ca) = tls.ca()? {
            config = config.ca_certificate(ca);
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| Error::invalid_argument(format!("TLS setup for '{address}': {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}

/// A worker-service client over `channel` carrying the token.
pub fn worker_client(channel: Channel, security: &Security) -> Result<WorkerClient> {
    let token = token_value(security)?;
    Ok(
        WorkerServiceClient::with_interceptor(channel, AddToken(token))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
    )
}

/// The token as a metadata value (`None` without one).
pub fn token_value(security: &Security) -> Result<Option<AsciiMetadataValue>> {
    security
        .token
        .as_deref()
        .map(MetadataValue::try_from)
        .transpose()
        .map_err(|_| Error::invalid_argument("the cluster token must be printable ASCII"))
}

/// Clients of every task of a cluster, made on first use.
pub struct Peers {
    pub cluster: ClusterSpec,
    pub security: Security,
    /// The token as request metadata, converted once.
    token: Option<AsciiMetadataValue>,
    /// The runtime the channels' connections run on.
    runtime: tokio::runtime::Handle,
    clients: Mutex<HashMap<TaskName, (Channel, WorkerClient)>>,
}

impl Peers {
    /// InvalidArgument when the token is not printable ASCII.
    pub fn new(
        cluster: ClusterSpec,
        security: Security,
        runtime: tokio::runtime::Handle,
    ) -> Result<Peers> {
        Ok(Peers {
            token: token_value(&security)?,
            cluster,
            security,
            runtime,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The cluster token as request metadata.
    pub fn token(&self) -> Option<&AsciiMetadataValue> {
        self.token.as_ref()
    }

    /// The worker service of `task`.
    pub fn worker(&self, task: &TaskName) -> Result<WorkerClient> {
        self.link(task).map(|(_, client)| client)
    }

    /// The channel to `task` (for calls made without the generated client).
    pub fn channel(&self, task: &TaskName) -> Result<Channel> {
        self.link(task).map(|(channel, _)| channel)
    }

    fn link(&self, task: &TaskName) -> Result<(Channel, WorkerClient)> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(task) {
            return Ok(c.clone());
        }
        let address = self.cluster.address(task)?;
        let _context = self.runtime.enter();
        let channel = channel(address, &self.security)?;
        let client = worker_client(channel.clone(), &self.security)?;
        clients.insert(task.clone(), (channel.clone(), client.clone()));
        Ok((channel, client))
    }
}

/// `request` with a deadline.
pub fn with_deadline<T>(message: T, deadline: Duration) -> Request<T> {
    let mut r = Request::new(message);
    r.set_timeout(deadline);
    r
}
