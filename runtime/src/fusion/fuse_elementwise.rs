//! [`FuseElementwise`]: maximal trees of elementwise float ops (the declared [`FUSABLE`]
//! table) become one `_FusedElementwise` node, whose kernel makes one pass over memory.
//!
//! A group grows from a root (visited in reverse topological order) by absorbing the
//! producers of its members that are fusable, of the root's dtype (f16, bf16, f32, f64)
//! and device, neither kept nor fed, and read only by members (no control dependents).
//! A group of at least two ops becomes a program (encoding in `rill-ops`'
//! `math/fused_elementwise.rs`): its external inputs, deduplicated, are the registers
//! `0..N`, then one instruction per member in topological order, the root's last.
//!
//! Invariants: fusing a group never creates a cycle (only the root is read from outside
//! it); the fused node takes the root's name and, as the ops broadcast, the broadcast
//! shape of the inputs, which is the root's; one note per group.

use std::collections::{BTreeSet, HashMap};

use rill_graph::Result;
use rill_graph::{AttrValue, Attrs, DType, Graph, NodeId, NodeSpec, Output, Pass, PassContext};

use super::pattern::{replace, Consumers, Match};

/// One fusable op: its name, its number of inputs, and the float attr (if any) that the
/// program carries as an immediate.
pub struct Fusable {
    pub op: &'static str,
    pub inputs: usize,
    pub attr: Option<&'static str>,
}

const fn unary(op: &'static str) -> Fusable {
    Fusable {
        op,
        inputs: 1,
        attr: None,
    }
}

const fn binary(op: &'static str) -> Fusable {
    Fusable {
        op,
        inputs: 2,
        attr: None,
    }
}

/// The ops `FuseElementwise` fuses (each is in the fused kernel's table).
pub const FUSABLE: &[Fusable] = &[
    binary("Add"),
    binary("AddV2"),
    binary("Sub"),
    binary("Mul"),
    binary("RealDiv"),
    binary("Div"),
    binary("DivNoNan"),
    binary("MulNoNan"),
    binary("FloorDiv"),
    binary("FloorMod"),
    binary("Maximum"),
    binary("Minimum"),
    binary("SquaredDifference"),
    binary("Pow"),
    binary("Atan2"),
    binary("Xlogy"),
    binary("Xdivy"),
    unary("Neg"),
    unary("Abs"),
    unary("Square"),
    unary("Sqrt"),
    unary("Rsqrt"),
    unary("Exp"),
    unary("Expm1"),
    unary("Log"),
    unary("Log1p"),
    unary("Tanh"),
    unary("Sigmoid"),
    unary("Relu"),
    unary("Relu6"),
    unary("Elu"),
    unary("Selu"),
    unary("Softplus"),
    unary("Softsign"),
    unary("Reciprocal"),
    unary("Sign"),
    unary("Floor"),
    unary("Ceil"),
    unary("Round"),
    unary("Sin"),
    unary("Cos"),
    unary("Erf"),
    Fusable {
        op: "LeakyRelu",
        inputs: 1,
        attr: Some("alpha"),
    },
];

/// Fuses trees of elementwise ops.
pub struct FuseElementwise;

fn fusable(op: &str) -> Option<&'static Fusable> {
    FUSABLE.iter().find(|f| f.op == op)
}

/// The float dtype of `id` when it is a fusable elementwise node (all inputs of it too).
fn candidate(graph: &Graph, cx: &PassContext, id: NodeId) -> Option<DType> {
    let n = graph.node(id);
    let f = fusable(n.op_name())?;
    let dtype = *n.output_types.first()?;
    let ok = matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
        && n.inputs.len() == f.inputs
        && n.num_outputs() == 1
        && n.input_types.iter().all(|&t| t == dtype)
        && !cx.is_fed(graph, id.output(0));
    ok.then_some(dtype)
}

/// The group rooted at `root`: its members (root first, then in the order they joined).
fn group(
    graph: &Graph,
    cx: &PassContext,
    consumers: &Consumers,
    taken: &BTreeSet<NodeId>,
    root: NodeId,
) -> Option<Vec<NodeId>> {
    let dtype = candidate(graph, cx, root)?;
    let r = graph.node(root);
    let mut members = vec![root];
    let mut set: BTreeSet<NodeId> = [root].into();
    loop {
        let mut grew = false;
        for i in 0..members.len() {
            for o in graph.node(members[i]).inputs.clone() {
                let p = o.node;
                let n = graph.node(p);
                let joins = !set.contains(&p)
                    && !taken.contains(&p)
                    && candidate(graph, cx, p) == Some(dtype)
                    && !cx.keeps(&n.name)
                    && n.requested_device == r.requested_device
                    && n.assigned_device == r.assigned_device
                    && !consumers.has_control_dependents(p)
                    && consumers.readers(p).all(|c| set.contains(&c));
                if joins {
                    set.insert(p);
                    members.push(p);
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    (members.len() >= 2).then_some(members)
}

/// The program of a group: its external inputs and instructions (`order` is the members
/// in topological order).
fn program(graph: &Graph, order: &[NodeId]) -> (Vec<Output>, Vec<String>) {
    let inside: BTreeSet<NodeId> = order.iter().copied().collect();
    let mut externals: Vec<Output> = vec![];
    for &id in order {
        for &o in &graph.node(id).inputs {
            if !inside.contains(&o.node) && !externals.contains(&o) {
                externals.push(o);
            }
        }
    }
    let mut regs: HashMap<Output, usize> =
        externals.iter().enumerate().map(|(i, &o)| (o, i)).collect();
    let mut ops = vec![];
    for &id in order {
        let n = graph.node(id);
        let mut text = n.op_name().to_string();
        for o in &n.inputs {
            text += &format!(" {}", regs[o]);
        }
        if let Some(attr) = fusable(n.op_name()).and_then(|f| f.attr) {
            let v = n.attr(attr).and_then(|v| v.as_float()).unwrap_or(0.2);
            text += &format!(" {v:?}");
        }
        regs.insert(id.output(0), externals.len() + ops.len());
        ops.push(text);
    }
    (externals, ops)
}

impl Pass for FuseElementwise {
    fn name(&self) -> &'static str {
        "fuse_elementwise"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut changed = false;
        let order = graph.topo_order()?;
        let position: HashMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let mut consumers = Consumers::of(graph);
        let mut taken = BTreeSet::new();
        for &root in order.iter().rev() {
            if graph.get(root).is_none() || taken.contains(&root) {
                continue;
            }
            let Some(members) = group(graph, cx, &consumers, &taken, root) else {
                continue;
            };
            let mut sorted = members.clone();
            sorted.sort_by_key(|id| position[id]);
            let (externals, ops) = program(graph, &sorted);
            let r = graph.node(root);
            let dtype = r.output_types[0];
            let device = r.requested_device.clone();
            let root_name = r.name.clone();
            let attrs: Attrs = [
                ("T".to_string(), AttrValue::Type(dtype)),
                ("N".to_string(), AttrValue::Int(externals.len() as i64)),
                (
                    "ops".to_string(),
                    AttrValue::StringList(ops.iter().map(|s| s.as_bytes().to_vec()).collect()),
                ),
            ]
            .into();
            let build = |g: &mut Graph, name: &str| {
                g.add_node(NodeSpec {
                    name: name.to_string(),
                    op: "_FusedElementwise".into(),
                    input_groups: vec![externals.clone()],
                    attrs: attrs.clone(),
                    device: device.clone(),
                    ..Default::default()
                })
            };
            let m = Match {
                root,
                nodes: Default::default(),
                inputs: Default::default(),
                consts: Default::default(),
                chain: members.clone(),
            };
            taken.extend(members.iter().copied());
            if replace(graph, &m, &build)?.is_some() {
                cx.note(format!(
                    "{} ops -> _FusedElementwise '{root_name}': {}",
                    members.len(),
                    ops.join("; ")
                ));
                changed = true;
                consumers = Consumers::of(graph);
            }
        }
        Ok(changed)
    }
}
