//! The compile pipeline a session runs on each step's graph before planning it: the
//! simplification group (pruning, identity removal, shape and constant folding, algebraic
//! rewrites, CSE) to a fixpoint, then the fusion group, then a final cleanup.
//!
//! Invariant: the optimised graph computes the same fetches from the same feeds and runs
//! the same stateful ops as the graph the user wrote; fed, fetched and target nodes keep
//! their names, so the step resolves them by name in the optimised graph.

use rill_graph::{Graph, NodeId, Output, PassContext, PassManager, PassRecord, Result};

use crate::{fusion, passes};

/// The passes a session runs, in groups.
pub fn pipeline() -> PassManager {
    PassManager::new()
        .group("simplify", passes::simplification_passes())
        .group("fuse", fusion::fusion_passes())
        .group("cleanup", vec![Box::new(passes::Prune)])
}

/// The optimised graph for the step feeding `feeds`, fetching `fetches` and running
/// `targets`, with a record of what every pass did.
pub fn optimize(
    graph: &Graph,
    feeds: &[Output],
    fetches: &[Output],
    targets: &[NodeId],
) -> Result<(Graph, Vec<PassRecord>)> {
    let mut cx = PassContext::for_step(graph, feeds, fetches, targets);
    let mut optimized = graph.clone();
    let records = pipeline().run(&mut optimized, &mut cx)?;
    optimized.compact();
    Ok((optimized, records))
}

/// The step's graph cut down to what the fetches and targets need, nothing else changed:
/// what a step runs when optimisation is off (a partitioned step must not send, and so
/// run, nodes the step does not need).
pub fn prune(
    graph: &Graph,
    feeds: &[Output],
    fetches: &[Output],
    targets: &[NodeId],
) -> Result<Graph> {
    let mut cx = PassContext::for_step(graph, feeds, fetches, targets);
    let mut pruned = graph.clone();
    PassManager::new()
        .group("prune", vec![Box::new(passes::Prune)])
        .run(&mut pruned, &mut cx)?;
    pruned.compact();
    Ok(pruned)
}
