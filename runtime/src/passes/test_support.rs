//! Building blocks of the pass tests: running one pass for a step, counting ops, and a
//! builder whose registry declares `RandomUniform`.

use std::sync::Arc;

use rill_graph::{
    Graph, NodeId, OpDef, OpRegistry, Output, Pass, PassContext, PassManager, PassRecord,
};
use rill_ops::Builder;

/// Runs `pass` alone (to a fixpoint) on `graph` for the step feeding `fed`, fetching
/// `fetches` and running `targets` (tensor and node names).
pub fn run_pass(
    pass: impl Pass + 'static,
    graph: &mut Graph,
    fed: &[&str],
    fetches: &[&str],
    targets: &[&str],
) -> Vec<PassRecord> {
    let outs = |names: &[&str]| -> Vec<Output> {
        names
            .iter()
            .map(|n| graph.output_named(n).unwrap())
            .collect()
    };
    let (fed, fetches) = (outs(fed), outs(fetches));
    let targets: Vec<NodeId> = targets
        .iter()
        .map(|n| graph.node_named(n).unwrap())
        .collect();
    let mut cx = PassContext::for_step(graph, &fed, &fetches, &targets);
    run_with(pass, graph, &mut cx)
}

/// Runs `pass` alone on `graph` with a given context.
pub fn run_with(
    pass: impl Pass + 'static,
    graph: &mut Graph,
    cx: &mut PassContext,
) -> Vec<PassRecord> {
    PassManager::new()
        .dump_to(None)
        .group("test", vec![Box::new(pass)])
        .run(graph, cx)
        .unwrap()
}

/// How many live nodes of op `op` the graph has.
pub fn count(graph: &Graph, op: &str) -> usize {
    graph.nodes().filter(|(_, n)| n.op_name() == op).count()
}

/// Whether any record says the pass changed the graph.
pub fn changed(records: &[PassRecord]) -> bool {
    records.iter().any(|r| r.changed)
}

/// A builder whose registry has `RandomUniform` (a stand-in stateful definition when
/// Rill does not declare it yet).
pub fn builder_with_random() -> Builder {
    let mut reg: OpRegistry = (*rill_ops::registry()).clone();
    if reg.get("RandomUniform").is_none() {
        reg.register(
            OpDef::build("RandomUniform")
                .input("shape: T")
                .output("output: dtype")
                .attr("seed: int = 0")
                .attr("seed2: int = 0")
                .attr("dtype: {half, bfloat16, float, double}")
                .attr("T: {int32, int64}")
                .stateful(),
        )
        .unwrap();
    }
    Builder::from_graph(Graph::new(Arc::new(reg)))
}
