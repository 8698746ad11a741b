//! `rill server`: one task of a cluster. The job and task come from flags or `TF_CONFIG`
//! (exactly as TensorFlow and Kubeflow's TFJob set it); the server prints its address and
//! incarnation, serves until SIGTERM/SIGINT (or until its client closes the session, for
//! a ps task), and shuts down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rill_distributed::cluster::{ClusterSpec, TaskName, TfConfig};
use rill_distributed::server::{bind, serve, ServerOptions};
use rill_distributed::transport::{Security, TlsFiles, TOKEN_ENV};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The cluster spec as a JSON file ({"ps": [...], "worker": [...]}); default: TF_CONFIG.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// This task's job (default: TF_CONFIG's task.type).
    #[arg(long)]
    job: Option<String>,
    /// This task's index (default: TF_CONFIG's task.index).
    #[arg(long)]
    task: Option<usize>,
    /// Address to listen on (default: 127.0.0.1 and the task's port in the cluster spec).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// The cluster token every request must carry (default: $RILL_CLUSTER_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// PEM certificate chain for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate: peers must present a certificate it signed.
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// The name peers' certificates are checked against (default: the peer's host).
    #[arg(long)]
    tls_domain: Option<String>,
}

/// The security flags shared by `rill server` and cluster clients.
pub fn security(
    token: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    domain: Option<String>,
) -> Security {
    let token = token.or_else(|| std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()));
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            ca,
            domain,
        }),
        _ => None,
    };
    Security { token, tls }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let tf_config = TfConfig::from_env().context("reading TF_CONFIG")?;
    let cluster = match (&args.cluster, &tf_config) {
        (Some(path), _) => ClusterSpec::from_file(path)?,
        (None, Some(c)) => c.cluster.clone(),
        (None, None) => bail!("no cluster: pass --cluster FILE or set TF_CONFIG"),
    };
    let task = match (
        &args.job,
        args.task,
        tf_config.as_ref().and_then(|c| c.task.clone()),
    ) {
        (Some(job), index, _) => TaskName {
            job: job.clone(),
            task: index.unwrap_or(0),
        },
        (None, Some(index), Some(t)) => TaskName {
            job: t.job,
            task: index,
        },
        (None, None, Some(t)) => t,
        (None, _, None) => bail!("no task: pass --job and --task or set TF_CONFIG's task"),
    };
    let address = cluster
        .address(&task)
        .with_context(|| format!("{task} is not in the cluster"))?
        .to_string();
    let bind_to = match args.bind {
        Some(b) => b,
        None => {
            let port: u16 = address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .with_context(|| format!("no port in '{address}'"))?;
            SocketAddr::from(([127, 0, 0, 1], port))
        }
    };
    let security = security(
        args.token,
        args.tls_cert,
        args.tls_key,
        args.tls_ca,
        args.tls_domain,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        let listener = bind(bind_to, &security).await?;
        let incarnation = rill::runtime::device::random_incarnation();
        println!(
            "rill server {task} listening on {} incarnation {incarnation:016x}",
            listener.local_addr()?
        );
        let name = task.clone();
        serve(
            listener,
            ServerOptions {
                task,
                cluster,
                security,
            },
            incarnation,
            shutdown_signal(),
        )
        .await?;
        println!("rill server {name} stopped");
        anyhow::Ok(())
    });
    // Nothing is left to wait for: do not linger on idle runtime threads.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    outcome
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
