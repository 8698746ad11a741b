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
//! The loop ([`train_with`]: data, batches, logging, TensorBoard, checkpoints, export) runs
//! the graph through a [`Trainer`]: a local session here, a cluster session in
//! [`crate::train_cluster`]. Both name the variables alike, so their checkpoints and
//! models are interchangeable.
//!
//! Invariants: the same seed gives the same split, initial weights and batch order; a
//! resumed run restores every variable, the global step included, and continues at the
//! epoch after the last checkpoint; a fresh run deletes the previous run's checkpoints and
//! event files in the folder (only files with those names) and overwrites `model.pb` and
//! `run.json`.

use std::collections::HashMap;
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

use crate::data::digits::{self, PIXELS};
use crate::tensorboard::EventWriter;

mod model;
pub(crate) use model::{build_model, model_params, per_example, Weights};

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// 64-128-10 with ReLU.
    Mlp,
    /// conv3x3(16)-pool-conv3x3(32)-pool-dense(10), ReLU.
    Cnn,
    /// Bag of embeddings: each (pixel, intensity) pair is an id into a [1088, 64] table;
    /// an image's 64 rows are summed, then bias, ReLU and dense(10).
    Embedding,
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

named_enum!(ModelKind { Mlp => "mlp", Cnn => "cnn", Embedding => "embedding" });
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

    pub(crate) fn build(self, lr: f64) -> Box<dyn Optimizer> {
        self.build_for_replica(lr, "")
    }

    /// The optimizer of an in-graph replica whose own non-slot variables (Adam's beta
    /// powers) carry the name prefix `prefix` (`replica_1/`; empty for rank 0).
    pub(crate) fn build_for_replica(self, lr: f64, prefix: &str) -> Box<dyn Optimizer> {
        match self {
            OptimizerKind::Sgd => Box::new(Sgd { learning_rate: lr }),
            OptimizerKind::Momentum => Box::new(Momentum {
                learning_rate: lr,
                momentum: 0.9,
                nesterov: false,
            }),
            OptimizerKind::Adam => Box::new(Adam {
                learning_rate: lr,
                powers_prefix: prefix.to_string(),
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

/// One training step as [`train_with`] logs it.
pub(crate) struct StepReport {
    pub loss: f32,
    pub accuracy: f32,
    /// Examples in the step's batch.
    pub examples: usize,
    /// The global step after it (the TensorBoard step).
    pub step: u64,
    /// More TensorBoard scalars of the step (tag, value).
    pub scalars: Vec<(String, f32)>,
}

/// What [`train_with`] needs from the session that runs the training graph.
pub(crate) trait Trainer {
    /// One training step on a batch: its loss, its accuracy and the global step after it.
    fn train_step(&mut self, images: Tensor, labels: Tensor) -> Result<(f32, f32, u64)>;
    /// Trains on one epoch's batches, reporting each step; by default one
    /// [`Trainer::train_step`] per batch, in order.
    fn train_epoch(
        &mut self,
        batches: Vec<digits::Batch>,
        on_step: &mut dyn FnMut(StepReport) -> Result<()>,
    ) -> Result<()> {
        for batch in batches {
            let examples = batch.labels.dims()[0];
            let (loss, accuracy, step) = self.train_step(batch.images, batch.labels)?;
            on_step(StepReport {
                loss,
                accuracy,
                examples,
                step,
                scalars: vec![],
            })?;
        }
        Ok(())
    }
    /// Loss and accuracy on a batch, without training.
    fn evaluate(&self, images: Tensor, labels: Tensor) -> Result<(f32, f32)>;
    fn global_step(&self) -> Result<u64>;
    /// The current values of the variables `names`.
    fn read_variables(&self, names: &[&str]) -> Result<Vec<Tensor>>;
    /// Saves every variable as checkpoint `step`.
    fn save(&self, ckpt: &CheckpointManager, step: u64) -> Result<PathBuf>;
    /// Restores the newest checkpoint; its step, `None` when there is none.
    fn restore_latest(&self, ckpt: &CheckpointManager) -> Result<Option<u64>>;
    /// More to say at the end of an epoch's log line (after a separator), or "".
    fn epoch_summary(&mut self) -> String {
        String::new()
    }
    /// Called once when training ended.
    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// The training graph's named tensors and ops.
struct TrainGraph {
    session: Session,
    step: Callable,
    eval: Callable,
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
    let (xent, correct) = per_example(&b, logits, labels)?;
    let loss = b.identity_named("loss", b.mean(xent, &[0], false)?)?;
    let accuracy = b.identity_named("accuracy", b.mean(correct, &[0], false)?)?;
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
    session.run(&[], &[], &[&init])?;
    Ok((
        TrainGraph {
            session,
            step,
            eval,
        },
        graph_def,
    ))
}

impl Trainer for TrainGraph {
    fn train_step(&mut self, images: Tensor, labels: Tensor) -> Result<(f32, f32, u64)> {
        let (loss, acc) = run_batch(&self.step, images, labels)?;
        Ok((loss, acc, self.global_step()?))
    }
    fn evaluate(&self, images: Tensor, labels: Tensor) -> Result<(f32, f32)> {
        run_batch(&self.eval, images, labels)
    }
    fn global_step(&self) -> Result<u64> {
        let v = self
            .session
            .resources()
            .lookup(optimizer::GLOBAL_STEP)?
            .read()?
            .scalar_value::<i64>()?;
        step_from(v)
    }
    fn read_variables(&self, names: &[&str]) -> Result<Vec<Tensor>> {
        let vars = self.session.resources();
        names.iter().map(|n| vars.lookup(n)?.read()).collect()
    }
    fn save(&self, ckpt: &CheckpointManager, step: u64) -> Result<PathBuf> {
        ckpt.save(&self.session, step)
    }
    fn restore_latest(&self, ckpt: &CheckpointManager) -> Result<Option<u64>> {
        ckpt.restore_latest(&self.session)
    }
}

/// The inference graph with the trainer's trained weights as constants.
fn frozen_model(config: &TrainConfig, trainer: &dyn Trainer) -> Result<rill_graph::Graph> {
    let names: Vec<String> = model_params(config)?.into_iter().map(|(n, _)| n).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut values: HashMap<String, Tensor> = names
        .iter()
        .cloned()
        .zip(trainer.read_variables(&refs)?)
        .collect();
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, PIXELS as i64])?;
    let mut param = |name: &str, _init: Tensor| -> Result<Output> {
        let value = values
            .remove(name)
            .ok_or_else(|| Error::internal(format!("no trained value for {name}")))?;
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

/// A global step read from the graph (never negative).
pub(crate) fn step_from(v: i64) -> Result<u64> {
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

/// Trains per `config` in this process; see the module documentation for what is written.
pub fn train(config: &TrainConfig) -> Result<TrainReport> {
    train_with(config, |lr| {
        let (g, graph_def) = build_training(config, lr)?;
        Ok((Box::new(g) as Box<dyn Trainer>, graph_def))
    })
}

/// The training loop of [`train`] on the trainer `build(learning_rate)` returns (with its
/// variables initialised) and its GraphDef (for TensorBoard).
pub(crate) fn train_with(
    config: &TrainConfig,
    build: impl FnOnce(f64) -> Result<(Box<dyn Trainer>, Vec<u8>)>,
) -> Result<TrainReport> {
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
    let (mut g, graph_def) = build(lr)?;
    let ckpt = CheckpointManager::new(&ckpt_dir, KEEP_CHECKPOINTS)?;
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
        match g.restore_latest(&ckpt)? {
            Some(step) => {
                let restored = g.global_step()?;
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
    events.add_graph(graph_def, g.global_step()? as i64)?;
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
        let batches = train_set
            .batches(config.batch_size, config.seed, epoch)?
            .collect::<Result<Vec<_>>>()?;
        g.train_epoch(batches, &mut |r: StepReport| {
            if !r.loss.is_finite() {
                pb.abandon();
                return Err(Error::invalid_argument(format!(
                    "the loss diverged ({}) in epoch {}; try a smaller --lr (now {lr})",
                    r.loss,
                    epoch + 1
                )));
            }
            loss_sum += r.loss as f64 * r.examples as f64;
            acc_sum += r.accuracy as f64 * r.examples as f64;
            n += r.examples;
            let mut scalars = vec![("train/loss", r.loss), ("train/batch_accuracy", r.accuracy)];
            scalars.extend(r.scalars.iter().map(|(t, v)| (t.as_str(), *v)));
            events.add_scalars(&scalars, r.step as i64)?;
            pb.inc(1);
            pb.set_message(format!(
                "epoch {}/{}  loss {:.4}  acc {:.3}",
                epoch + 1,
                config.epochs,
                loss_sum / n.max(1) as f64,
                acc_sum / n.max(1) as f64
            ));
            Ok(())
        })?;
        train_loss = (loss_sum / n.max(1) as f64) as f32;
        let train_acc = (acc_sum / n.max(1) as f64) as f32;
        let (test_loss, test_acc) = g.evaluate(test.images.clone(), test.labels.clone())?;
        let step = g.global_step()?;
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
        last_ckpt = Some(g.save(&ckpt, step)?);
        log(
            &pb,
            format!(
                "epoch {:>3}/{}  step {step:>5}  loss {train_loss:.4}  train accuracy \
                 {train_acc:.3}  test loss {test_loss:.4}  test accuracy {test_acc:.3}{}",
                epoch + 1,
                config.epochs,
                g.epoch_summary()
            ),
        );
    }
    pb.finish_and_clear();

    let (test_loss, test_accuracy) = g.evaluate(test.images, test.labels)?;
    let model_path = out.join("model.pb");
    frozen_model(config, g.as_ref())?.save(&model_path)?;
    events.flush()?;
    let step = g.global_step()?;
    g.finish()?;
    Ok(TrainReport {
        start_epoch,
        epochs: config.epochs.max(start_epoch),
        step,
        test_accuracy,
        test_loss,
        train_loss,
        elapsed: start.elapsed(),
        model_path,
        events_path: events.path().to_path_buf(),
        checkpoint: last_ckpt,
    })
}
