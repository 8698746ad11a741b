//! Declared rewrite patterns: a [`Pattern`] is a tree of op alternatives whose inputs are
//! anything ([`Arg::Any`]), a constant ([`Arg::Const`], seen through `Identity` nodes) or
//! the output of another pattern node ([`Arg::Node`]); a [`Matcher`] finds a pattern at a
//! root node and returns the captured nodes, inputs and constants; [`replace`] swaps the
//! matched nodes for the replacement a builder adds.
//!
//! Invariants of a match: every matched node but the root has output 0 read once, by its
//! parent in the pattern, and by nothing else (no other data or control consumer); none
//! is fed, fetched or a target; all matched nodes sit on the root's device; no root output
//! is fed; captured constants are not fed; no captured input is a matched node's output.
//! So the matched nodes compute nothing the step needs but the root's outputs.
//!
//! Invariants of [`replace`]: the replacement is built once on trial (under a scratch
//! name, then removed) before anything is touched, so a builder that fails leaves the
//! graph as it was; the replacement's last node takes the root's name, every reader of
//! the root's outputs and every control dependent of a matched node moves to it, and the
//! matched nodes' control inputs are kept on every node the builder added.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rill_graph::{Error, Graph, NodeId, Output, PassContext, Result, Tensor};

/// How one input of a pattern node must look.
pub enum Arg {
    /// Any tensor, captured under this name.
    Any(&'static str),
    /// The value of a `Const` node (possibly read through `Identity` nodes), captured
    /// under this name.
    Const(&'static str),
    /// Output 0 of a node matching this pattern, read by nothing else.
    Node(&'static Pattern),
}

/// A node of one of `ops`, captured under `name`, whose first inputs match `args` in
/// order (further inputs are not constrained).
pub struct Pattern {
    pub name: &'static str,
    pub ops: &'static [&'static str],
    pub args: &'static [Arg],
}

/// What a match captured.
#[derive(Debug, Clone)]
pub struct Match {
    pub root: NodeId,
    /// Matched nodes by pattern name (the root included).
    pub nodes: BTreeMap<&'static str, NodeId>,
    /// Tensors captured by [`Arg::Any`].
    pub inputs: BTreeMap<&'static str, Output>,
    /// Values captured by [`Arg::Const`], with the tensor they were read from.
    pub consts: BTreeMap<&'static str, (Output, Tensor)>,
    /// The matched nodes, root first: what [`replace`] removes.
    pub chain: Vec<NodeId>,
}

impl Match {
    /// The node captured as `name` (the pattern declares it, so it is there).
    pub fn node(&self, name: &str) -> NodeId {
        self.nodes[name]
    }
    /// The tensor captured as `name`.
    pub fn input(&self, name: &str) -> Output {
        self.inputs[name]
    }
    /// The constant captured as `name`.
    pub fn constant(&self, name: &str) -> &Tensor {
        &self.consts[name].1
    }
}

/// For each node, the distinct nodes that read one of its outputs, and whether any
/// depends on it by a control edge.
pub struct Consumers {
    data: HashMap<NodeId, BTreeSet<NodeId>>,
    control: BTreeSet<NodeId>,
}

impl Consumers {
    pub fn of(graph: &Graph) -> Consumers {
        let mut data: HashMap<NodeId, BTreeSet<NodeId>> = HashMap::new();
        let mut control = BTreeSet::new();
        for (id, n) in graph.nodes() {
            for o in &n.inputs {
                data.entry(o.node).or_default().insert(id);
            }
            control.extend(n.control_inputs.iter().copied());
        }
        Consumers { data, control }
    }

    /// The distinct nodes reading an output of `id`.
    pub fn readers(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.data.get(&id).into_iter().flatten().copied()
    }

    /// Whether some node has a control edge from `id`.
    pub fn has_control_dependents(&self, id: NodeId) -> bool {
        self.control.contains(&id)
    }

    /// Whether `only` is the one node reading `id`, and nothing depends on `id` by control.
    pub fn only_reader(&self, id: NodeId, only: NodeId) -> bool {
        !self.has_control_dependents(id) && self.readers(id).eq(std::iter::once(only))
    }
}

/// Finds declared patterns in one graph for one step (`consumers` must be the graph's).
pub struct Matcher<'a> {
    pub graph: &'a Graph,
    pub cx: &'a PassContext,
    pub consumers: &'a Consumers,
}

impl<'a> Matcher<'a> {
    pub fn new(graph: &'a Graph, cx: &'a PassContext, consumers: &'a Consumers) -> Matcher<'a> {
        Matcher {
            graph,
            cx,
            consumers,
        }
    }

    /// Whether any output of `id` is fed.
    fn any_output_fed(&self, id: NodeId) -> bool {
        let n = self.graph.node(id);
        (0..n.num_outputs()).any(|i| self.cx.is_fed(self.graph, id.output(i)))
    }

    /// `p` matched at `root`, if it matches there.
    pub fn at(&self, p: &Pattern, root: NodeId) -> Option<Match> {
        self.graph.get(root)?;
        if self.any_output_fed(root) {
            return None;
        }
        let mut m = Match {
            root,
            nodes: BTreeMap::new(),
            inputs: BTreeMap::new(),
            consts: BTreeMap::new(),
            chain: vec![],
        };
        if !self.node(p, root, &mut m) {
            return None;
        }
        let chain: BTreeSet<NodeId> = m.chain.iter().copied().collect();
        let captured = m.inputs.values().chain(m.consts.values().map(|(o, _)| o));
        if captured.into_iter().any(|o| chain.contains(&o.node)) {
            return None;
        }
        Some(m)
    }

    fn node(&self, p: &Pattern, id: NodeId, m: &mut Match) -> bool {
        let n = self.graph.node(id);
        if !p.ops.contains(&n.op_name()) || n.inputs.len() < p.args.len() {
            return false;
        }
        m.nodes.insert(p.name, id);
        m.chain.push(id);
        for (arg, &input) in p.args.iter().zip(&n.inputs) {
            let ok = match arg {
                Arg::Any(name) => m.inputs.insert(name, input).is_none(),
                Arg::Const(name) => match self.constant(input) {
                    Some(value) => m.consts.insert(name, (input, value)).is_none(),
                    None => false,
                },
                Arg::Node(sub) => self.inner(input, id, m.root) && self.node(sub, input.node, m),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Whether `o` may be absorbed into a rewrite rooted at `root` as the input of `reader`.
    fn inner(&self, o: Output, reader: NodeId, root: NodeId) -> bool {
        let (n, r) = (self.graph.node(o.node), self.graph.node(root));
        o.index == 0
            && self.consumers.only_reader(o.node, reader)
            && !self.cx.keeps(&n.name)
            && !self.any_output_fed(o.node)
            && n.requested_device == r.requested_device
            && n.assigned_device == r.assigned_device
    }

    /// The value of `o` when it is a `Const` (through `Identity` nodes) nothing feeds.
    pub fn constant(&self, mut o: Output) -> Option<Tensor> {
        loop {
            if self.cx.is_fed(self.graph, o) {
                return None;
            }
            let n = self.graph.node(o.node);
            match n.op_name() {
                "Const" => return n.attr("value")?.as_tensor().cloned(),
                "Identity" => o = *n.inputs.first()?,
                _ => return None,
            }
        }
    }
}

/// Replaces the matched nodes `m.chain` by the nodes `build(graph, root_name)` adds, the
/// last of which it returns and must name `root_name`. Returns the new root, or `None`
/// (graph untouched) when the trial build fails or lacks an output of the root's dtype
/// that something reads (output 0 always counts); an error only when the graph could not
/// be rewired (a bug).
pub fn replace(
    graph: &mut Graph,
    m: &Match,
    build: &dyn Fn(&mut Graph, &str) -> Result<NodeId>,
) -> Result<Option<NodeId>> {
    let old = graph.node(m.root).clone();
    let trial_name = graph.unique_name(&format!("{}/_fusion_trial", old.name));
    let first_new = graph.node_ids().last().map_or(0, |id| id.index() + 1);
    let added_since = |graph: &Graph, first: usize| -> Vec<NodeId> {
        graph
            .node_ids()
            .into_iter()
            .filter(|id| id.index() >= first)
            .collect()
    };
    let read: BTreeSet<usize> = graph
        .nodes()
        .flat_map(|(_, n)| {
            n.inputs
                .iter()
                .filter(|o| o.node == m.root)
                .map(|o| o.index)
        })
        .chain([0])
        .collect();
    let trial = build(graph, &trial_name);
    let fits = match &trial {
        Ok(id) => {
            let types = &graph.node(*id).output_types;
            read.iter()
                .all(|&i| types.get(i).is_some() && types.get(i) == old.output_types.get(i))
        }
        Err(_) => false,
    };
    for id in added_since(graph, first_new) {
        graph.remove_node(id);
    }
    if !fits {
        return Ok(None);
    }
    let chain: BTreeSet<NodeId> = m.chain.iter().copied().collect();
    let mut controls: Vec<NodeId> = vec![];
    for &id in &m.chain {
        for &c in &graph.node(id).control_inputs {
            if !chain.contains(&c) && !controls.contains(&c) {
                controls.push(c);
            }
        }
    }
    for &id in &m.chain {
        graph.remove_node(id);
    }
    let first_new = graph.node_ids().last().map_or(0, |id| id.index() + 1);
    let root = build(graph, &old.name).map_err(|e| {
        Error::internal(format!(
            "fusion: rebuilding '{}' failed after its trial succeeded: {}",
            old.name, e.message
        ))
    })?;
    for &i in &read {
        graph.replace_uses(m.root.output(i), root.output(i));
    }
    for &id in &m.chain {
        graph.replace_control_uses(id, &[root]);
    }
    for id in added_since(graph, first_new) {
        for &c in &controls {
            graph.add_control_input(id, c);
        }
        if old.assigned_device.is_some() {
            graph.node_mut(id).assigned_device = old.assigned_device.clone();
        }
    }
    let node = graph.node_mut(root);
    for (new, known) in node.output_shapes.iter_mut().zip(&old.output_shapes) {
        if let Ok(merged) = new.merge(known) {
            *new = merged;
        }
    }
    for ids in graph.collections.values_mut() {
        for id in ids.iter_mut().filter(|id| **id == m.root) {
            *id = root;
        }
    }
    Ok(Some(root))
}
