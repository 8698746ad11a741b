//! The `rill` command line: inspect, convert, run and benchmark TensorFlow GraphDefs, and
//! train the digits example.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rill::prelude::{Session, SessionOptions, Tensor};

mod launch;
mod serve;

#[derive(Parser)]
#[command(
    name = "rill",
    version,
    about = "A TensorFlow-compatible dataflow graph runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a GraphDef (.pb or .pbtxt): ops, placeholders, sinks, variables, unsupported ops.
    Inspect {
        graph: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Show what each optimisation pass changes in the step.
        #[arg(long)]
        passes: bool,
        /// Show the step's memory plan: planned peak, naive sum, lower bound.
        #[arg(long)]
        memory: bool,
        /// Dims of a feed, TENSOR=D1,D2,... (e.g. x:0=8,784); repeatable.
        #[arg(long = "shape", value_name = "TENSOR=DIMS")]
        shapes: Vec<String>,
        /// A tensor the step fetches (default: every sink); repeatable.
        #[arg(long = "fetch", value_name = "TENSOR")]
        fetches: Vec<String>,
        /// Show how the step is placed on --devices and cut into partitions.
        #[arg(long)]
        partition: bool,
        #[command(flatten)]
        devices: DeviceArgs,
    },
    /// Convert between binary .pb and text .pbtxt (chosen by each file's extension).
    Convert { input: PathBuf, output: PathBuf },
    /// Run a graph once: feed .npy files, print and save the fetched tensors.
    Run {
        graph: PathBuf,
        #[command(flatten)]
        step: StepArgs,
        /// Write each fetched tensor to DIR/<name>.npy.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time a step: latency min/median/p90 and the ten most expensive ops.
    Bench {
        graph: PathBuf,
        #[command(flatten)]
        step: StepArgs,
        #[arg(long, default_value_t = 100)]
        iters: usize,
    },
    /// Train a digit classifier (UCI 8x8 handwritten digits) built with the Rust API.
    Train(TrainArgs),
    /// Print the op reference (markdown): every op, its CPU kernel dtypes and gradient.
    Ops,
    /// List this machine's devices: the CPU, and each NVIDIA GPU the CUDA driver reports (or
    /// why there is none).
    Devices,
    /// Start a local cluster (ps and worker `rill server` tasks on free loopback ports) and
    /// run a command against it with TF_CONFIG and RILL_CLUSTER_TOKEN set; stops the cluster
    /// when the command ends and exits with its code.
    Launch(LaunchArgs),
    /// Serve one task of a cluster (job and task from flags or TF_CONFIG) until SIGTERM or
    /// SIGINT, or until its client closes the session (ps tasks).
    Server(serve::ServeArgs),
    /// All-reduce bandwidth on a running cluster (TF_CONFIG, as `rill launch` sets it):
    /// per size and algorithm, step time, algorithm and bus bandwidth.
    CollectiveBench(rill::collective_bench::CollectiveBenchArgs),
}

#[derive(clap::Args)]
struct LaunchArgs {
    /// Number of parameter-server tasks (job `ps`).
    #[arg(long, default_value_t = 0)]
    ps: usize,
    /// Number of worker tasks (job `worker`); at least 1.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Cluster token given to every process [default: $RILL_CLUSTER_TOKEN, else random].
    #[arg(long)]
    token: Option<String>,
    /// Address the tasks listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The command to run, after `--` (a leading `rill` runs this same rill binary).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Total epochs (a resumed run stops at the same epoch a fresh one would).
    #[arg(long, default_value_t = 20)]
    epochs: u64,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate [default: sgd 0.3, momentum 0.02, adam 0.003, rmsprop 0.001, adagrad 0.05].
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerArg,
    #[arg(long, value_enum, default_value = "mlp")]
    model: ModelArg,
    /// Output folder: checkpoints/, events/ (TensorBoard), model.pb.
    #[arg(long, default_value = "runs/digits")]
    out_dir: PathBuf,
    /// Continue from the newest checkpoint in OUT_DIR/checkpoints.
    #[arg(long)]
    resume: bool,
    /// Seed of the train/test split, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The digits data set (gzip CSV) [default: data/digits.csv.gz in the repository].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Train in this process even when TF_CONFIG names a cluster. Without it, a TF_CONFIG
    /// with a cluster and no task (as `rill launch` sets) trains on that cluster:
    /// synchronous data-parallel, one replica per worker task, variables on the ps tasks.
    #[arg(long)]
    local: bool,
    /// Parameter-server training with one client thread per worker: sync (every worker's
    /// gradients averaged per step), sync:N (the first N; the rest are backup workers),
    /// async (each update applied as it arrives) or ssp:S (stale synchronous parallel,
    /// staleness S). Without it, a cluster trains synchronously by in-graph replication.
    #[arg(long, value_name = "MODE")]
    ps_mode: Option<String>,
    /// With --ps-mode: slow one worker down, WORKER:FACTOR (e.g. 2:3 makes worker 2's
    /// steps take 3 times as long, by sleeping after each).
    #[arg(long, value_name = "WORKER:FACTOR")]
    straggler: Option<String>,
    /// With --ps-mode: the test accuracy whose first crossing is timed.
    #[arg(long, default_value_t = 0.95)]
    target_accuracy: f32,
    /// On a cluster: `ps` (variables on ps tasks, in-graph replication), `allreduce`
    /// (replicated variables, gradients averaged by collective all-reduce among the
    /// workers) or `hybrid` (all-reduce, but large sparse variables sharded on ps tasks).
    #[arg(long, value_enum, default_value = "ps")]
    strategy: StrategyArg,
    /// With allreduce/hybrid: gradient compression on the wire: none, fp16, bf16,
    /// topk:RATIO (e.g. topk:0.01, with error feedback) or sign (1 bit, error feedback).
    #[arg(long, default_value = "none")]
    compression: String,
    /// With allreduce/hybrid: fusion bucket size in bytes (small gradients share one
    /// collective).
    #[arg(long, default_value_t = rill::autodiff::allreduce::DEFAULT_BUCKET_BYTES)]
    bucket_bytes: usize,
    /// With allreduce/hybrid: auto, ring, tree or hierarchical.
    #[arg(long, default_value = "auto")]
    algorithm: String,
    /// With hybrid: sparsely read variables with at least this many elements go to the ps
    /// tasks.
    #[arg(long, default_value_t = 1 << 16)]
    ps_min_elements: usize,
    /// With hybrid: per-variable overrides of the rule, NAME=ps|allreduce,...
    #[arg(long, default_value = "")]
    route: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Ps,
    Allreduce,
    Hybrid,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Momentum,
    Adam,
    Rmsprop,
    Adagrad,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    Mlp,
    Cnn,
    Embedding,
}

fn train(args: TrainArgs) -> Result<()> {
    use rill::train::{ModelKind, OptimizerKind, TrainConfig};
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        optimizer: match args.optimizer {
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Momentum => OptimizerKind::Momentum,
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Rmsprop => OptimizerKind::RmsProp,
            OptimizerArg::Adagrad => OptimizerKind::Adagrad,
        },
        model: match args.model {
            ModelArg::Mlp => ModelKind::Mlp,
            ModelArg::Cnn => ModelKind::Cnn,
            ModelArg::Embedding => ModelKind::Embedding,
        },
        out_dir: args.out_dir,
        resume: args.resume,
        seed: args.seed,
        data: args.data.unwrap_or_else(rill::data::digits::default_path),
        ..TrainConfig::default()
    };
    let cluster = if args.local {
        None
    } else {
        let tf_config = rill::distributed::TfConfig::from_env().context("reading TF_CONFIG")?;
        rill::train_cluster::client_cluster(tf_config)?
    };
    let report = match &cluster {
        None => rill::train::train(&config)?,
        Some(cluster) => {
            let options = rill::distributed::ClusterOptions {
                // Whoever started the tasks stops them: a ps task exiting before this
                // client would look like a crash to `rill launch`.
                shutdown_ps_on_close: false,
                ..rill::distributed::ClusterOptions::default()
            };
            if args.strategy != StrategyArg::Ps {
                let hybrid = args.strategy == StrategyArg::Hybrid;
                let settings = rill::train_allreduce::AllReduceSettings {
                    compression: args.compression.parse()?,
                    bucket_bytes: args.bucket_bytes,
                    algorithm: args.algorithm.clone(),
                    hybrid: hybrid
                        .then(|| -> Result<_> {
                            let mut rule = rill::autodiff::allreduce::RoutingRule::with_overrides(
                                &args.route,
                            )?;
                            rule.min_ps_elements = args.ps_min_elements;
                            Ok(rule)
                        })
                        .transpose()?,
                };
                println!(
                    "{} training ({} compression, {} algorithm): {} workers, {} ps",
                    if hybrid {
                        "hybrid all-reduce + ps"
                    } else {
                        "all-reduce"
                    },
                    settings.compression,
                    settings.algorithm,
                    cluster.num_tasks("worker"),
                    cluster.num_tasks("ps")
                );
                let (report, summary) =
                    rill::train_allreduce::train_all_reduce(&config, cluster, options, &settings)?;
                println!("{}", summary.describe());
                report
            } else {
                match &args.ps_mode {
                    None => {
                        println!("{}", rill::train_cluster::describe(cluster));
                        rill::train_cluster::train_on_cluster(&config, cluster, options)?
                    }
                    Some(mode) => {
                        let ps = rill::train_ps::PsOptions {
                            mode: rill::autodiff::replicas::PsMode::parse(mode)?,
                            straggler: args
                                .straggler
                                .as_deref()
                                .map(parse_straggler)
                                .transpose()?,
                            target_accuracy: args.target_accuracy,
                        };
                        println!(
                            "parameter-server training ({}): {} ps, {} workers",
                            ps.mode,
                            cluster.num_tasks("ps"),
                            cluster.num_tasks("worker")
                        );
                        let (report, summary) =
                            rill::train_ps::train_on_ps(&config, cluster, options, ps)?;
                        println!("{}", summary.describe());
                        report
                    }
                }
            }
        }
    };
    println!(
        "wrote {} (inference graph: x:0 -> probs:0), checkpoints in {}, TensorBoard events in {}",
        report.model_path.display(),
        config.out_dir.join("checkpoints").display(),
        config.out_dir.join("events").display()
    );
    println!(
        "test accuracy {:.4} after {} epochs ({:.1} s)",
        report.test_accuracy,
        report.epochs,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `WORKER:FACTOR` of `--straggler`.
fn parse_straggler(s: &str) -> Result<(usize, f64)> {
    let parsed = s
        .split_once(':')
        .and_then(|(w, f)| Some((w.parse().ok()?, f.parse().ok()?)));
    parsed.with_context(|| format!("--straggler {s}: expected WORKER:FACTOR, e.g. 2:3"))
}

#[derive(clap::Args)]
struct DeviceArgs {
    /// Devices to split the step across, e.g. cpu:4.
    #[arg(long, default_value = "cpu:1")]
    devices: String,
    /// Where nodes without a device request go: client (CPU:0) or spread.
    #[arg(long, default_value = "client")]
    placement: String,
    /// Move a node whose requested device cannot run it (e.g. /device:GPU:0 here) to one
    /// that can, and say so, instead of failing.
    #[arg(long)]
    soft_placement: bool,
}

impl DeviceArgs {
    fn parse(&self) -> Result<(usize, rill::prelude::Strategy)> {
        Ok((
            rill::partition_report::parse_devices(&self.devices)?,
            rill::partition_report::parse_placement(&self.placement)?,
        ))
    }
}

#[derive(clap::Args)]
struct StepArgs {
    /// A feed, TENSOR=FILE.npy (e.g. x:0=x.npy); repeatable.
    #[arg(long = "feed", value_name = "TENSOR=NPY")]
    feeds: Vec<String>,
    /// A tensor to fetch (e.g. probs:0); repeatable.
    #[arg(long = "fetch", value_name = "TENSOR")]
    fetches: Vec<String>,
    /// An op to run for its effect; repeatable.
    #[arg(long = "target", value_name = "OP")]
    targets: Vec<String>,
    /// Run the graph as written: no optimisation passes, no memory plan.
    #[arg(long)]
    no_optimize: bool,
    #[command(flatten)]
    devices: DeviceArgs,
}

struct Step {
    session: Session,
    feeds: Vec<(String, Tensor)>,
    fetches: Vec<String>,
    targets: Vec<String>,
}

impl Step {
    fn load(graph: &Path, args: StepArgs) -> Result<Step> {
        let g = rill::graph::Graph::load(graph, rill::ops::registry())
            .with_context(|| format!("loading {}", graph.display()))?;
        let options = if args.no_optimize {
            SessionOptions::unoptimized()
        } else {
            SessionOptions::default()
        };
        let (devices, placement) = args.devices.parse()?;
        let mut options = options.with_cpu_devices(devices, placement);
        options.soft_placement = args.devices.soft_placement;
        let session = Session::new(g, options)?;
        let feeds = args
            .feeds
            .iter()
            .map(|f| {
                let (name, file) = f
                    .split_once('=')
                    .with_context(|| format!("--feed '{f}' must look like x:0=x.npy"))?;
                let t = rill::npy::read_npy(Path::new(file))
                    .with_context(|| format!("feed '{name}'"))?;
                Ok((name.to_string(), t))
            })
            .collect::<Result<_>>()?;
        if args.fetches.is_empty() && args.targets.is_empty() {
            bail!("nothing to do: give at least one --fetch or --target");
        }
        Ok(Step {
            session,
            feeds,
            fetches: args.fetches,
            targets: args.targets,
        })
    }

    fn run(&self, profile: bool) -> Result<(Vec<Tensor>, Vec<rill::runtime::NodeTiming>)> {
        let feeds: Vec<(&str, Tensor)> = self
            .feeds
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let fetches: Vec<&str> = self.fetches.iter().map(String::as_str).collect();
        let targets: Vec<&str> = self.targets.iter().map(String::as_str).collect();
        if profile {
            Ok(self.session.run_profiled(&feeds, &fetches, &targets)?)
        } else {
            Ok((self.session.run(&feeds, &fetches, &targets)?, vec![]))
        }
    }
}

fn run_once(step: &Step, out: Option<PathBuf>) -> Result<()> {
    let (tensors, _) = step.run(false)?;
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (name, t) in step.fetches.iter().zip(&tensors) {
        println!(
            "{name}: {} {}  {}",
            t.dtype(),
            t.shape(),
            rill::npy::summary(t)
        );
        if let Some(dir) = &out {
            let file = dir.join(format!("{}.npy", name.replace(['/', ':'], "_")));
            rill::npy::write_npy(&file, t)?;
            println!("  wrote {}", file.display());
        }
    }
    Ok(())
}

fn bench(step: &Step, iters: usize) -> Result<()> {
    for _ in 0..iters.clamp(1, 10) {
        step.run(false)?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        step.run(false)?;
        times.push(start.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "latency over {} runs: min {:?}  median {:?}  p90 {:?}",
        times.len(),
        times[0],
        pct(0.5),
        pct(0.9)
    );
    // Per-op profile, averaged over a few profiled steps.
    let mut per_op: HashMap<(String, String), Duration> = HashMap::new();
    let profiled = iters.clamp(1, 20);
    for _ in 0..profiled {
        for t in step.run(true)?.1 {
            *per_op.entry((t.node, t.op)).or_default() += t.duration;
        }
    }
    let mut ops: Vec<_> = per_op.into_iter().collect();
    ops.sort_by_key(|op| std::cmp::Reverse(op.1));
    let total: Duration = ops.iter().map(|(_, d)| *d).sum();
    println!("most expensive ops (mean per step):");
    for ((node, op), d) in ops.iter().take(10) {
        let share = 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12);
        println!(
            "  {:>10.1?}  {share:5.1}%  {node} ({op})",
            *d / profiled as u32
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect {
            graph,
            format,
            passes,
            memory,
            shapes,
            fetches,
            partition,
            devices,
        } => {
            if passes || memory || partition {
                let g = rill::graph::Graph::load(&graph, rill::ops::registry())
                    .with_context(|| format!("loading {}", graph.display()))?;
                let step = rill::compile_report::InspectStep::new(&g, &shapes, &fetches)?;
                if partition {
                    let (n, placement) = devices.parse()?;
                    print!(
                        "{}",
                        rill::partition_report::partition_report(&g, &step, n, placement)?
                    );
                }
                if passes {
                    print!("{}", rill::compile_report::passes_report(&g, &step)?);
                }
                if memory {
                    print!("{}", rill::compile_report::memory_report(&g, &step)?);
                }
                return Ok(());
            }
            let def = rill::graph::read_graph_def(&graph)
                .with_context(|| format!("reading {}", graph.display()))?;
            let summary = rill::inspect::summarize(&def, &rill::ops::registry());
            match format {
                Format::Text => println!("{summary}"),
                Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            }
        }
        Command::Convert { input, output } => {
            let graph = rill::graph::Graph::load(&input, rill::ops::registry())
                .with_context(|| format!("loading {}", input.display()))?;
            graph
                .save(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("wrote {} ({} nodes)", output.display(), graph.len());
        }
        Command::Run { graph, step, out } => run_once(&Step::load(&graph, step)?, out)?,
        Command::Bench { graph, step, iters } => bench(&Step::load(&graph, step)?, iters)?,
        Command::Train(args) => train(args)?,
        Command::Ops => print!("{}", rill::ops_doc::render_ops_markdown()),
        Command::Devices => print_devices(),
        Command::Launch(args) => std::process::exit(launch::run(args)?),
        Command::Server(args) => serve::run(args)?,
        Command::CollectiveBench(args) => {
            rill::collective_bench::run(&args)?;
        }
    }
    Ok(())
}

/// `rill devices`: the local CPU device and the GPUs the CUDA driver reports.
fn print_devices() {
    let cpus = rill::runtime::device::DeviceSet::local_cpus(1);
    for d in cpus.devices() {
        println!("{} ({} threads)", d.name(), d.threads);
    }
    println!("{}", rill::kernels::gpu::probe().describe());
}
