//! `rill train --strategy allreduce|hybrid`: synchronous data-parallel training where the
//! replicas average their gradients with collective ops (ring, tree or hierarchical
//! all-reduce, in fusion buckets, optionally compressed) instead of sending them to
//! parameter servers; in hybrid mode large sparse variables (embedding tables) still live
//! sharded on the ps tasks. The graph is in [`graph`]; one client (this process) drives
//! every replica's step on a [`ClusterSession`], as [`crate::train_cluster`] does.
//!
//! Each batch is split into contiguous shards, one per worker (sizes differ by at most
//! one); with no compression a step is the one-process step on the whole batch (the mean
//! gradient over all its examples). Evaluation runs on replica 0. Checkpoints hold rank
//! 0's variables (named as in a one-process run), the global step and sharded parts; a
//! restore assigns them and broadcasts rank 0's values to the other replicas.
//!
//! Invariants: after `init` and after every restore, `sync` has made every replica equal
//! to rank 0; each epoch line reports the bytes each worker sent and received per step,
//! measured by the transport.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rill_distributed::{ClusterOptions, ClusterSession, ClusterSpec};
use rill_graph::{Error, Result, Tensor};
use rill_runtime::CheckpointManager;

use crate::train::{step_from, train_with, TrainConfig, TrainReport, Trainer};
use crate::train_cluster::{rows, shard, ClusterVariables};

mod graph;
pub use graph::AllReduceSettings;
use graph::{build_graph, Names};

/// What an all-reduce run measured, beyond [`TrainReport`].
#[derive(Debug, Clone, Default)]
pub struct AllReduceSummary {
    pub steps: u64,
    /// Seconds per training step (client wall time, mean).
    pub seconds_per_step: f64,
    /// Mean payload bytes a worker sent / received per step (all workers averaged).
    pub bytes_sent_per_step: f64,
    pub bytes_received_per_step: f64,
    /// What the collectives carry per rank per step, from the graph.
    pub wire_bytes_per_rank: u64,
    pub buckets: usize,
}

impl AllReduceSummary {
    pub fn describe(&self) -> String {
        format!(
            "{} steps, {:.2} ms/step, per worker per step {:.1} KB sent and {:.1} KB received \
             ({} fusion buckets, {:.1} KB of gradients on the wire per rank)",
            self.steps,
            self.seconds_per_step * 1e3,
            self.bytes_sent_per_step / 1e3,
            self.bytes_received_per_step / 1e3,
            self.buckets,
            self.wire_bytes_per_rank as f64 / 1e3
        )
    }
}

/// Trains per `config` on `cluster`'s workers (and ps tasks, in hybrid mode).
pub fn train_all_reduce(
    config: &TrainConfig,
    cluster: &ClusterSpec,
    options: ClusterOptions,
    settings: &AllReduceSettings,
) -> Result<(TrainReport, AllReduceSummary)> {
    let workers = cluster.num_tasks("worker");
    if workers == 0 {
        return Err(Error::invalid_argument(
            "the cluster has no worker task to train on",
        ));
    }
    let ps = cluster.num_tasks("ps");
    if settings.hybrid.is_some() && ps == 0 {
        return Err(Error::invalid_argument(
            "--strategy hybrid keeps sparse variables on ps tasks: start the cluster with --ps",
        ));
    }
    let summary = Arc::new(Mutex::new(AllReduceSummary::default()));
    let shared = summary.clone();
    let report = train_with(config, |lr| {
        let (mut names, graph, graph_def) = build_graph(config, lr, workers, ps, settings)?;
        let session = Arc::new(ClusterSession::new(graph, cluster.clone(), options)?);
        session.run(&[], &[], &[&names.init])?;
        session.run(&[], &[], &[&names.sync])?;
        {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            s.wire_bytes_per_rank = names.wire_bytes_per_rank;
            s.buckets = names.buckets;
        }
        let vars = ClusterVariables {
            session,
            variables: std::mem::take(&mut names.variables),
            restore: names.restore.clone(),
        };
        let trainer = AllReduceTrainer {
            vars,
            names,
            summary: shared,
            epoch: Traffic::default(),
        };
        Ok((Box::new(trainer) as Box<dyn Trainer>, graph_def))
    })?;
    let summary = summary.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((report, summary))
}

/// Traffic summed over steps.
#[derive(Debug, Clone, Copy, Default)]
struct Traffic {
    steps: u64,
    seconds: f64,
    sent: u64,
    received: u64,
}

struct AllReduceTrainer {
    vars: ClusterVariables,
    names: Names,
    summary: Arc<Mutex<AllReduceSummary>>,
    epoch: Traffic,
}

impl AllReduceTrainer {
    fn workers(&self) -> usize {
        self.names.replicas.len()
    }
}

impl Trainer for AllReduceTrainer {
    fn train_step(&mut self, images: Tensor, labels: Tensor) -> Result<(f32, f32, u64)> {
        let n = labels.dims()[0];
        let workers = self.workers();
        let inv = Tensor::scalar(1.0 / n.max(1) as f32);
        let mut feeds = vec![(self.names.inv_examples.as_str(), inv)];
        for (i, (x, l)) in self.names.replicas.iter().enumerate() {
            let (lo, hi) = shard(n, workers, i);
            feeds.push((x, rows::<f32>(&images, lo, hi)?));
            feeds.push((l, rows::<i64>(&labels, lo, hi)?));
        }
        let fetches = self.names.step.each_ref().map(String::as_str);
        let (out, stats) = self.vars.session.run_with_stats(&feeds, &fetches, &[])?;
        let on_workers = stats.tasks.iter().filter(|t| t.task.contains("worker"));
        for t in on_workers {
            self.epoch.sent += t.bytes_sent;
            self.epoch.received += t.bytes_received;
        }
        self.epoch.steps += 1;
        self.epoch.seconds += stats.elapsed.as_secs_f64();
        let step = step_from(out[2].scalar_value::<i64>()?)?;
        Ok((out[0].scalar_value()?, out[1].scalar_value()?, step))
    }

    fn evaluate(&self, images: Tensor, labels: Tensor) -> Result<(f32, f32)> {
        let n = labels.dims()[0].max(1) as f32;
        let (x, l) = &self.names.replicas[0];
        let eval = self.names.eval.each_ref().map(String::as_str);
        let out = self
            .vars
            .session
            .run(&[(x, images), (l, labels)], &eval, &[])?;
        Ok((
            out[0].scalar_value::<f32>()? / n,
            out[1].scalar_value::<f32>()? / n,
        ))
    }

    fn global_step(&self) -> Result<u64> {
        self.vars.global_step()
    }

    /// Sharded tables are read part by part and put back together.
    fn read_variables(&self, names: &[&str]) -> Result<Vec<Tensor>> {
        names
            .iter()
            .map(
                |&name| match self.names.sharded.iter().find(|(n, _)| n == name) {
                    Some((_, table)) => {
                        let parts: Vec<String> =
                            table.parts().iter().map(|p| p.name.clone()).collect();
                        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                        table.full_value(&self.vars.read(&parts)?)
                    }
                    None => Ok(self.vars.read(&[name])?.remove(0)),
                },
            )
            .collect()
    }

    fn save(&self, ckpt: &CheckpointManager, step: u64) -> Result<PathBuf> {
        self.vars.save(ckpt, step)
    }

    fn restore_latest(&self, ckpt: &CheckpointManager) -> Result<Option<u64>> {
        let restored = self.vars.restore_latest(ckpt)?;
        self.vars.session.run(&[], &[], &[&self.names.sync])?;
        Ok(restored)
    }

    fn epoch_summary(&mut self) -> String {
        let e = std::mem::take(&mut self.epoch);
        let per = |bytes: u64| bytes as f64 / (e.steps.max(1) * self.workers() as u64) as f64;
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        s.steps += e.steps;
        s.seconds_per_step = e.seconds / e.steps.max(1) as f64;
        s.bytes_sent_per_step = per(e.sent);
        s.bytes_received_per_step = per(e.received);
        format!(
            " | {:.1} ms/step, {:.1} KB sent / {:.1} KB received per worker per step",
            s.seconds_per_step * 1e3,
            s.bytes_sent_per_step / 1e3,
            s.bytes_received_per_step / 1e3
        )
    }

    fn finish(&self) -> Result<()> {
        self.vars.session.close()
    }
}
