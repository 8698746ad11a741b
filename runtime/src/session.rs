//! [`Session`]: runs a graph. `run(feeds, fetches, targets)` compiles a plan for the
//! signature once (cached), checks the feeds against the graph, and runs the executor;
//! [`Callable`] is a prepared signature for hot loops (no lookups per call).
//!
//! Invariants: the session's graph never changes after creation; every error a user can
//! act on (missing feed, wrong dtype or shape, unknown fetch, missing kernel) names the
//! tensor or node.

use std::sync::Arc;

use rill_graph::{Error, Graph, NodeId, Output, Result, Tensor};
use rill_kernels::{KernelRegistry, ResourceMgr};

use crate::executor::{run_step, NodeTiming};
use crate::plan::{Plan, PlanCache};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Run the optimisation passes (folding, CSE, pruning, fusion) and the memory plan on
    /// each step's graph. On by default.
    pub optimize: bool,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions { optimize: true }
    }
}

impl SessionOptions {
    /// Options that run the graph exactly as written: no passes, no memory plan.
    pub fn unoptimized() -> SessionOptions {
        SessionOptions { optimize: false }
    }
}

/// Runs steps of one graph.
pub struct Session {
    graph: Arc<Graph>,
    options: SessionOptions,
    kernels: Arc<KernelRegistry>,
    resources: Arc<ResourceMgr>,
    plans: PlanCache,
}

/// A prepared (feeds, fetches, targets) signature.
pub struct Callable {
    plan: Arc<Plan>,
    resources: Arc<ResourceMgr>,
}

impl Session {
    /// A session over `graph`, which is validated first.
    pub fn new(graph: Graph, options: SessionOptions) -> Result<Session> {
        graph.validate()?;
        Ok(Session {
            graph: Arc::new(graph),
            options,
            kernels: rill_kernels::registry(),
            resources: Arc::new(ResourceMgr::new()),
            plans: PlanCache::default(),
        })
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
        let plan = self.plan(&names, fetches, targets)?;
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
        let plan = self.plan(&names, fetches, targets)?;
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
            plan: self.plan(feeds, fetches, targets)?,
            resources: self.resources.clone(),
        })
    }

    /// The session's variables and other resources.
    pub fn resources(&self) -> &Arc<ResourceMgr> {
        &self.resources
    }

    /// Number of distinct signatures compiled so far.
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }
}

impl Callable {
    /// Runs one step with `feeds` in the prepared order.
    pub fn run(&self, feeds: Vec<Tensor>) -> Result<Vec<Tensor>> {
        run_checked(&self.plan, &self.resources, feeds, false).map(|(f, _)| f)
    }
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
    plan: &Arc<Plan>,
    resources: &Arc<ResourceMgr>,
    feeds: Vec<Tensor>,
    profile: bool,
) -> Result<(Vec<Tensor>, Vec<NodeTiming>)> {
    if feeds.len() != plan.feed_specs.len() {
        return Err(Error::invalid_argument(format!(
            "expected {} feeds, got {}",
            plan.feed_specs.len(),
            feeds.len()
        )));
    }
    for (t, (name, dtype, shape)) in feeds.iter().zip(&plan.feed_specs) {
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
    run_step(plan, resources, feeds, profile)
}
