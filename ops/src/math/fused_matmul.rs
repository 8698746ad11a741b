//! `_FusedMatMul`: TensorFlow's internal op for a `MatMul` followed by the ops named in
//! `fused_ops`, applied in order to the product (the first input of each is the output
//! of the one before; further inputs come from `args`). Grappler, and Rill's fusion
//! pass, create it; users never do.
//!
//! Signature (TensorFlow's `math_ops.cc`): `a: T, b: T, args: num_args * T -> product: T`,
//! attrs `transpose_a: bool = false`, `transpose_b: bool = false`, `T`, `num_args: int >=
//! 0`, `fused_ops: list(string) = []`, `epsilon: float = 0.0001` (for a fused batch norm),
//! `leakyrelu_alpha: float = 0.2`. TensorFlow allows `T` in {bfloat16, half, float}; Rill
//! also allows double (its kernel computes every float type).
//!
//! Shape: `MatMul`'s (the registered `MatMul` shape function is reused); when `fused_ops`
//! starts with `BiasAdd`, `args[0]` must be a vector that merges with the product's columns
//! (and with `["BiasAdd", "Add", ...]`, `args[1]` must have the product's shape).
//! Which `fused_ops` combinations run is the kernel's business.
//!
//! Not differentiable: fusion runs after gradients are built.

use rill_graph::{InferenceContext, OpDef, Result, Shape};

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("_FusedMatMul")
            .input("a: T")
            .input("b: T")
            .input("args: num_args * T")
            .output("product: T")
            .attr("transpose_a: bool = false")
            .attr("transpose_b: bool = false")
            .attr("T: {bfloat16, half, float, double}")
            .attr("num_args: int >= 0")
            .attr("fused_ops: list(string) = []")
            .attr("epsilon: float = 0.0001")
            .attr("leakyrelu_alpha: float = 0.2")
            .shape_fn(fused_matmul_shape),
    )?;
    r.no_gradient("_FusedMatMul")
}

/// The shape function of the registered op `op`, run on the first two inputs of `cx`.
pub(crate) fn contraction_shape(cx: &InferenceContext, op: &str) -> Result<Shape> {
    let registry = crate::registry();
    let def = registry.lookup(op)?;
    fn take<T: Clone>(v: &[T]) -> Vec<T> {
        v[..2.min(v.len())].to_vec()
    }
    let inner = InferenceContext {
        op: cx.op,
        attrs: cx.attrs,
        input_dtypes: take(&cx.input_dtypes),
        input_shapes: take(&cx.input_shapes),
        input_values: take(&cx.input_values),
        input_shape_values: take(&cx.input_shape_values),
        input_names: take(&cx.input_names),
        num_outputs: 1,
    };
    let mut shapes = (def.shape_fn)(&inner)?;
    Ok(shapes.pop().unwrap_or_else(Shape::unknown))
}

/// Checks the `args` of a contraction whose `fused_ops` start with `BiasAdd`: `args[0]`
/// (input 2) is a vector over channel dim `channel` of `out`, and with `["BiasAdd",
/// "Add", ...]` `args[1]` (input 3) has the output's shape. Returns `out` refined by both.
pub(crate) fn check_args(cx: &InferenceContext, out: Shape, channel: usize) -> Result<Shape> {
    let ops: Vec<Vec<u8>> = cx
        .attrs
        .get("fused_ops")
        .and_then(|v| v.as_string_list())
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    if ops.first().map(Vec::as_slice) != Some(b"BiasAdd".as_slice()) || cx.num_inputs() < 3 {
        return Ok(out);
    }
    let bias = cx.with_rank(2, 1)?;
    let mut out = out;
    if let Some(dims) = out.dims() {
        if let Some(&c) = dims.get(channel) {
            let merged = c.merge(bias.dim(0)).ok_or_else(|| {
                cx.error(format!(
                    "the bias '{}' (shape {}) must have as many values as the channel \
                     dimension of the {} output ({out})",
                    cx.input_names[2], cx.input_shapes[2], cx.op
                ))
            })?;
            let mut dims = dims.to_vec();
            dims[channel] = merged;
            out = Shape::from_dims(dims);
        }
    }
    if ops.get(1).map(Vec::as_slice) == Some(b"Add".as_slice()) && cx.num_inputs() >= 4 {
        let side = cx.input(3)?;
        out = out.merge(side).map_err(|_| {
            cx.error(format!(
                "the input '{}' added to the {} output must have its shape: {side} vs {out}",
                cx.input_names[3], cx.op
            ))
        })?;
    }
    Ok(out)
}

fn fused_matmul_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let out = contraction_shape(cx, "MatMul")?;
    Ok(vec![check_args(cx, out, 1)?])
}

#[cfg(test)]
mod tests {
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType};

    fn fused(ops: &[&str], ta: bool, tb: bool, num_args: i64) -> rill_graph::Attrs {
        attrs(&[
            ("T", DType::F32.into()),
            ("transpose_a", ta.into()),
            ("transpose_b", tb.into()),
            ("num_args", AttrValue::Int(num_args)),
            (
                "fused_ops",
                AttrValue::StringList(ops.iter().map(|s| s.as_bytes().to_vec()).collect()),
            ),
        ])
    }

    #[test]
    fn shapes_follow_matmul_and_the_bias() {
        let a = fused(&["BiasAdd", "Relu"], false, false, 1);
        assert_eq!(
            infer("_FusedMatMul", &a, "[2,4];[4,?];[3]").unwrap(),
            "[2,3]"
        );
        let t = fused(&["BiasAdd"], true, true, 1);
        assert_eq!(
            infer("_FusedMatMul", &t, "[4,2];[3,4];[3]").unwrap(),
            "[2,3]"
        );
        let e = infer("_FusedMatMul", &a, "[2,4];[4,3];[5]").unwrap_err();
        assert!(e.message.contains("in2:0"), "{e}");
        assert!(infer("_FusedMatMul", &a, "[2,4];[5,3];[3]").is_err());
        assert!(infer("_FusedMatMul", &a, "[2,4];[4,3];[3,1]").is_err());
        let side = fused(&["BiasAdd", "Add"], false, false, 2);
        assert_eq!(
            infer("_FusedMatMul", &side, "[?,4];[4,3];[3];[2,3]").unwrap(),
            "[2,3]"
        );
        assert!(infer("_FusedMatMul", &side, "[?,4];[4,3];[3];[2,4]").is_err());
    }
}
