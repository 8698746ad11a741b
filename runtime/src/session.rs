//! [`Session`]: runs a graph. `run(feeds, fetches, targets)` compiles a plan for the
//! signature once (cached), checks the feeds against the graph, and runs the executor;
//! [`Callable`] is a prepared signature for hot loops (no lookups per call).
//!
//! With [`SessionOptions::cpu_devices`] above one, the session has that many CPU devices
//! (each with its own share of the threads); every step is placed on them, partitioned
//! with `_Send`/`_Recv` between devices and run as a [`PartitionedPlan`].
//!
//! Invariants: the session's graph never changes after creation; every error a user can
//! act on (missing feed, wrong dtype or shape, unknown fetch, missing kernel) names the
//! tensor or node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rill_graph::{DType, Error, Graph, NodeId, Output, Result, Shape, Tensor};
use rill_kernels::{KernelRegistry, ResourceMgr};

use crate::control_flow::is_control_flow_op;
use crate::device::DeviceSet;
use crate::executor::{run_step, NodeTiming};
use crate::multi_device::{Devices, PartitionedPlan, StepSpec};
use crate::placer::{PlacerOptions, Strategy};
use crate::plan::{Plan, PlanCache, Signature};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Run the optimisation passes (folding, CSE, pruning, fusion) and the memory plan on
    /// each step's graph. On by default.
    pub optimize: bool,
    /// CPU devices in this process (`/job:localhost/replica:0/task:0/device:CPU:0..N`),
    /// sharing the machine's threads. 1 (the default): one device, no partitioning.
    pub cpu_devices: usize,
    /// Where nodes without a device request go when there are several devices.
    pub placement: Strategy,
    /// Move a node whose requested device cannot run it instead of failing (logged).
    pub soft_placement: bool,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            optimize: true,
            cpu_devices: 1,
            placement: Strategy::Client,
            soft_placement: false,
        }
    }
}

impl SessionOptions {
    /// Options that run the graph exactly as written: no passes, no memory plan.
    pub fn unoptimized() -> SessionOptions {
        SessionOptions {
            optimize: false,
            ..SessionOptions::default()
        }
    }

    /// These options with `n` CPU devices placed by `placement`.
    pub fn with_cpu_devices(mut self, n: usize, placement: Strategy) -> SessionOptions {
        self.cpu_devices = n.max(1);
        self.placement = placement;
        self
    }
}

/// Runs steps of one graph.
pub struct Session {
    graph: Arc<Graph>,
    options: SessionOptions,
    kernels: Arc<KernelRegistry>,
    resources: Arc<ResourceMgr>,
    plans: PlanCache,
    /// The devices when there are several.
    devices: Option<Devices>,
    partitioned: Mutex<HashMap<Signature, Arc<PartitionedPlan>>>,
    /// Whether the graph has TF1 control flow (such steps run on one device).
    control_flow: std::sync::OnceLock<bool>,
}

/// A compiled step: for one device, or split across several.
#[derive(Clone)]
enum Compiled {
    Single(Arc<Plan>),
    Partitioned(Arc<PartitionedPlan>),
}

impl Compiled {
    fn feed_specs(&self) -> &[(String, DType, Shape)] {
        match self {
            Compiled::Single(p) => &p.feed_specs,
            Compiled::Partitioned(p) => &p.feed_specs,
        }
    }
}

/// A prepared (feeds, fetches, targets) signature.
pub struct Callable {
    plan: Compiled,
    resources: Arc<ResourceMgr>,
}

impl Session {
    /// A session over `graph`, which is validated first.
    pub fn new(graph: Graph, options: SessionOptions) -> Result<Session> {
        // TF2 function calls, If and While become plain nodes (Switch/Merge, loop frames).
        let graph = crate::functions::lower_functions(&graph)?.unwrap_or(graph);
        graph.validate()?;
        let devices = if options.cpu_devices > 1 {
            Some(Devices::new(DeviceSet::local_cpus(options.cpu_devices))?)
        } else {
            None
        };
        Ok(Session {
            graph: Arc::new(graph),
            options,
            kernels: rill_kernels::registry(),
            resources: Arc::new(ResourceMgr::new()),
            plans: PlanCache::default(),
            devices,
            partitioned: Mutex::new(HashMap::new()),
            control_flow: std::sync::OnceLock::new(),
        })
    }

    /// The session's devices (one CPU unless [`SessionOptions::cpu_devices`] says more).
    pub fn devices(&self) -> DeviceSet {
        match &self.devices {
            Some(d) => d.set.clone(),
            None => DeviceSet::local_cpus(1),
        }
    }

    /// Compiles (or fetches from the cache) the step for a signature, partitioned when the
    /// session has several devices.
    fn compile(&self, feeds: &[&str], fetches: &[&str], targets: &[&str]) -> Result<Compiled> {
        let Some(devices) = &self.devices else {
            return self.plan(feeds, fetches, targets).map(Compiled::Single);
        };
        if *self.control_flow.get_or_init(|| {
            self.graph
                .nodes()
                .any(|(_, n)| is_control_flow_op(n.op_name()))
        }) {
            // Frames and iterations do not cross devices: the whole step runs on one.
            return self.plan(feeds, fetches, targets).map(Compiled::Single);
        }
        let key: Signature = (
            feeds.iter().map(|s| s.to_string()).collect(),
            fetches.iter().map(|s| s.to_string()).collect(),
            targets.iter().map(|s| s.to_string()).collect(),
        );
        if let Some(p) = self.partitioned.lock().expect("plan cache lock").get(&key) {
            return Ok(Compiled::Partitioned(p.clone()));
        }
        let plan = Arc::new(self.compile_partitioned(&key, devices)?);
        self.partitioned
            .lock()
            .expect("plan cache lock")
            .insert(key, plan.clone());
        Ok(Compiled::Partitioned(plan))
    }

    fn compile_partitioned(&self, key: &Signature, devices: &Devices) -> Result<PartitionedPlan> {
        let (feeds, fetches, targets) = (names(&key.0), names(&key.1), names(&key.2));
        let step = self.resolve_step(&self.graph, &feeds, &fetches, &targets)?;
        let graph = if self.options.optimize {
            crate::optimize::optimize(&self.graph, &step.0, &step.1, &step.2)?.0
        } else {
            crate::optimize::prune(&self.graph, &step.0, &step.1, &step.2)?
        };
        let graph = &graph;
        // The names resolve in the optimised graph too (passes keep them).
        self.resolve_step(graph, &feeds, &fetches, &targets)?;
        let placer = PlacerOptions {
            soft_placement: self.options.soft_placement,
            strategy: self.options.placement,
        };
        PartitionedPlan::compile(
            &StepSpec {
                graph,
                feeds: &key.0,
                fetches: &key.1,
                targets: &key.2,
                placer: &placer,
                plan_memory: self.options.optimize,
            },
            devices,
            &self.kernels,
            &self.resources,
        )
    }

    /// The step for a signature placed and partitioned on the session's devices
    /// (compiled and cached if new); FailedPrecondition for a one-device session.
    pub fn partitioned(
        &self,
        feeds: &[&str],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Arc<PartitionedPlan>> {
        match self.compile(feeds, fetches, targets)? {
            Compiled::Partitioned(p) => Ok(p),
            Compiled::Single(_) => Err(Error::failed_precondition(
                "the session has one device: its steps are not partitioned",
            )),
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Compiles (or fetches from the cache) the plan for a signature.
    fn plan(&self, feeds: &[&str], fetches: &[&str], targets: &[&str]) -> Result<Arc<Plan>> {
        let key = (
            feeds.iter().map(|s| s.to_string()).collect(),
            fetches.iter().map(|s| s.to_string()).collect(),
            targets.iter().map(|s| s.to_string()).collect(),
        );
        self.plans.get_or_compile(key, || {
            let step = self.resolve_step(&self.graph, feeds, fetches, targets)?;
            let graph = if self.options.optimize {
                let (optimized, _) =
                    crate::optimize::optimize(&self.graph, &step.0, &step.1, &step.2)?;
                Arc::new(optimized)
            } else {
                self.graph.clone()
            };
            let (feeds, fetches, targets) = if self.options.optimize {
                self.resolve_step(&graph, feeds, fetches, targets)?
            } else {
                step
            };
            let mut plan = Plan::compile(
                &graph,
                &self.kernels,
                &self.resources,
                &feeds,
                &fetches,
                &targets,
            )?;
            plan.plan_memory = self.options.optimize;
            Ok(plan)
        })
    }

    /// Resolves a step's names in `graph`.
    fn resolve_step(
        &self,
        graph: &Graph,
        feeds: &[&str],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<ResolvedStep> {
        let feeds: Vec<Output> = feeds
            .iter()
            .map(|n| resolve(graph, n, "feed"))
            .collect::<Result<_>>()?;
        let fetches: Vec<Output> = fetches
            .iter()
            .map(|n| resolve(graph, n, "fetch"))
            .collect::<Result<_>>()?;
        let targets: Vec<NodeId> = targets
            .iter()
            .map(|n| {
                let name = n.strip_prefix('^').unwrap_or(n);
                graph.node_named(name).map_err(|_| {
                    Error::not_found(format!("target '{name}' is not a node in the graph"))
                })
            })
            .collect::<Result<_>>()?;
        Ok((feeds, fetches, targets))
    }

    /// What the optimisation passes do to the step `(feeds, fetches, targets)`: the
    /// optimised graph and one record per pass run.
    pub fn optimized_step(
        &self,
        feeds: &[&str],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<(Graph, Vec<rill_graph::PassRecord>)> {
        let (f, x, t) = self.resolve_step(&self.graph, feeds, fetches, targets)?;
        crate::optimize::optimize(&self.graph, &f, &x, &t)
    }

    /// The compiled plan of a step (compiled and cached if new), for inspection.
    pub fn compiled(
        &self,
        feeds: &[&str],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Arc<Plan>> {
        self.plan(feeds, fetches, targets)
    }

    /// Feeds `feeds`, computes `fetches` and runs `targets` (ops run for their effects).
    pub fn run(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        let names: Vec<&str> = feeds.iter().map(|(n, _)| *n).collect();
        let plan = self.compile(&names, fetches, targets)?;
        let tensors = feeds.iter().map(|(_, t)| t.clone()).collect();
        run_checked(&plan, &self.resources, tensors, false).map(|(f, _)| f)
    }

    /// [`Session::run`] that also returns the time spent in each kernel.
    pub fn run_profiled(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<(Vec<Tensor>, Vec<NodeTiming>)> {
        let names: Vec<&str> = feeds.iter().map(|(n, _)| *n).collect();
        let plan = self.compile(&names, fetches, targets)?;
        run_checked(
            &plan,
            &self.resources,
            feeds.iter().map(|(_, t)| t.clone()).collect(),
            true,
        )
    }

    /// Prepares a signature; [`Callable::run`] then takes feeds in this order.
    pub fn prepare(&self, feeds: &[&str], fetches: &[&str], targets: &[&str]) -> Result<Callable> {
        Ok(Callable {
            plan: self.compile(feeds, fetches, targets)?,
            resources: self.resources.clone(),
        })
    }

    /// The session's variables and other resources.
    pub fn resources(&self) -> &Arc<ResourceMgr> {
        &self.resources
    }

    /// Number of distinct signatures compiled so far.
    pub fn cached_plans(&self) -> usize {
        self.plans.len() + self.partitioned.lock().expect("plan cache lock").len()
    }
}

impl Callable {
    /// Runs one step with `feeds` in the prepared order.
    pub fn run(&self, feeds: Vec<Tensor>) -> Result<Vec<Tensor>> {
        run_checked(&self.plan, &self.resources, feeds, false).map(|(f, _)| f)
    }
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A step's feeds, fetches and targets resolved in a graph.
type ResolvedStep = (Vec<Output>, Vec<Output>, Vec<NodeId>);

fn resolve(graph: &Graph, name: &str, what: &str) -> Result<Output> {
    graph.output_named(name).map_err(|e| {
        Error::new(
            e.code,
            format!(
                "{what} '{name}' is not a tensor in the graph: {}",
                e.message
            ),
        )
    })
}

fn run_checked(
    plan: &Compiled,
    resources: &Arc<ResourceMgr>,
    feeds: Vec<Tensor>,
    profile: bool,
) -> Result<(Vec<Tensor>, Vec<NodeTiming>)> {
    check_feeds(plan.feed_specs(), &feeds)?;
    match plan {
        Compiled::Single(plan) => run_step(plan, resources, feeds, profile),
        Compiled::Partitioned(plan) => plan.run(resources, feeds, profile),
    }
}

/// Checks `feeds` against what each fed tensor must look like: `(name, dtype, shape)` in
/// feed order. InvalidArgument naming the tensor on a wrong count, dtype or shape.
pub fn check_feeds(specs: &[(String, DType, Shape)], feeds: &[Tensor]) -> Result<()> {
    if feeds.len() != specs.len() {
        return Err(Error::invalid_argument(format!(
            "expected {} feeds, got {}",
            specs.len(),
            feeds.len()
        )));
    }
    for (t, (name, dtype, shape)) in feeds.iter().zip(specs) {
        if t.dtype() != *dtype {
            return Err(Error::invalid_argument(format!(
                "cannot feed a {} tensor to '{name}', which has dtype {dtype}",
                t.dtype()
            )));
        }
        if !shape.is_compatible_with(&t.shape()) {
            return Err(Error::invalid_argument(format!(
                "cannot feed a tensor of shape {} to '{name}', which has shape {shape}",
                t.shape()
            )));
        }
    }
    Ok(())
}

/// The dtype and inferred shape of each fed tensor of `graph`: `(name, dtype, shape)` in
/// feed order, what [`check_feeds`] checks feeds against.
pub fn feed_specs(graph: &Graph, feeds: &[String]) -> Result<Vec<(String, DType, Shape)>> {
    feeds
        .iter()
        .map(|name| {
            let o = graph.output_named(name)?;
            Ok((name.clone(), graph.dtype(o), graph.shape(o).clone()))
        })
        .collect()
}

/// Runs steps of a graph: a [`Session`] here, a cluster session elsewhere, so code that
/// drives steps (fixture harnesses, trainers) works with either.
pub trait RunStep {
    /// Feeds `feeds`, computes `fetches` and runs `targets`.
    fn run_step(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>>;
}

impl RunStep for Session {
    fn run_step(
        &self,
        feeds: &[(&str, Tensor)],
        fetches: &[&str],
        targets: &[&str],
    ) -> Result<Vec<Tensor>> {
        self.run(feeds, fetches, targets)
    }
}
