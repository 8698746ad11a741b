//! The graph IR: an arena of [`Node`]s with stable [`NodeId`]s (never reused; removal leaves
//! a tombstone until [`Graph::compact`]), outputs addressed as [`Output`] (node + index),
//! data inputs and control inputs kept apart, typed attrs, requested and assigned devices,
//! and the dtypes and shapes of every output.
//!
//! Invariants: node names are unique and follow TensorFlow's naming rule; every node's
//! attrs are complete for its [`OpDef`]; `output_types` and `output_shapes` have one entry
//! per output; [`Graph::add_node`] only accepts inputs that already exist, so a graph built
//! through it is acyclic (loop back-edges are set afterwards with [`Graph::set_input`]).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::attr::{AttrValue, Attrs};
use crate::device::DeviceSpec;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op_def::{OpDef, OpRegistry};
use crate::shape::Shape;
use crate::shape_fn::InferenceContext;
use crate::tensor::Tensor;
use rill_proto::tensorflow::{node_def::ExperimentalDebugInfo, FullTypeDef, GraphDebugInfo};
use rill_proto::{FunctionDefLibrary, VersionDef};

/// A node's stable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NonZeroU32);

impl NodeId {
    /// Position in the arena.
    pub fn index(self) -> usize {
        self.0.get() as usize - 1
    }
    pub(crate) fn from_index(i: usize) -> NodeId {
        NodeId(NonZeroU32::new(i as u32 + 1).expect("fewer than 2^32 nodes"))
    }
}

/// One output tensor of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Output {
    pub node: NodeId,
    pub index: usize,
}

impl NodeId {
    /// Output `index` of this node.
    pub fn output(self, index: usize) -> Output {
        Output { node: self, index }
    }
}

/// Fields TensorFlow carries on a NodeDef that Rill keeps but does not interpret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeExtras {
    pub experimental_type: Option<FullTypeDef>,
    pub debug_info: Option<ExperimentalDebugInfo>,
}

/// A node of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: Arc<OpDef>,
    pub inputs: Vec<Output>,
    pub control_inputs: Vec<NodeId>,
    pub attrs: Attrs,
    pub requested_device: DeviceSpec,
    pub assigned_device: Option<DeviceSpec>,
    /// The dtypes the op expects on its inputs (from the OpDef and attrs).
    pub input_types: Vec<DType>,
    pub output_types: Vec<DType>,
    pub output_shapes: Vec<Shape>,
    pub extras: NodeExtras,
}

impl Node {
    pub fn op_name(&self) -> &str {
        &self.op.name
    }
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.get(name)
    }
    pub fn num_outputs(&self) -> usize {
        self.output_types.len()
    }
}

/// What [`Graph::add_node`] needs to create a node.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub name: String,
    pub op: String,
    /// Data inputs grouped by the op's input args (one group per arg; a list arg's group
    /// holds all its tensors).
    pub input_groups: Vec<Vec<Output>>,
    pub control_inputs: Vec<NodeId>,
    pub attrs: Attrs,
    pub device: DeviceSpec,
}

/// A dataflow graph.
#[derive(Clone)]
pub struct Graph {
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) names: HashMap<String, NodeId>,
    registry: Arc<OpRegistry>,
    pub versions: VersionDef,
    /// Functions carried by the GraphDef, kept so they survive a round trip.
    pub library: FunctionDefLibrary,
    pub debug_info: Option<GraphDebugInfo>,
    /// Named groups of nodes (TensorFlow's graph collections, e.g. the variable
    /// initialisers). Kept in memory only: a GraphDef has no place for them.
    pub collections: std::collections::BTreeMap<String, Vec<NodeId>>,
}

/// TensorFlow's node-name rule: `[A-Za-z0-9.][A-Za-z0-9_.\-/>]*` (internal names may start
/// with `_`).
pub fn is_valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '.' || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || "_.-/>".contains(c))
}

impl Graph {
    /// An empty graph whose ops come from `registry`.
    pub fn new(registry: Arc<OpRegistry>) -> Graph {
        Graph {
            nodes: vec![],
            names: HashMap::new(),
            registry,
            versions: VersionDef {
                producer: crate::PRODUCER_VERSION,
                min_consumer: 0,
                bad_consumers: vec![],
            },
            library: FunctionDefLibrary::default(),
            debug_info: None,
            collections: Default::default(),
        }
    }

    /// Adds `id` to the collection `name`.
    pub fn add_to_collection(&mut self, name: &str, id: NodeId) {
        self.collections
            .entry(name.to_string())
            .or_default()
            .push(id);
    }

    /// The live nodes of collection `name`, in insertion order.
    pub fn collection(&self, name: &str) -> Vec<NodeId> {
        self.collections
            .get(name)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|&id| self.get(id).is_some())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn registry(&self) -> &Arc<OpRegistry> {
        &self.registry
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Live nodes in id order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId::from_index(i), n)))
    }

    /// Ids of live nodes in id order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes().map(|(id, _)| id).collect()
    }

    /// The node; panics on a removed or foreign id (a programming error, not user input).
    pub fn node(&self, id: NodeId) -> &Node {
        self.get(id).expect("live node id")
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.index()].as_mut().expect("live node id")
    }

    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index())?.as_ref()
    }

    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).copied()
    }

    /// The node named `name`, or NotFound.
    pub fn node_named(&self, name: &str) -> Result<NodeId> {
        self.find(name)
            .ok_or_else(|| Error::not_found(format!("no node named '{name}' in the graph")))
    }

    /// Resolves a tensor name (`node` or `node:index`), or NotFound / InvalidArgument.
    pub fn output_named(&self, tensor: &str) -> Result<Output> {
        let (name, index) = parse_tensor_name(tensor)?;
        let id = self.node_named(name)?;
        let node = self.node(id);
        if index >= node.num_outputs() {
            return Err(Error::not_found(format!(
                "'{tensor}': node '{name}' ({}) has {} outputs",
                node.op_name(),
                node.num_outputs()
            )));
        }
        Ok(Output { node: id, index })
    }

    /// `node:index` for an output (TensorFlow's tensor name).
    pub fn tensor_name(&self, o: Output) -> String {
        format!("{}:{}", self.node(o.node).name, o.index)
    }

    pub fn dtype(&self, o: Output) -> DType {
        self.node(o.node).output_types[o.index]
    }

    pub fn shape(&self, o: Output) -> &Shape {
        &self.node(o.node).output_shapes[o.index]
    }

    /// A name not yet used, `base` itself or `base_1`, `base_2`, ...
    pub fn unique_name(&self, base: &str) -> String {
        if !self.names.contains_key(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.names.contains_key(n))
            .expect("an unused name exists")
    }

    /// Adds a node: completes attrs (defaults, type attrs from inputs), checks input dtypes
    /// and runs the op's shape function. Errors name the node and op.
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeId> {
        let (name, op) = (spec.name.clone(), spec.op.clone());
        self.add_node_inner(spec).map_err(|e| e.at_node(&name, &op))
    }

    fn add_node_inner(&mut self, spec: NodeSpec) -> Result<NodeId> {
        self.check_new_name(&spec.name)?;
        for o in spec.input_groups.iter().flatten() {
            self.check_output(*o)?;
        }
        for &c in &spec.control_inputs {
            self.get(c).ok_or_else(|| {
                Error::invalid_argument("control input is not a node of this graph")
            })?;
        }
        let op = self.registry.lookup(&spec.op)?.clone();
        let mut attrs = spec.attrs;
        let groups: Vec<Vec<DType>> = spec
            .input_groups
            .iter()
            .map(|g| g.iter().map(|&o| self.dtype(o)).collect())
            .collect();
        op.infer_attrs_from_inputs(&mut attrs, &groups)?;
        let inputs: Vec<Output> = spec.input_groups.into_iter().flatten().collect();
        let node = self.make_node(
            spec.name,
            op,
            inputs,
            spec.control_inputs,
            attrs,
            spec.device,
        )?;
        let id = NodeId::from_index(self.nodes.len());
        self.names.insert(node.name.clone(), id);
        self.nodes.push(Some(node));
        if let Err(e) = self.check_input_types(id).and_then(|_| self.infer_node(id)) {
            let node = self.nodes.pop().flatten().expect("just pushed");
            self.names.remove(&node.name);
            return Err(e);
        }
        Ok(id)
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if !is_valid_node_name(name) {
            return Err(Error::invalid_argument(format!(
                "'{name}' is not a valid node name"
            )));
        }
        if self.names.contains_key(name) {
            return Err(Error::new(
                crate::Code::AlreadyExists,
                format!("duplicate node name '{name}'"),
            ));
        }
        Ok(())
    }

    fn check_output(&self, o: Output) -> Result<()> {
        match self.get(o.node) {
            None => Err(Error::invalid_argument("input is not a node of this graph")),
            Some(n) if o.index >= n.num_outputs() => Err(Error::invalid_argument(format!(
                "input '{}:{}' does not exist: '{}' has {} outputs",
                n.name,
                o.index,
                n.name,
                n.num_outputs()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Builds a node's static part (attrs completed, dtypes resolved), without inputs
    /// being checked against the graph.
    pub(crate) fn make_node(
        &self,
        name: String,
        op: Arc<OpDef>,
        inputs: Vec<Output>,
        control_inputs: Vec<NodeId>,
        mut attrs: Attrs,
        device: DeviceSpec,
    ) -> Result<Node> {
        op.complete_attrs(&mut attrs)?;
        let input_types = op.arg_types(&op.inputs, &attrs)?;
        let output_types = op.arg_types(&op.outputs, &attrs)?;
        if input_types.len() != inputs.len() {
            return Err(Error::invalid_argument(format!(
                "{} expects {} inputs, got {}",
                op.name,
                input_types.len(),
                inputs.len()
            )));
        }
        let output_shapes = vec![Shape::unknown(); output_types.len()];
        Ok(Node {
            name,
            op,
            inputs,
            control_inputs,
            attrs,
            requested_device: device,
            assigned_device: None,
            input_types,
            output_types,
            output_shapes,
            extras: NodeExtras::default(),
        })
    }

    /// Fails when an input's dtype is not the one the op expects there.
    pub fn check_input_types(&self, id: NodeId) -> Result<()> {
        let node = self.node(id);
        for (i, (&o, &want)) in node.inputs.iter().zip(&node.input_types).enumerate() {
            let Some(src) = self.get(o.node) else {
                continue;
            };
            let have = src.output_types[o.index];
            if have != want {
                return Err(Error::invalid_argument(format!(
                    "input {i} of '{}' ({}) must be {want}, but '{}' is {have}",
                    node.name,
                    node.op_name(),
                    self.tensor_name(o)
                ))
                .at_node(&node.name, node.op_name()));
            }
        }
        Ok(())
    }

    /// Runs the op's shape function for one node, from its inputs' current shapes.
    pub fn infer_node(&mut self, id: NodeId) -> Result<()> {
        let node = self.node(id);
        let mut cx = InferenceContext {
            op: node.op_name(),
            attrs: &node.attrs,
            input_dtypes: node.input_types.clone(),
            input_shapes: Vec::with_capacity(node.inputs.len()),
            input_values: Vec::with_capacity(node.inputs.len()),
            input_shape_values: Vec::with_capacity(node.inputs.len()),
            input_names: Vec::with_capacity(node.inputs.len()),
            num_outputs: node.num_outputs(),
        };
        for &o in &node.inputs {
            let src = self.get(o.node);
            cx.input_shapes
                .push(src.map_or(Shape::unknown(), |s| s.output_shapes[o.index].clone()));
            cx.input_values
                .push(src.and_then(|s| self.constant_value(s)));
            cx.input_shape_values
                .push(src.and_then(|s| self.shape_op_value(s)));
            cx.input_names
                .push(src.map_or_else(|| "?".into(), |s| format!("{}:{}", s.name, o.index)));
        }
        let shapes = (node.op.shape_fn)(&cx).map_err(|e| e.at_node(&node.name, node.op_name()))?;
        if shapes.len() != node.num_outputs() {
            return Err(Error::internal(format!(
                "shape function of {} returned {} shapes for {} outputs",
                node.op_name(),
                shapes.len(),
                node.num_outputs()
            ))
            .at_node(&node.name, node.op_name()));
        }
        self.node_mut(id).output_shapes = shapes;
        Ok(())
    }

    /// A `Const` node's value (through `Identity` chains), for shape inference.
    fn constant_value(&self, node: &Node) -> Option<Tensor> {
        match node.op_name() {
            "Const" => node.attr("value")?.as_tensor().cloned(),
            "Identity" => self.constant_value(self.get(node.inputs.first()?.node)?),
            _ => None,
        }
    }

    /// For the output of a `Shape` op, the shape it will hold.
    fn shape_op_value(&self, node: &Node) -> Option<Shape> {
        match node.op_name() {
            "Shape" => {
                let o = node.inputs.first()?;
                Some(self.get(o.node)?.output_shapes[o.index].clone())
            }
            _ => None,
        }
    }

    /// Re-runs shape inference over the whole graph in topological order.
    pub fn infer_shapes(&mut self) -> Result<()> {
        for id in self.topo_order()? {
            self.infer_node(id)?;
        }
        Ok(())
    }

    /// Replaces data input `index` of `node` (how loop back-edges are closed).
    pub fn set_input(&mut self, node: NodeId, index: usize, src: Output) -> Result<()> {
        self.check_output(src)?;
        let n = self.node(node);
        if index >= n.inputs.len() {
            return Err(Error::invalid_argument(format!(
                "'{}' has {} inputs, cannot set input {index}",
                n.name,
                n.inputs.len()
            )));
        }
        self.node_mut(node).inputs[index] = src;
        self.check_input_types(node)
    }

    /// Adds a control edge `src -> dst`.
    pub fn add_control_input(&mut self, dst: NodeId, src: NodeId) {
        let n = self.node_mut(dst);
        if !n.control_inputs.contains(&src) {
            n.control_inputs.push(src);
        }
    }

    /// Removes a node, leaving a tombstone; edges from it must be rewired first.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        let node = self.nodes.get_mut(id.index())?.take()?;
        self.names.remove(&node.name);
        Some(node)
    }

    /// Drops tombstones, renumbering nodes; returns old id -> new id.
    pub fn compact(&mut self) -> HashMap<NodeId, NodeId> {
        let mut remap = HashMap::new();
        let mut nodes = Vec::with_capacity(self.names.len());
        for (i, n) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if let Some(n) = n {
                remap.insert(NodeId::from_index(i), NodeId::from_index(nodes.len()));
                nodes.push(Some(n));
            }
        }
        for n in nodes.iter_mut().flatten() {
            for o in &mut n.inputs {
                o.node = remap[&o.node];
            }
            n.control_inputs.retain(|c| remap.contains_key(c));
            for c in &mut n.control_inputs {
                *c = remap[c];
            }
        }
        self.nodes = nodes;
        self.names = self.nodes().map(|(id, n)| (n.name.clone(), id)).collect();
        for ids in self.collections.values_mut() {
            *ids = ids.iter().filter_map(|id| remap.get(id).copied()).collect();
        }
        remap
    }

    /// For each node, the nodes that read one of its outputs or depend on it by control.
    pub fn consumers(&self) -> HashMap<NodeId, Vec<NodeId>> {
        let mut out: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for (id, n) in self.nodes() {
            for src in n
                .inputs
                .iter()
                .map(|o| o.node)
                .chain(n.control_inputs.iter().copied())
            {
                out.entry(src).or_default().push(id);
            }
        }
        out
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Graph ({} nodes)", self.len())?;
        for (_, n) in self.nodes() {
            let inputs: Vec<String> = n.inputs.iter().map(|&o| self.tensor_name(o)).collect();
            writeln!(
                f,
                "  {} = {}({}) -> {:?}",
                n.name,
                n.op_name(),
                inputs.join(", "),
                n.output_shapes
            )?;
        }
        Ok(())
    }
}

/// Splits `node:index` (index defaults to 0); `^node` is rejected here.
pub fn parse_tensor_name(tensor: &str) -> Result<(&str, usize)> {
    let bad = || Error::invalid_argument(format!("'{tensor}' is not a tensor name like 'node:0'"));
    if tensor.is_empty() || tensor.starts_with('^') {
        return Err(bad());
    }
    match tensor.rsplit_once(':') {
        Some((name, index)) if !name.is_empty() => Ok((name, index.parse().map_err(|_| bad())?)),
        Some(_) => Err(bad()),
        None => Ok((tensor, 0)),
    }
}
