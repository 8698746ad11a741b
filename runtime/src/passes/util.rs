//! Questions the simplification passes ask about nodes and values: refs, TF1 variables,
//! control flow, stateful sources, fed outputs, `Const` values and byte sizes, and integer
//! tensors for shapes and permutations.
//!
//! Invariant: every answer is conservative — when the graph cannot tell (attrs that do
//! not resolve, a missing node), the answer is the one that stops a rewrite.

use rill_graph::{DType, Graph, Node, Output, PassContext, Shape, Tensor};

/// Ops of TF1 control flow: passes leave them, and the Identities next to them, alone.
pub(crate) use crate::control_flow::is_control_flow_op as is_control_flow;

/// Ops whose value is not a function of their inputs even when their definition forgets
/// to say so (random ops are stateful in Rill's definitions; this is a second guard).
pub(crate) fn is_random(op: &str) -> bool {
    matches!(
        op,
        "RandomUniform"
            | "RandomUniformInt"
            | "RandomStandardNormal"
            | "TruncatedNormal"
            | "RandomShuffle"
            | "RandomGamma"
            | "RandomPoisson"
            | "RandomPoissonV2"
            | "Multinomial"
    )
}

/// Ops that stand for values supplied or held outside the graph.
pub(crate) fn is_source_of_state(op: &str) -> bool {
    matches!(
        op,
        "Placeholder" | "PlaceholderWithDefault" | "VariableV2" | "Variable" | "VarHandleOp"
    ) || op.starts_with('_')
}

/// Whether an arg list (inputs or outputs of `node`) has a `Ref` tensor at flat `index`;
/// true when the attrs cannot be read (the safe answer).
fn arg_is_ref(node: &Node, args: &[rill_graph::ArgDef], index: usize) -> bool {
    let Ok(lengths) = node.op.arg_lengths(args, &node.attrs) else {
        return true;
    };
    let mut at = 0;
    for (arg, len) in args.iter().zip(lengths) {
        if index < at + len {
            return arg.is_ref;
        }
        at += len;
    }
    false
}

/// Whether `node` takes or produces any `Ref` tensor.
pub(crate) fn has_ref(node: &Node) -> bool {
    node.op
        .inputs
        .iter()
        .chain(&node.op.outputs)
        .any(|a| a.is_ref)
}

/// Whether reading `o` reads a TF1 variable: `o` is a `Ref` or comes from `VariableV2`.
/// Such a value is taken when its consumer runs, so the consumer must not change.
pub(crate) fn reads_variable(graph: &Graph, o: Output) -> bool {
    let Some(src) = graph.get(o.node) else {
        return true;
    };
    matches!(src.op_name(), "VariableV2" | "Variable") || arg_is_ref(src, &src.op.outputs, o.index)
}

/// Whether any output of the node named `name` is fed.
pub(crate) fn any_output_fed(cx: &PassContext, name: &str) -> bool {
    cx.fed.iter().any(|(n, _)| n == name)
}

/// The value of `o` when it is the output of a `Const` node that is not fed.
pub(crate) fn const_value(graph: &Graph, cx: &PassContext, o: Output) -> Option<Tensor> {
    let node = graph.get(o.node)?;
    if node.op_name() != "Const" || cx.is_fed(graph, o) {
        return None;
    }
    node.attr("value")?.as_tensor().cloned()
}

/// Bytes a tensor takes in a `Const` (string bytes counted; `None` for resources).
pub(crate) fn tensor_bytes(t: &Tensor) -> Option<usize> {
    match t.buffer() {
        rill_graph::Buffer::String(v) => Some(v.iter().map(Vec::len).sum()),
        rill_graph::Buffer::Resource(_) => None,
        _ => t.plain_bytes(),
    }
}

/// The bytes a value of `dtype` and graph shape `shape` takes, when both are known.
pub(crate) fn shape_bytes(dtype: DType, shape: &Shape) -> Option<u64> {
    shape.num_elements()?.checked_mul(dtype.size()? as u64)
}

/// An integer vector of `dtype` (`int32` or `int64`), or `None` when a value does not fit.
pub(crate) fn int_vector(dtype: DType, values: &[i64]) -> Option<Tensor> {
    match dtype {
        DType::I64 => Some(Tensor::vector(values.to_vec())),
        DType::I32 => values
            .iter()
            .map(|&v| i32::try_from(v).ok())
            .collect::<Option<Vec<i32>>>()
            .map(Tensor::vector),
        _ => None,
    }
}

/// An integer scalar of `dtype` (`int32` or `int64`), or `None` when it does not fit.
pub(crate) fn int_scalar(dtype: DType, value: i64) -> Option<Tensor> {
    int_vector(dtype, &[value]).and_then(|t| t.reshape(&[]).ok())
}
