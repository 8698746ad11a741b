//! `rill train`: builds a small classifier (an MLP or a convnet) with the Rust builder API
//! and trains it on the UCI handwritten digits with a TF1-style optimizer, reporting
//! progress, checkpointing every epoch, writing TensorBoard scalars and saving the trained
//! model as a frozen GraphDef.
//!
//! Layout of the output folder: `checkpoints/` (the last 3, [`CheckpointManager`]),
//! `events/` (TensorBoard), `run.json` (the settings a `--resume` must match) and
//! `model.pb` (inference graph: `x:0` f32 `[?, 64]` -> `logits:0`, `probs:0`,
//! `predictions:0`, the trained weights as constants).
//!
//! Invariants: the same seed gives the same split, initial weights and batch order; a
//! resumed run restores every variable, the global step included, and continues at the
//! epoch after the last checkpoint; a fresh run deletes the previous run's checkpoints and
//! event files in the folder (only files with those names) and overwrites `model.pb` and
//! `run.json`.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rill_autodiff::optimizer::{self, Adagrad, Adam, Momentum, Optimizer, RmsProp, Sgd};
use rill_graph::{Code, DType, Error, Output, Result, Tensor};
use rill_ops::Builder;
use rill_runtime::{Callable, CheckpointManager, Session, SessionOptions};
use serde::{Deserialize, Serialize};

use crate::data::digits::{self, CLASSES, PIXELS, SIDE};
use crate::data::Rng;
use crate::tensorboard::EventWriter;

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// 64-128-10 with ReLU.
    Mlp,
    /// conv3x3(16)-pool-conv3x3(32)-pool-dense(10), ReLU.
    Cnn,
}

/// Which optimizer updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Momentum,
    Adam,
    RmsProp,
    Adagrad,
}

/// `as_str` (the CLI and `run.json` spelling) and `Display` for the setting enums.
macro_rules! named_enum {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(ModelKind { Mlp => "mlp", Cnn => "cnn" });
named_enum!(OptimizerKind {
    Sgd => "sgd", Momentum => "momentum", Adam => "adam", RmsProp => "rmsprop",
    Adagrad => "adagrad",
});

impl OptimizerKind {
    /// The learning rate used when none is given.
    pub fn default_learning_rate(self) -> f64 {
        match self {
            OptimizerKind::Sgd => 0.3,
            OptimizerKind::Momentum => 0.02,
            OptimizerKind::Adam => 0.003,
            OptimizerKind::RmsProp => 0.001,
            OptimizerKind::Adagrad => 0.05,
        }
    }

    fn build(self, lr: f64) -> Box<dyn Optimizer> {
        match self {
            OptimizerKind::Sgd => Box::new(Sgd { learning_rate: lr }),
            OptimizerKind::Momentum => Box::new(Momentum {
                learning_rate: lr,
                momentum: 0.9,
                nesterov: false,
            }),
            OptimizerKind::Adam => Box::new(Adam {
                learning_rate: lr,
                ..Adam::default()
            }),
            OptimizerKind::RmsProp => Box::new(RmsProp {
                learning_rate: lr,
                decay: 0.9,
                momentum: 0.0,
                epsilon: 1e-10,
            }),
            OptimizerKind::Adagrad => Box::new(Adagrad {
                learning_rate: lr,
                initial_accumulator: 0.1,
            }),
        }
    }
}

/// What to train and where to write it.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Total epochs: a resumed run stops at the same epoch a fresh one would.
    pub epochs: u64,
    pub batch_size: usize,
    /// `None`: the optimizer's [`OptimizerKind::default_learning_rate`].
    pub learning_rate: Option<f64>,
    pub optimizer: OptimizerKind,
    pub model: ModelKind,
    pub out_dir: PathBuf,
    pub resume: bool,
    pub seed: u64,
    /// The digits file (default: the repository's `data/digits.csv.gz`).
    pub data: PathBuf,
    /// Show a progress bar (it is hidden anyway when stdout is not a terminal or under CI).
    pub progress: bool,
    /// Print one line per epoch.
    pub verbose: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 32,
            learning_rate: None,
            optimizer: OptimizerKind::Adam,
            model: ModelKind::Mlp,
            out_dir: PathBuf::from("runs/digits"),
            resume: false,
            seed: 42,
            data: digits::default_path(),
            progress: true,
            verbose: true,
        }
    }
}

/// The outcome of [`train`].
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The epoch the run started from (0 unless resumed).
    pub start_epoch: u64,
    /// Epochs completed in total.
    pub epochs: u64,
    /// The global step at the end.
    pub step: u64,
    pub test_accuracy: f32,
    pub test_loss: f32,
    /// Mean training loss over the last epoch run (NaN if none ran).
    pub train_loss: f32,
    pub elapsed: Duration,
    pub model_path: PathBuf,
    pub events_path: PathBuf,
    /// The newest checkpoint's manifest.
    pub checkpoint: Option<PathBuf>,
}

/// The settings a resumed run must share with the run it continues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunInfo {
    model: ModelKind,
    optimizer: OptimizerKind,
    batch_size: usize,
    seed: u64,
}

/// Fraction of the images held out for testing.
pub const TEST_FRACTION: f64 = 0.2;
const KEEP_CHECKPOINTS: usize = 3;

/// Glorot (Xavier) uniform initial values for a weight of `dims` with the given fans.
fn glorot(rng: &mut Rng, dims: &[usize], fan_in: usize, fan_out: usize) -> Result<Tensor> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let n = dims.iter().product();
    Tensor::new(dims, (0..n).map(|_| rng.uniform(-limit, limit)).collect())
}

/// Where a model's weights come from: new variables (training) or trained constants.
type ParamFn<'a> = dyn FnMut(&str, Tensor) -> Result<Output> + 'a;

fn dense(
    b: &Builder,
    rng: &mut Rng,
    param: &mut ParamFn<'_>,
    name: &str,
    x: Output,
    units: usize,
) -> Result<Output> {
    let shape = b.shape(x);
    let fan_in = shape
        .dim(-1)
        .known()
        .ok_or_else(|| Error::internal(format!("{name}: input width unknown ({shape})")))?;
    let w = param(
        &format!("{name}/kernel"),
        glorot(rng, &[fan_in, units], fan_in, units)?,
    )?;
    let bias = param(
        &format!("{name}/bias"),
        Tensor::new(&[units], vec![0f32; units])?,
    )?;
    b.bias_add(b.matmul(x, w)?, bias)
}

fn conv(
    b: &Builder,
    rng: &mut Rng,
    param: &mut ParamFn<'_>,
    name: &str,
    x: Output,
    in_ch: usize,
    out_ch: usize,
) -> Result<Output> {
    let k = 3;
    let w = param(
        &format!("{name}/kernel"),
        glorot(rng, &[k, k, in_ch, out_ch], k * k * in_ch, k * k * out_ch)?,
    )?;
    let bias = param(
        &format!("{name}/bias"),
        Tensor::new(&[out_ch], vec![0f32; out_ch])?,
    )?;
    let y = b.relu(b.bias_add(b.conv2d(x, w, [1, 1, 1, 1], "SAME")?, bias)?)?;
    b.max_pool(y, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
}

/// The network from `x` (`[?, 64]`, pixels in [0, 1]) to logits `[?, 10]`; weights are
/// drawn from `seed` and passed through `param`.
fn build_model(
    b: &Builder,
    kind: ModelKind,
    x: Output,
    seed: u64,
    param: &mut ParamFn<'_>,
) -> Result<Output> {
    let mut rng = Rng::derived(seed, 0x5eed);
    match kind {
        ModelKind::Mlp => {
            let h = b.relu(dense(b, &mut rng, param, "hidden", x, 128)?)?;
            dense(b, &mut rng, param, "output", h, CLASSES)
        }
        ModelKind::Cnn => {
            let side = SIDE as i64;
            let img = b.reshape_to(x, &[-1, side, side, 1])?;
            let h = conv(b, &mut rng, param, "conv1", img, 1, 16)?;
            let h = conv(b, &mut rng, param, "conv2", h, 16, 32)?;
            let flat = b.reshape_to(h, &[-1, 2 * 2 * 32])?;
            dense(b, &mut rng, param, "output", flat, CLASSES)
        }
    }
}

/// The training graph's named tensors and ops.
struct TrainGraph {
    session: Session,
    step: Callable,
    eval: Callable,
    init: String,
}

fn build_training(config: &TrainConfig, lr: f64) -> Result<(TrainGraph, Vec<u8>)> {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, PIXELS as i64])?;
    let labels = b.placeholder("labels", DType::I64, [-1i64])?;
    let mut vars = Vec::new();
    let logits = {
        let mut param = |name: &str, init: Tensor| -> Result<Output> {
            let v = b.variable_with_init(name, init)?;
            vars.push(v);
            Ok(v)
        };
        build_model(&b, config.model, x, config.seed, &mut param)?
    };
    let logits = b.identity_named("logits", logits)?;
    let (xent, _) = b.sparse_softmax_cross_entropy_with_logits(logits, labels)?;
    let loss = b.identity_named("loss", b.mean(xent, &[0], false)?)?;
    let correct = b.equal(b.argmax(logits, 1)?, labels)?;
    let accuracy = b.identity_named(
        "accuracy",
        b.mean(b.cast(correct, DType::F32)?, &[0], false)?,
    )?;
    optimizer::global_step(&b)?;
    let train_op = config
        .optimizer
        .build(lr)
        .minimize(&b, loss, &vars, "train")?;
    let init = optimizer::initializer(&b, "init")?;
    let (names, init, train_op) = {
        let g = b.graph();
        let t = |o| g.tensor_name(o);
        (
            [t(x), t(labels), t(loss), t(accuracy)],
            g.node(init).name.clone(),
            g.node(train_op).name.clone(),
        )
    };
    let graph = b.into_graph();
    let graph_def = graph.to_binary();
    let session = Session::new(graph, SessionOptions::default())?;
    let [x, labels, loss, accuracy] = names.each_ref().map(String::as_str);
    let step = session.prepare(&[x, labels], &[loss, accuracy], &[&train_op])?;
    let eval = session.prepare(&[x, labels], &[loss, accuracy], &[])?;
    Ok((
        TrainGraph {
            session,
            step,
            eval,
            init,
        },
        graph_def,
    ))
}

/// The inference graph with the session's trained weights as constants.
fn frozen_model(config: &TrainConfig, session: &Session) -> Result<rill_graph::Graph> {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, PIXELS as i64])?;
    let mut param = |name: &str, _init: Tensor| -> Result<Output> {
        let value = session.resources().lookup(name)?.read()?;
        b.constant_named(name, value)
    };
    let logits = build_model(&b, config.model, x, config.seed, &mut param)?;
    let logits = b.identity_named("logits", logits)?;
    b.op("Softmax").name("probs").input(logits).build()?;
    b.op("ArgMax")
        .name("predictions")
        .input(logits)
        .input(b.scalar_i32(1)?)
        .attr("output_type", DType::I64)
        .build()?;
    Ok(b.into_graph())
}

fn global_step_value(session: &Session) -> Result<u64> {
    let v = session
        .resources()
        .lookup(optimizer::GLOBAL_STEP)?
        .read()?
        .scalar_value::<i64>()?;
    u64::try_from(v).map_err(|_| Error::new(Code::DataLoss, format!("negative global step {v}")))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(Code::Unavailable, format!("{what} {}: {e}", path.display()))
}

/// Removes a previous run's checkpoints and event files (only files with those names).
fn clear_previous_run(ckpt_dir: &Path, events_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for (dir, is_ours) in [
        (
            ckpt_dir,
            (|n: &str| n.starts_with("ckpt-")) as fn(&str) -> bool,
        ),
        (events_dir, |n: &str| n.starts_with("events.out.tfevents.")),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(is_ours) && entry.path().is_file() {
                std::fs::remove_file(entry.path())
                    .map_err(|e| io_error("cannot remove", &entry.path(), e))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Checks (or records) the settings of the run in `out_dir`.
fn check_run_info(path: &Path, info: &RunInfo, resume: bool) -> Result<()> {
    if resume && path.exists() {
        let text = std::fs::read(path).map_err(|e| io_error("cannot read", path, e))?;
        let saved: RunInfo = serde_json::from_slice(&text)
            .map_err(|e| Error::new(Code::DataLoss, format!("{}: {e}", path.display())))?;
        if saved != *info {
            return Err(Error::invalid_argument(format!(
                "--resume continues the run in {}, which used --model {} --optimizer {} \
                 --batch-size {} --seed {}; pass the same settings or another --out-dir",
                path.parent().unwrap_or(path).display(),
                saved.model,
                saved.optimizer,
                saved.batch_size,
                saved.seed
            )));
        }
        return Ok(());
    }
    let json = serde_json::to_vec_pretty(info).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| io_error("cannot write", path, e))
}

/// Whether a progress bar can be drawn: stdout is a terminal and not under CI.
pub fn progress_supported() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("CI").is_none()
}

fn run_batch(c: &Callable, images: Tensor, labels: Tensor) -> Result<(f32, f32)> {
    let out = c.run(vec![images, labels])?;
    Ok((out[0].scalar_value::<f32>()?, out[1].scalar_value::<f32>()?))
}

/// Trains per `config`; see the module documentation for what is written.
pub fn train(config: &TrainConfig) -> Result<TrainReport> {
    let start = Instant::now();
    if config.batch_size == 0 {
        return Err(Error::invalid_argument("--batch-size must be at least 1"));
    }
    let lr = config
        .learning_rate
        .unwrap_or_else(|| config.optimizer.default_learning_rate());
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::invalid_argument(format!(
            "--lr must be a positive number, got {lr}"
        )));
    }
    let data = digits::load(&config.data)?;
    let (train_set, test_set) = data.split(TEST_FRACTION, config.seed)?;
    let test = test_set.as_batch()?;

    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(|e| io_error("cannot create", out, e))?;
    let ckpt_dir = out.join("checkpoints");
    let events_dir = out.join("events");
    let info = RunInfo {
        model: config.model,
        optimizer: config.optimizer,
        batch_size: config.batch_size,
        seed: config.seed,
    };
    check_run_info(&out.join("run.json"), &info, config.resume)?;
    if !config.resume {
        clear_previous_run(&ckpt_dir, &events_dir)?;
    }
    let (g, graph_def) = build_training(config, lr)?;
    let ckpt = CheckpointManager::new(&ckpt_dir, KEEP_CHECKPOINTS)?;
    g.session.run(&[], &[], &[&g.init])?;
    let steps_per_epoch = train_set.batches_per_epoch(config.batch_size) as u64;
    let mut start_epoch = 0;
    let mut restored_from = None;
    let log = |pb: &ProgressBar, line: String| {
        if config.verbose {
            if pb.is_hidden() {
                println!("{line}");
            } else {
                pb.println(line);
            }
        }
    };
    let hidden = ProgressBar::hidden();
    if config.resume {
        match ckpt.restore_latest(&g.session)? {
            Some(step) => {
                let restored = global_step_value(&g.session)?;
                start_epoch = restored / steps_per_epoch;
                let path = ckpt_dir.join(format!("ckpt-{step}.json"));
                log(
                    &hidden,
                    format!(
                        "resumed from {} at step {restored} (epoch {start_epoch})",
                        path.display()
                    ),
                );
                restored_from = Some((restored, path));
            }
            None => log(
                &hidden,
                format!("no checkpoint in {}: starting afresh", ckpt_dir.display()),
            ),
        }
    }
    let mut events = EventWriter::create(&events_dir)?;
    if let Some((step, path)) = &restored_from {
        events.add_session_start(*step as i64, &path.display().to_string())?;
    }
    events.add_graph(graph_def, global_step_value(&g.session)? as i64)?;
    events.flush()?;

    let epochs_to_run = config.epochs.saturating_sub(start_epoch);
    let pb = if config.progress && progress_supported() && epochs_to_run > 0 {
        ProgressBar::with_draw_target(
            Some(epochs_to_run * steps_per_epoch),
            ProgressDrawTarget::stdout(),
        )
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:24} {pos}/{len} {msg}")
            .map_err(|e| Error::internal(e.to_string()))?,
    );
    let mut train_loss = f32::NAN;
    let mut last_ckpt = ckpt
        .latest()?
        .map(|m| ckpt_dir.join(format!("ckpt-{}.json", m.step)));
    for epoch in start_epoch..config.epochs {
        let (mut loss_sum, mut acc_sum, mut n) = (0.0f64, 0.0f64, 0usize);
        for batch in train_set.batches(config.batch_size, config.seed, epoch)? {
            let batch = batch?;
            let size = batch.labels.dims()[0];
            let (loss, acc) = run_batch(&g.step, batch.images, batch.labels)?;
            if !loss.is_finite() {
                pb.abandon();
                return Err(Error::invalid_argument(format!(
                    "the loss diverged ({loss}) in epoch {}; try a smaller --lr (now {lr})",
                    epoch + 1
                )));
            }
            loss_sum += loss as f64 * size as f64;
            acc_sum += acc as f64 * size as f64;
            n += size;
            let step = global_step_value(&g.session)?;
            events.add_scalars(
                &[("train/loss", loss), ("train/batch_accuracy", acc)],
                step as i64,
            )?;
            pb.inc(1);
            pb.set_message(format!(
                "epoch {}/{}  loss {:.4}  acc {:.3}",
                epoch + 1,
                config.epochs,
                loss_sum / n as f64,
                acc_sum / n as f64
            ));
        }
        train_loss = (loss_sum / n.max(1) as f64) as f32;
        let train_acc = (acc_sum / n.max(1) as f64) as f32;
        let (test_loss, test_acc) = run_batch(&g.eval, test.images.clone(), test.labels.clone())?;
        let step = global_step_value(&g.session)?;
        events.add_scalars(
            &[
                ("epoch/train_loss", train_loss),
                ("epoch/train_accuracy", train_acc),
                ("epoch/test_loss", test_loss),
                ("epoch/test_accuracy", test_acc),
            ],
            step as i64,
        )?;
        events.flush()?;
        last_ckpt = Some(ckpt.save(&g.session, step)?);
        log(
            &pb,
            format!(
                "epoch {:>3}/{}  step {step:>5}  loss {train_loss:.4}  train accuracy \
                 {train_acc:.3}  test loss {test_loss:.4}  test accuracy {test_acc:.3}",
                epoch + 1,
                config.epochs
            ),
        );
    }
    pb.finish_and_clear();

    let (test_loss, test_accuracy) = run_batch(&g.eval, test.images, test.labels)?;
    let model_path = out.join("model.pb");
    frozen_model(config, &g.session)?.save(&model_path)?;
    events.flush()?;
    Ok(TrainReport {
        start_epoch,
        epochs: config.epochs.max(start_epoch),
        step: global_step_value(&g.session)?,
        test_accuracy,
        test_loss,
        train_loss,
        elapsed: start.elapsed(),
        model_path,
        events_path: events.path().to_path_buf(),
        checkpoint: last_ckpt,
    })
}
