//! [`FuseContraction`]: `MatMul` or `Conv2D` followed by `BiasAdd`, optionally an `Add`
//! (or `AddV2`) of a tensor of the output's shape, and optionally an activation (`Relu`,
//! `Relu6`, `Elu`, `LeakyRelu`, `Tanh`, `Sigmoid`) becomes one `_FusedMatMul` /
//! `_FusedConv2D` with TensorFlow's `fused_ops` (`["BiasAdd", "Add", "Relu"]`, ...), whose
//! kernel applies the ops to each block of output rows right after the GEMM.
//!
//! The chains are declared as [`Pattern`]s (longest first); the builder turns a match into
//! the fused node. Rules beyond the patterns' own: one float dtype throughout; the bias
//! add's `data_format` is the convolution's (NHWC for a `MatMul`); an added tensor has
//! the output's fully known shape (so the `Add` does not broadcast).
//!
//! Invariants: the fused node takes the name of the chain's last node (so fetches of it
//! still work) and computes the same values; intermediate nodes are never kept or fed (the
//! matcher's rule); one note per rewrite.

use rill_graph::{AttrValue, Attrs, DType, Graph, NodeId, NodeSpec, Pass, PassContext, Result};

use super::pattern::{replace, Arg, Consumers, Match, Matcher, Pattern};

const CONTRACTION: Pattern = Pattern {
    name: "contraction",
    ops: &["MatMul", "Conv2D"],
    args: &[Arg::Any("a"), Arg::Any("b")],
};
const BIAS_ADD: Pattern = Pattern {
    name: "bias_add",
    ops: &["BiasAdd", "BiasAddV1"],
    args: &[Arg::Node(&CONTRACTION), Arg::Any("bias")],
};
const ADD: &[&str] = &["Add", "AddV2"];
const ADD_AFTER: Pattern = Pattern {
    name: "add",
    ops: ADD,
    args: &[Arg::Node(&BIAS_ADD), Arg::Any("side")],
};
const ADD_BEFORE: Pattern = Pattern {
    name: "add",
    ops: ADD,
    args: &[Arg::Any("side"), Arg::Node(&BIAS_ADD)],
};
const ACTIVATIONS: &[&str] = &["Relu", "Relu6", "Elu", "LeakyRelu", "Tanh", "Sigmoid"];
const ACT_ADD_AFTER: Pattern = Pattern {
    name: "activation",
    ops: ACTIVATIONS,
    args: &[Arg::Node(&ADD_AFTER)],
};
const ACT_ADD_BEFORE: Pattern = Pattern {
    name: "activation",
    ops: ACTIVATIONS,
    args: &[Arg::Node(&ADD_BEFORE)],
};
const ACT: Pattern = Pattern {
    name: "activation",
    ops: ACTIVATIONS,
    args: &[Arg::Node(&BIAS_ADD)],
};

/// The declared chains, longest first (a root is tried against each in turn).
const PATTERNS: &[&Pattern] = &[
    &ACT_ADD_AFTER,
    &ACT_ADD_BEFORE,
    &ADD_AFTER,
    &ADD_BEFORE,
    &ACT,
    &BIAS_ADD,
];

/// Attrs a fused convolution copies from its `Conv2D`.
const CONV_ATTRS: &[&str] = &[
    "strides",
    "padding",
    "explicit_paddings",
    "data_format",
    "dilations",
    "use_cudnn_on_gpu",
];

/// Fuses contractions with their bias, residual add and activation.
pub struct FuseContraction;

fn format_of(graph: &Graph, id: NodeId) -> String {
    let n = graph.node(id);
    n.attr("data_format")
        .and_then(|v| v.as_str())
        .unwrap_or("NHWC")
        .to_string()
}

/// The fused node a match becomes: its op and attrs, or `None` when a rule forbids it.
fn fused_node(graph: &Graph, m: &Match) -> Option<(String, Attrs)> {
    let conv = m.node("contraction");
    let c = graph.node(conv);
    let dtype = graph.dtype(conv.output(0));
    if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return None;
    }
    if m.chain.iter().any(|&id| graph.dtype(id.output(0)) != dtype) {
        return None;
    }
    let is_conv = c.op_name() == "Conv2D";
    let conv_format = if is_conv {
        format_of(graph, conv)
    } else {
        "NHWC".into()
    };
    if format_of(graph, m.node("bias_add")) != conv_format {
        return None;
    }
    let mut ops = vec!["BiasAdd"];
    let mut args = 1;
    if let Some(&add) = m.nodes.get("add") {
        let out = graph.shape(add.output(0));
        let side = graph.shape(m.input("side"));
        if !out.is_fully_defined() || side != out {
            return None;
        }
        ops.push("Add");
        args += 1;
    }
    let mut attrs = Attrs::new();
    if let Some(&act) = m.nodes.get("activation") {
        let a = graph.node(act);
        ops.push(a.op_name());
        if let Some(alpha) = a.attr("alpha") {
            attrs.insert("leakyrelu_alpha".into(), alpha.clone());
        }
    }
    let copied: &[&str] = if is_conv {
        CONV_ATTRS
    } else {
        &["transpose_a", "transpose_b"]
    };
    for &name in copied {
        if let Some(v) = c.attr(name) {
            attrs.insert(name.into(), v.clone());
        }
    }
    attrs.insert("T".into(), dtype.into());
    attrs.insert("num_args".into(), AttrValue::Int(args));
    let ops = ops.iter().map(|s| s.as_bytes().to_vec()).collect();
    attrs.insert("fused_ops".into(), AttrValue::StringList(ops));
    let op = if is_conv {
        "_FusedConv2D"
    } else {
        "_FusedMatMul"
    };
    Some((op.to_string(), attrs))
}

impl Pass for FuseContraction {
    fn name(&self) -> &'static str {
        "fuse_contraction"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut changed = false;
        let mut consumers = Consumers::of(graph);
        for root in graph.topo_order()?.into_iter().rev() {
            let is_root = |op: &str| PATTERNS.iter().any(|p| p.ops.contains(&op));
            if !graph.get(root).is_some_and(|n| is_root(n.op_name())) {
                continue;
            }
            let found = {
                let matcher = Matcher::new(graph, cx, &consumers);
                PATTERNS.iter().find_map(|p| {
                    let m = matcher.at(p, root)?;
                    fused_node(graph, &m).map(|node| (m, node))
                })
            };
            let Some((m, (op, attrs))) = found else {
                continue;
            };
            let mut args = vec![m.input("bias")];
            args.extend(m.inputs.get("side").copied());
            let device = graph.node(root).requested_device.clone();
            let build = |g: &mut Graph, name: &str| {
                g.add_node(NodeSpec {
                    name: name.to_string(),
                    op: op.clone(),
                    input_groups: vec![vec![m.input("a")], vec![m.input("b")], args.clone()],
                    control_inputs: vec![],
                    attrs: attrs.clone(),
                    device: device.clone(),
                })
            };
            let names: Vec<String> = m
                .chain
                .iter()
                .rev()
                .map(|&id| graph.node(id).op_name().to_string())
                .collect();
            let root_name = graph.node(root).name.clone();
            if replace(graph, &m, &build)?.is_some() {
                cx.note(format!("{} -> {op} '{root_name}'", names.join(" + ")));
                changed = true;
                consumers = Consumers::of(graph);
            }
        }
        Ok(changed)
    }
}
