//! `rill launch`, the torchrun of Rill: starts a local cluster (P `ps` tasks and W `worker`
//! tasks, each a `rill server` process on a free loopback port), runs a command against it
//! and tears the cluster down when the command ends.
//!
//! Every child gets `RILL_CLUSTER_TOKEN`; each task gets `TF_CONFIG` with its own task, the
//! command gets `TF_CONFIG` with the cluster only (it is the client). Task output is
//! forwarded line by line with a `[ps:0] ` prefix; the command's stdio is inherited.
//!
//! Invariants: no child outlives the launcher. Every exit path (success, error, a task
//! dying, SIGINT/SIGTERM) goes through [`Group::shutdown`] (also run on drop), which sends
//! SIGTERM, waits up to 5 s, SIGKILLs what is left and reaps everything; on Linux each child
//! also gets SIGTERM from the kernel if the launcher itself is killed (`PR_SET_PDEATHSIG`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rill_distributed::cluster::{ClusterSpec, TaskName, TfConfig};

use crate::LaunchArgs;

const POLL: Duration = Duration::from_millis(50);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(5);
const TOKEN_ENV: &str = "RILL_CLUSTER_TOKEN";
const MAX_TASKS: usize = 256;

/// The last SIGINT/SIGTERM the launcher received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
}

/// Runs `rill launch`; returns the exit code for the launcher.
pub fn run(args: LaunchArgs) -> Result<i32> {
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if args.ps + args.workers > MAX_TASKS {
        bail!(
            "--ps + --workers is {}; at most {MAX_TASKS} tasks",
            args.ps + args.workers
        );
    }
    let Some((program, program_args)) = args.command.split_first() else {
        bail!("no command to run: rill launch --ps 1 --workers 2 -- <command> [args...]");
    };
    let token = cluster_token(args.token)?;
    let exe = std::env::current_exe().context("finding the rill executable")?;

    let ports = free_ports(&args.host, args.ps + args.workers)?;
    let mut cluster = ClusterSpec::new();
    let mut binds = BTreeMap::new();
    let ps = (0..args.ps).map(|i| TaskName::new("ps", i));
    let workers = (0..args.workers).map(|i| TaskName::new("worker", i));
    for (task, bind) in ps.chain(workers).zip(ports) {
        cluster.add_task(&task.job, task.task, &address(&args.host, bind.port()))?;
        binds.insert(task, bind);
    }
    eprintln!(
        "rill launch: cluster {} (ps: {}, workers: {})",
        cluster.to_json(),
        args.ps,
        args.workers
    );
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }

    let mut group = Group::default();
    for task in cluster.tasks() {
        let config = TfConfig {
            cluster: cluster.clone(),
            task: Some(task.clone()),
        };
        let mut command = Command::new(&exe);
        command
            .args(["server", "--bind", &binds[&task].to_string()])
            .env("TF_CONFIG", config.to_json())
            .env(TOKEN_ENV, &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting task {task} ({} server)", exe.display()))?;
        let prefix = format!("[{}] ", task.short());
        if let Some(out) = child.stdout.take() {
            group.pipes.push(forward(out, prefix.clone(), false)?);
        }
        if let Some(err) = child.stderr.take() {
            group.pipes.push(forward(err, prefix, true)?);
        }
        group.procs.push(Proc::new(child, Some(task)));
    }
    wait_until_up(&mut group, &cluster)?;

    let program = if program == "rill" {
        exe.as_os_str()
    } else {
        program.as_ref()
    };
    let mut command = Command::new(program);
    command
        .args(program_args)
        .env(
            "TF_CONFIG",
            TfConfig {
                cluster,
                task: None,
            }
            .to_json(),
        )
        .env(TOKEN_ENV, &token);
    die_with_parent(&mut command);
    let child = command
        .spawn()
        .with_context(|| format!("starting the command `{}`", args.command.join(" ")))?;
    group.procs.push(Proc::new(child, None));
    let client = group.procs.len() - 1;

    let code = loop {
        let signal = SIGNAL.load(Ordering::SeqCst);
        if signal != 0 {
            eprintln!("rill launch: interrupted (signal {signal}); stopping the cluster");
            break 128 + signal;
        }
        if let Some(status) = group.procs[client].poll() {
            break exit_code(status);
        }
        if let Some((task, status)) = group.task_exit() {
            eprintln!("rill launch: task {task} exited with {status}; stopping the cluster");
            break 1;
        }
        std::thread::sleep(POLL);
    };
    group.shutdown();
    Ok(code)
}

/// `--token`, else `$RILL_CLUSTER_TOKEN`, else 32 random hex digits.
fn cluster_token(arg: Option<String>) -> Result<String> {
    let given = arg.or_else(|| std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()));
    if let Some(token) = given {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the cluster token must be non-empty printable ASCII without spaces");
        }
        return Ok(token);
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a cluster token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `n` distinct free ports on `host`: all bound at once (so none repeats), then released.
fn free_ports(host: &str, n: usize) -> Result<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let listeners = (0..n)
        .map(|_| {
            TcpListener::bind((bare, 0)).with_context(|| format!("binding a free port on {host}"))
        })
        .collect::<Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?)).collect()
}

/// `host:port`, with an IPv6 host in brackets.
fn address(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

/// Asks the kernel to SIGTERM the child when the launcher dies (Linux only).
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec this calls only prctl and getppid (async-signal-safe)
        // and builds io::Errors from raw codes (no allocation).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Copies `pipe` line by line to our stdout or stderr, each line prefixed.
fn forward(
    pipe: impl Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
) -> Result<JoinHandle<()>> {
    let name = format!("launch {}", prefix.trim());
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            line.extend_from_slice(prefix.as_bytes());
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            // Our own stdout/stderr going away (e.g. `| head`) must not stop the child.
            let _ = if to_stderr {
                std::io::stderr().lock().write_all(&line)
            } else {
                std::io::stdout().lock().write_all(&line)
            };
        }
    });
    thread.context("starting an output thread")
}

/// Polls every task's port until all accept a connection; fails when a task exits, the
/// launcher is interrupted, or 60 s pass.
fn wait_until_up(group: &mut Group, cluster: &ClusterSpec) -> Result<()> {
    let start = Instant::now();
    let mut waiting: Vec<(TaskName, String)> = cluster
        .tasks()
        .into_iter()
        .map(|task| {
            let address = cluster.address(&task).map(str::to_string);
            address.map(|address| (task, address))
        })
        .collect::<Result<_, _>>()?;
    loop {
        if let Some((task, status)) = group.task_exit() {
            bail!("task {task} exited with {status} during startup; stopped the cluster");
        }
        let signal = SIGNAL.load(Ordering::SeqCst);
        if signal != 0 {
            bail!("interrupted (signal {signal}) during startup; stopped the cluster");
        }
        waiting.retain(|(_, address)| !accepts(address));
        if waiting.is_empty() {
            return Ok(());
        }
        if start.elapsed() > STARTUP_TIMEOUT {
            let names: Vec<String> = waiting.iter().map(|(t, a)| format!("{t} ({a})")).collect();
            bail!(
                "{} task(s) not accepting connections after {} s: {}; stopped the cluster",
                names.len(),
                STARTUP_TIMEOUT.as_secs(),
                names.join(", ")
            );
        }
        std::thread::sleep(POLL);
    }
}

fn accepts(address: &str) -> bool {
    let Ok(mut addrs) = address.to_socket_addrs() else {
        return false;
    };
    addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok())
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A child process: a task (`task` is `Some`) or the command.
struct Proc {
    child: Child,
    task: Option<TaskName>,
    status: Option<ExitStatus>,
}

impl Proc {
    fn new(child: Child, task: Option<TaskName>) -> Proc {
        Proc {
            child,
            task,
            status: None,
        }
    }

    /// The exit status once the child has exited (reaping it), else `None`.
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn label(&self) -> String {
        match &self.task {
            Some(task) => format!("task {task}"),
            None => "the command".to_string(),
        }
    }
}

/// Every child of the launcher and the threads forwarding their output.
#[derive(Default)]
struct Group {
    procs: Vec<Proc>,
    pipes: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl Group {
    /// The first task found to have exited.
    fn task_exit(&mut self) -> Option<(TaskName, ExitStatus)> {
        self.procs.iter_mut().find_map(|p| {
            let task = p.task.clone()?;
            p.poll().map(|status| (task, status))
        })
    }

    /// SIGTERM to every child still running, up to 5 s for them to exit, SIGKILL for the
    /// rest; reaps all of them and drains their output. Idempotent.
    fn shutdown(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        for p in &mut self.procs {
            if p.poll().is_none() {
                // SAFETY: the child is not reaped yet, so its pid cannot have been reused.
                unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && self.procs.iter_mut().any(|p| p.poll().is_none()) {
            std::thread::sleep(POLL);
        }
        for p in &mut self.procs {
            if p.poll().is_none() {
                eprintln!(
                    "rill launch: {} did not stop within {} s of SIGTERM; killing it",
                    p.label(),
                    GRACE.as_secs()
                );
                let _ = p.child.kill();
                p.status = p.child.wait().ok();
            }
        }
        // A grandchild may still hold a pipe open: give the readers a moment, not forever.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && self.pipes.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for thread in std::mem::take(&mut self.pipes) {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.shutdown();
    }
}
