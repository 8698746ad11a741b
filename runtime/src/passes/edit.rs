//! Editing the graph for the simplification passes: a consumer index kept up to date as
//! edges are rewired ([`Uses`]), removing a node and pointing its consumers elsewhere
//! ([`detach`] then [`rewire`], or [`bypass`] for `f(x) -> x`), replacing a node by
//! `Const`s, and re-running shape inference downstream of rewritten nodes
//! ([`reinfer_downstream`]).
//!
//! Invariants: every helper leaves no edge to a removed node and keeps [`Uses`] equal to
//! what [`Graph::consumers`] would say (as a set); nothing here panics on graph content.

use std::collections::{BTreeSet, HashMap, HashSet};

use rill_graph::{
    AttrValue, DeviceSpec, Error, Graph, Node, NodeId, NodeSpec, Output, Result, Shape, Tensor,
};

/// Adds a `Const` named `name` holding `value`, run after `control_inputs`.
pub(crate) fn add_const(
    graph: &mut Graph,
    uses: &mut Uses,
    name: &str,
    value: Tensor,
    control_inputs: Vec<NodeId>,
    device: DeviceSpec,
) -> Result<NodeId> {
    let mut attrs = rill_graph::Attrs::new();
    attrs.insert("dtype".into(), AttrValue::Type(value.dtype()));
    attrs.insert("value".into(), AttrValue::Tensor(value));
    let id = graph.add_node(NodeSpec {
        name: name.to_string(),
        op: "Const".into(),
        input_groups: vec![],
        control_inputs: control_inputs.clone(),
        attrs,
        device,
    })?;
    for c in control_inputs {
        uses.add(c, id);
    }
    Ok(id)
}

/// For each node, the nodes that read one of its outputs or depend on it by control
/// (each consumer once), kept up to date by the helpers below.
pub(crate) struct Uses(HashMap<NodeId, BTreeSet<NodeId>>);

impl Uses {
    pub fn of(graph: &Graph) -> Uses {
        let mut uses = Uses(HashMap::new());
        for (id, n) in graph.nodes() {
            for src in n
                .inputs
                .iter()
                .map(|o| o.node)
                .chain(n.control_inputs.clone())
            {
                uses.add(src, id);
            }
        }
        uses
    }

    /// The consumers of `id`, in id order.
    pub fn of_node(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.0.get(&id).into_iter().flatten().copied()
    }

    /// How many nodes consume `id`.
    pub fn count(&self, id: NodeId) -> usize {
        self.0.get(&id).map_or(0, BTreeSet::len)
    }

    pub fn add(&mut self, src: NodeId, dst: NodeId) {
        self.0.entry(src).or_default().insert(dst);
    }

    /// Forgets `dst` as a consumer of `src` unless `dst` still reads or waits for `src`.
    pub fn drop_if_unused(&mut self, graph: &Graph, src: NodeId, dst: NodeId) {
        let still = graph.get(dst).is_some_and(|n| {
            n.inputs.iter().any(|o| o.node == src) || n.control_inputs.contains(&src)
        });
        if !still {
            if let Some(set) = self.0.get_mut(&src) {
                set.remove(&dst);
            }
        }
    }

    /// Whether some consumer of `id` reads its output `index`.
    pub fn output_read(&self, graph: &Graph, id: NodeId, index: usize) -> bool {
        self.of_node(id).any(|k| {
            graph
                .get(k)
                .is_some_and(|k| k.inputs.contains(&id.output(index)))
        })
    }
}

/// Removes node `id` from the graph and from the consumer lists of what it read; returns
/// the node and its consumers, whose edges to it the caller must then [`rewire`].
pub(crate) fn detach(
    graph: &mut Graph,
    uses: &mut Uses,
    id: NodeId,
) -> Result<(Node, Vec<NodeId>)> {
    let node = graph
        .remove_node(id)
        .ok_or_else(|| Error::internal("a pass removed a node twice"))?;
    for src in node
        .inputs
        .iter()
        .map(|o| o.node)
        .chain(node.control_inputs.clone())
    {
        if let Some(set) = uses.0.get_mut(&src) {
            set.remove(&id);
        }
    }
    let consumers = uses.0.remove(&id).into_iter().flatten().collect();
    Ok((node, consumers))
}

/// Points the consumers of the removed node `old` elsewhere: a data input reading output
/// `i` reads `outputs[i]`; a control edge on `old` becomes control edges on `control_to`;
/// and every consumer also waits for each of `forward`.
pub(crate) fn rewire(
    graph: &mut Graph,
    uses: &mut Uses,
    old: NodeId,
    consumers: &[NodeId],
    outputs: &[Option<Output>],
    control_to: &[NodeId],
    forward: &[NodeId],
) -> Result<()> {
    for &k in consumers {
        let Some(node) = graph.get(k) else { continue };
        let mut inputs = node.inputs.clone();
        let mut controls = node.control_inputs.clone();
        for input in inputs.iter_mut().filter(|o| o.node == old) {
            *input = outputs.get(input.index).copied().flatten().ok_or_else(|| {
                Error::internal(format!(
                    "a pass removed output {} of a node '{}' still reads",
                    input.index, node.name
                ))
            })?;
        }
        let mut extra: Vec<NodeId> = forward.to_vec();
        if let Some(at) = controls.iter().position(|&c| c == old) {
            controls.remove(at);
            extra.extend_from_slice(control_to);
        }
        for c in extra {
            let reads = inputs.iter().any(|o| o.node == c);
            if c != k && c != old && !reads && !controls.contains(&c) {
                controls.push(c);
            }
        }
        for src in inputs.iter().map(|o| o.node).chain(controls.clone()) {
            uses.add(src, k);
        }
        let node = graph.node_mut(k);
        node.inputs = inputs;
        node.control_inputs = controls;
    }
    Ok(())
}

/// Removes node `id` (which has at most one output) and points its uses at `x`: the
/// consumers inherit its control inputs, and control consumers wait for `x`'s node and
/// those control inputs instead. The way passes turn `f(x)` into `x`.
pub(crate) fn bypass(
    graph: &mut Graph,
    uses: &mut Uses,
    id: NodeId,
    x: Option<Output>,
    extra_controls: &[NodeId],
) -> Result<()> {
    let (node, consumers) = detach(graph, uses, id)?;
    let mut forward = node.control_inputs.clone();
    forward.extend(
        extra_controls
            .iter()
            .filter(|c| !node.control_inputs.contains(c)),
    );
    let control_to: Vec<NodeId> = x.map(|x| x.node).into_iter().collect();
    rewire(graph, uses, id, &consumers, &[x], &control_to, &forward)
}

/// Points the data consumers of output `index` of `id` (which stays) at `new`.
pub(crate) fn redirect_output(
    graph: &mut Graph,
    uses: &mut Uses,
    id: NodeId,
    index: usize,
    new: Output,
) {
    let old = id.output(index);
    for k in uses.of_node(id).collect::<Vec<_>>() {
        let Some(node) = graph.get(k) else { continue };
        if !node.inputs.contains(&old) {
            continue;
        }
        for input in graph.node_mut(k).inputs.iter_mut() {
            if *input == old {
                *input = new;
            }
        }
        uses.add(new.node, k);
        uses.drop_if_unused(graph, id, k);
    }
}

/// Replaces node `id` by `Const`s holding `values` (one per output), each run after the
/// node's control inputs and `extra_controls`. A node with one output becomes a `Const` of
/// the same name; otherwise only outputs something reads get one (`name/folded_i`).
/// Returns the new nodes.
pub(crate) fn replace_with_consts(
    graph: &mut Graph,
    uses: &mut Uses,
    id: NodeId,
    values: Vec<Tensor>,
    extra_controls: &[NodeId],
) -> Result<Vec<NodeId>> {
    let n = graph.node(id).num_outputs();
    if values.len() != n {
        return Err(Error::internal(
            "a pass folded a node into the wrong number of values",
        ));
    }
    let read: Vec<bool> = (0..n).map(|i| uses.output_read(graph, id, i)).collect();
    let (old, consumers) = detach(graph, uses, id)?;
    let mut controls = old.control_inputs.clone();
    for &c in extra_controls {
        if !controls.contains(&c) && graph.get(c).is_some() {
            controls.push(c);
        }
    }
    let mut outputs = vec![None; n];
    let mut created = vec![];
    for (i, value) in values.into_iter().enumerate() {
        if n > 1 && !read[i] {
            continue;
        }
        let name = if n == 1 {
            old.name.clone()
        } else {
            graph.unique_name(&format!("{}/folded_{i}", old.name))
        };
        let c = add_const(
            graph,
            uses,
            &name,
            value,
            controls.clone(),
            old.requested_device.clone(),
        )?;
        outputs[i] = Some(c.output(0));
        created.push(c);
    }
    let control_to = if created.is_empty() {
        controls
    } else {
        created.clone()
    };
    rewire(graph, uses, id, &consumers, &outputs, &control_to, &[])?;
    Ok(created)
}

/// Re-runs shape inference in topological order for every node downstream of `seeds`
/// whose inputs' shapes or values changed, keeping what was known before: a shape
/// function that fails or disagrees leaves the node's old shapes (the step will report
/// the problem when it runs).
pub(crate) fn reinfer_downstream(graph: &mut Graph, seeds: &HashSet<NodeId>) -> Result<()> {
    if seeds.is_empty() {
        return Ok(());
    }
    let mut dirty = seeds.clone();
    for id in graph.topo_order()? {
        if dirty.contains(&id) {
            continue;
        }
        let node = graph.node(id);
        if !node.inputs.iter().any(|o| dirty.contains(&o.node)) {
            continue;
        }
        let old = node.output_shapes.clone();
        let merged = match graph.infer_node(id) {
            Ok(()) => graph
                .node(id)
                .output_shapes
                .iter()
                .zip(&old)
                .map(|(new, old)| old.merge(new))
                .collect::<Result<Vec<Shape>>>()
                .unwrap_or_else(|_| old.clone()),
            Err(_) => old.clone(),
        };
        if merged != old {
            dirty.insert(id);
        }
        graph.node_mut(id).output_shapes = merged;
    }
    Ok(())
}
