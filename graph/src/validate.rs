//! Graph-wide checks and orderings: topological order (loop back-edges
//! `NextIteration -> Merge` excepted), cycle detection, and [`Graph::validate`] (dangling
//! inputs, duplicate names, dtype mismatches, cycles).
//!
//! Invariant: a graph that passes `validate` can be scheduled: `topo_order` succeeds and
//! every input refers to a live output of the right dtype.

use petgraph::graph::DiGraph;

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};

/// Whether the edge `src -> dst` closes a TF1 while loop (and so does not order nodes).
pub fn is_back_edge(src_op: &str, dst_op: &str) -> bool {
    dst_op == "Merge" && (src_op == "NextIteration" || src_op == "RefNextIteration")
}

/// Topologically sorts `n` items given each item's predecessors; on a cycle, returns one
/// item on it.
pub fn topo_sort(
    n: usize,
    preds: impl Fn(usize) -> Vec<usize>,
) -> std::result::Result<Vec<usize>, usize> {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(n, n);
    let ids: Vec<_> = (0..n).map(|i| g.add_node(i)).collect();
    for (dst, &dst_id) in ids.iter().enumerate() {
        for src in preds(dst) {
            g.add_edge(ids[src], dst_id, ());
        }
    }
    petgraph::algo::toposort(&g, None)
        .map(|order| order.into_iter().map(|i| g[i]).collect())
        .map_err(|cycle| g[cycle.node_id()])
}

impl Graph {
    /// Live nodes in an order where every node comes after its inputs (loop back-edges
    /// excepted); InvalidArgument naming a node on a cycle otherwise.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let ids = self.node_ids();
        let pos: std::collections::HashMap<NodeId, usize> =
            ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let order = topo_sort(ids.len(), |i| {
            let node = self.node(ids[i]);
            node.inputs
                .iter()
                .map(|o| o.node)
                .chain(node.control_inputs.iter().copied())
                .filter(|src| {
                    self.get(*src)
                        .is_some_and(|s| !is_back_edge(s.op_name(), node.op_name()))
                })
                .filter_map(|src| pos.get(&src).copied())
                .collect()
        })
        .map_err(|i| {
            let n = self.node(ids[i]);
            Error::invalid_argument(format!("the graph has a cycle through node '{}'", n.name))
                .at_node(&n.name, n.op_name())
        })?;
        Ok(order.into_iter().map(|i| ids[i]).collect())
    }

    /// Checks the whole graph: names, inputs, dtypes and acyclicity.
    pub fn validate(&self) -> Result<()> {
        if self.names.len() != self.nodes().count() {
            return Err(Error::internal(
                "node name index is out of date (duplicate names?)",
            ));
        }
        for (id, node) in self.nodes() {
            if self.names.get(&node.name) != Some(&id) {
                return Err(Error::invalid_argument(format!(
                    "duplicate node name '{}'",
                    node.name
                )));
            }
            for o in &node.inputs {
                match self.get(o.node) {
                    Some(src) if o.index < src.num_outputs() => {}
                    Some(src) => {
                        return Err(Error::invalid_argument(format!(
                            "input '{}:{}' does not exist ('{}' has {} outputs)",
                            src.name,
                            o.index,
                            src.name,
                            src.num_outputs()
                        ))
                        .at_node(&node.name, node.op_name()))
                    }
                    None => {
                        return Err(Error::invalid_argument("an input refers to a removed node")
                            .at_node(&node.name, node.op_name()))
                    }
                }
            }
            if node.control_inputs.iter().any(|c| self.get(*c).is_none()) {
                return Err(
                    Error::invalid_argument("a control input refers to a removed node")
                        .at_node(&node.name, node.op_name()),
                );
            }
            self.check_input_types(id)?;
        }
        self.topo_order().map(|_| ())
    }
}
