//! The in-graph replicated training graph of `rill train --strategy allreduce|hybrid`.
//!
//! Replica `r` lives on `/job:worker/task:<r>`: its own copy of every all-reduced variable
//! (rank 0's named as in a one-process run, the others `replica_<r>/<name>`, slots
//! likewise), its placeholders `replica_<r>/x` and `replica_<r>/labels`, its forward and
//! backward pass of `loss_sum * inv_examples` (so the sum over replicas of their gradients
//! is the mean gradient of the whole batch), the all-reduce of those gradients
//! ([`all_reduce_mean`], times the number of replicas) and its own optimizer update. Only
//! rank 0's update increments the global step. `sync` broadcasts rank 0's variables (and
//! slots) to the other replicas: run after `init` (the others start at zero) and after a
//! restore. In hybrid mode, embedding tables the [`RoutingRule`] sends to the ps tasks are
//! one [`ShardedVariable`] shared by every replica (sparse reads, sparse updates there).
//!
//! Invariants: rank 0's variables, the global step and sharded parts are the checkpointed
//! ones; every replica's update runs in every step (`train_all`); `train/step` reads the
//! global step after rank 0's update.

use std::collections::HashMap;

use rill_autodiff::allreduce::{
    all_reduce_mean, AllReduceOptions, Compression, Route, RoutingRule,
};
use rill_autodiff::sharded::{self, Partitioner, ShardedVariable};
use rill_autodiff::{gradients, optimizer};
use rill_graph::{AttrValue, DType, Error, Graph, NodeId, Output, Result, Shape, Tensor};
use rill_ops::collective::CollectiveGroup;
use rill_ops::Builder;

use crate::data::digits::PIXELS;
use crate::train::{build_model, model_params, per_example, OptimizerKind, TrainConfig, Weights};
use crate::train_cluster::{restore_ops_where, SavedVariable};

/// How the replicas share their gradients.
#[derive(Debug, Clone)]
pub struct AllReduceSettings {
    pub compression: Compression,
    /// Fusion bucket size in bytes.
    pub bucket_bytes: usize,
    /// `auto`, `ring`, `tree` or `hierarchical`.
    pub algorithm: String,
    /// Hybrid: the rule sending large sparse variables to the ps tasks (`None`: every
    /// variable is all-reduced).
    pub hybrid: Option<RoutingRule>,
}

/// The graph's tensor and op names.
pub(crate) struct Names {
    pub replicas: Vec<(String, String)>,
    pub inv_examples: String,
    /// `loss`, `accuracy`, the global step after the update.
    pub step: [String; 3],
    /// Replica 0's summed loss and number of correct predictions.
    pub eval: [String; 2],
    pub variables: Vec<SavedVariable>,
    /// Tables sharded on the ps tasks, by model name: their part variables' names.
    pub sharded: Vec<(String, ShardedVariable)>,
    pub init: String,
    pub sync: String,
    pub restore: String,
    pub wire_bytes_per_rank: u64,
    pub buckets: usize,
}

/// How long a replica waits for its peers in a collective before the step fails with
/// DeadlineExceeded naming them (a dead or stuck worker never hangs training).
const COLLECTIVE_TIMEOUT_SECONDS: f32 = 20.0;

fn worker(r: usize) -> String {
    format!("/job:worker/task:{r}")
}

fn replica_name(r: usize, name: &str) -> String {
    if r == 0 {
        name.to_string()
    } else {
        format!("replica_{r}/{name}")
    }
}

/// One replica's weights: its own variables, and the shared sharded tables.
struct ReplicaWeights<'a> {
    vars: &'a HashMap<String, Output>,
    tables: &'a [(String, ShardedVariable)],
    lookups: Vec<sharded::EmbeddingLookup>,
}

impl Weights for ReplicaWeights<'_> {
    fn param(&mut self, name: &str, _init: Tensor) -> Result<Output> {
        self.vars
            .get(name)
            .copied()
            .ok_or_else(|| Error::internal(format!("no variable {name}")))
    }

    fn lookup(&mut self, b: &Builder, name: &str, init: Tensor, ids: Output) -> Result<Output> {
        match self.tables.iter().find(|(n, _)| n == name) {
            Some((_, table)) => {
                let lookup = sharded::embedding_lookup(b, table, ids)?;
                let output = lookup.output;
                self.lookups.push(lookup);
                Ok(output)
            }
            None => b.gather(self.param(name, init)?, ids, 0),
        }
    }
}

/// The graph of the module documentation for `workers` replicas and `ps` ps tasks.
pub(crate) fn build_graph(
    config: &TrainConfig,
    lr: f64,
    workers: usize,
    ps: usize,
    settings: &AllReduceSettings,
) -> Result<(Names, Graph, Vec<u8>)> {
    let b = Builder::new();
    let params = model_params(config)?;
    let mut tables = vec![];
    let mut replicated = vec![];
    for (name, init) in params {
        let sparse = name.ends_with("/table");
        let route = match &settings.hybrid {
            Some(rule) if ps > 0 => rule.route(&name, init.num_elements(), sparse),
            _ => Route::AllReduce,
        };
        match route {
            Route::ParameterServer => {
                let table = ShardedVariable::new(&b, &name, init, Partitioner::FixedSize(ps), ps)?;
                tables.push((name, table));
            }
            Route::AllReduce => replicated.push((name, init)),
        }
    }
    let mut vars: Vec<HashMap<String, Output>> = vec![];
    for r in 0..workers {
        let _device = b.device(&worker(r))?;
        let mut mine = HashMap::new();
        for (name, init) in &replicated {
            let value = if r == 0 {
                init.clone()
            } else {
                Tensor::zeros(init.dtype(), init.dims())?
            };
            mine.insert(
                name.clone(),
                b.variable_with_init(&replica_name(r, name), value)?,
            );
        }
        vars.push(mine);
    }
    let inv_examples = b.placeholder("inv_examples", DType::F32, Shape::scalar())?;
    let (mut replicas, mut loss_sums, mut corrects, mut grads, mut lookups) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (r, mine) in vars.iter().enumerate() {
        let _device = b.device(&worker(r))?;
        let _scope = b.name_scope(&format!("replica_{r}"));
        let x = b.placeholder("x", DType::F32, [-1i64, PIXELS as i64])?;
        let labels = b.placeholder("labels", DType::I64, [-1i64])?;
        let mut weights = ReplicaWeights {
            vars: mine,
            tables: &tables,
            lookups: vec![],
        };
        let logits = build_model(&b, config.model, x, config.seed, &mut weights)?;
        let (xent, correct) = per_example(&b, logits, labels)?;
        let loss_sum = b.identity_named("loss_sum", b.sum(xent, &[0], false)?)?;
        corrects.push(b.identity_named("correct", b.sum(correct, &[0], false)?)?);
        let scaled = b.mul(loss_sum, inv_examples)?;
        // Backprop order: the last layer's gradients are ready first.
        let xs: Vec<Output> = replicated.iter().rev().map(|(n, _)| mine[n]).collect();
        let g = gradients(&b, &[scaled], &xs, None)?;
        grads.push(
            g.into_iter()
                .map(|g| g.ok_or_else(|| Error::internal("a variable has no gradient")))
                .collect::<Result<Vec<_>>>()?,
        );
        let sparse = (weights.lookups.iter())
            .map(|l| sharded::sparse_gradients(&b, scaled, l))
            .collect::<Result<Vec<_>>>()?;
        lookups.push(sparse);
        loss_sums.push(loss_sum);
        replicas.push((x, labels));
    }
    let mut group = CollectiveGroup::new((0..workers).map(worker).collect(), 1);
    group.algorithm = settings.algorithm.clone();
    group.timeout_seconds = COLLECTIVE_TIMEOUT_SECONDS;
    let options = AllReduceOptions {
        group,
        compression: settings.compression,
        bucket_bytes: settings.bucket_bytes,
    };
    let reduced = all_reduce_mean(&b, &options, &grads)?;
    let mut updates = vec![];
    // Replicas 1.. first: the global step does not exist yet, so only rank 0 increments it.
    for r in (1..workers).chain([0]) {
        if r == 0 {
            let _device = b.device(&worker(0))?;
            optimizer::global_step(&b)?;
        }
        let _device = b.device(&worker(r))?;
        let names: Vec<&String> = replicated.iter().rev().map(|(n, _)| n).collect();
        let mut grads_and_vars = vec![];
        for (k, name) in names.iter().enumerate() {
            let sum = b.mul(reduced.grads[r][k], b.scalar_f32(workers as f32)?)?;
            grads_and_vars.push((sum, vars[r][*name]));
        }
        let train = if r == 0 {
            "train".to_string()
        } else {
            format!("replica_{r}/train")
        };
        let optimizer = config.optimizer.build_for_replica(lr, &replica_name(r, ""));
        updates.push(optimizer.apply_gradients(&b, &grads_and_vars, &train)?);
        for ((_, table), grads) in tables.iter().zip(&lookups[r]) {
            updates.push(apply_sparse(&b, config, lr, table, grads)?);
        }
    }
    let mut all = b.op("NoOp").name("train_all");
    for &u in &updates {
        all = all.control_input(u);
    }
    let train_all = all.build()?;
    let step = b
        .op("Identity")
        .name("train/step")
        .input(optimizer::global_step(&b)?)
        .control_input(train_all)
        .attr(
            "_class",
            AttrValue::StringList(vec![format!("loc:@{}", optimizer::GLOBAL_STEP).into_bytes()]),
        )
        .build_output()?;
    let examples_mean = |name: &str, parts: &[Output]| -> Result<Output> {
        b.identity_named(name, b.mul(b.add_n(parts)?, inv_examples)?)
    };
    let loss = examples_mean("loss", &loss_sums)?;
    let accuracy = examples_mean("accuracy", &corrects)?;
    let sync = sync_op(&b, workers)?;
    let init = optimizer::initializer(&b, "init")?;
    let (variables, restore) = restore_ops_where(&b, &|name| {
        !name.starts_with("replica_") && !name.starts_with("allreduce/")
    })?;
    let g = b.graph();
    let t = |o: Output| g.tensor_name(o);
    let names = Names {
        replicas: replicas.iter().map(|&(x, l)| (t(x), t(l))).collect(),
        inv_examples: t(inv_examples),
        step: [t(loss), t(accuracy), t(step)],
        eval: [t(loss_sums[0]), t(corrects[0])],
        variables,
        sharded: tables,
        init: g.node(init).name.clone(),
        sync: g.node(sync).name.clone(),
        restore: g.node(restore).name.clone(),
        wire_bytes_per_rank: reduced.wire_bytes_per_rank,
        buckets: reduced.buckets,
    };
    drop(g);
    let graph = b.into_graph();
    let graph_def = graph.to_binary();
    Ok((names, graph, graph_def))
}

/// The sparse update of a ps table from one replica's gradients: SGD or Adagrad as
/// configured, Adagrad (learning rate 0.05) for the other optimizers.
fn apply_sparse(
    b: &Builder,
    config: &TrainConfig,
    lr: f64,
    table: &ShardedVariable,
    grads: &[sharded::SparseGradient],
) -> Result<NodeId> {
    match config.optimizer {
        OptimizerKind::Sgd => sharded::apply_sparse_sgd(b, table, grads, lr),
        OptimizerKind::Adagrad => sharded::apply_sparse_adagrad(b, table, grads, lr, 0.1),
        _ => sharded::apply_sparse_adagrad(b, table, grads, 0.05, 0.1),
    }
}

/// `sync`: every rank-0 variable with a copy on every other replica (slots included) is
/// broadcast from rank 0 and assigned there.
fn sync_op(b: &Builder, workers: usize) -> Result<NodeId> {
    let pairs: Vec<(Output, Vec<Output>)> = {
        let g = b.graph();
        let find = |name: &str| {
            g.find(name)
                .filter(|&id| g.node(id).op_name() == "VariableV2")
        };
        g.nodes()
            .filter(|(_, n)| n.op_name() == "VariableV2" && !n.name.starts_with("replica_"))
            .filter_map(|(id, n)| {
                let copies: Option<Vec<Output>> = (1..workers)
                    .map(|r| find(&replica_name(r, &n.name)).map(|c| c.output(0)))
                    .collect();
                Some((id.output(0), copies?))
            })
            .filter(|(_, copies)| workers > 1 && !copies.is_empty())
            .collect()
    };
    let _scope = b.name_scope("sync");
    let mut group = CollectiveGroup::new((0..workers).map(worker).collect(), 2);
    group.timeout_seconds = COLLECTIVE_TIMEOUT_SECONDS;
    let mut all = b.op("NoOp").name("all");
    for (var, copies) in pairs {
        let value = {
            let _device = b.device(&worker(0))?;
            b.identity(var)?
        };
        let got = b.collective_broadcast(&group, 0, value)?;
        // The receivers do not depend on the sender: the step must run it explicitly.
        all = all.control_input(got[0].node);
        for (r, copy) in copies.into_iter().enumerate() {
            let _device = b.device(&worker(r + 1))?;
            all = all.control_input(b.assign(copy, got[r + 1])?.node);
        }
    }
    all.build()
}
