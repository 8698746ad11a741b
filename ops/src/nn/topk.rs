//! `TopKV2` (the `k` largest entries along the last dimension, `k` a scalar input) and
//! `InTopKV2` (whether each target is among the top `k` predictions); with builder methods.
//!
//! Shapes: TopKV2 replaces the last dim with `k` (an error when a known last dim is
//! smaller than a constant `k`); InTopKV2 gives `[batch]` and is not differentiable.
//!
//! TopKV2's gradient (TF's `_TopKGrad`) scatters the gradient of `values` to the
//! positions `indices` names in each flattened last-dim row of the input (zeros
//! elsewhere); `k` and the gradient of `indices` take no part.

use rill_graph::{DType, Dim, InferenceContext, OpDef, Output, Result, Shape};

use crate::array::StridedSliceMasks;
use crate::gradient::GradContext;
use crate::math::common::{
    concat_shapes, merge_input_dims, scalar_input_dim, subshape, type_attr, type_attr_default,
    NUMBER,
};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("TopKV2")
            .input("input: T")
            .input("k: Tk")
            .output("values: T")
            .output("indices: index_type")
            .attr("sorted: bool = true")
            .attr(&type_attr("T", NUMBER))
            .attr(&type_attr_default("Tk", "int16, int32, int64", "DT_INT32"))
            .attr(&type_attr_default(
                "index_type",
                "int16, int32, int64",
                "DT_INT32",
            ))
            .shape_fn(top_k_shape),
    )?;
    r.register(
        OpDef::build("InTopKV2")
            .input("predictions: float")
            .input("targets: T")
            .input("k: T")
            .output("precision: bool")
            .attr(&type_attr_default("T", "int32, int64", "DT_INT32"))
            .shape_fn(in_top_k_shape),
    )?;
    r.no_gradient("InTopKV2")?;
    r.gradient("TopKV2", top_k_grad)
}

/// `dx`: zeros of the input's shape with `dy(values)` scattered to the flat positions
/// `row * last_dim + indices`.
fn top_k_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, indices, g) = (c.x(0), c.y(1), c.dy(0)?);
    let index_type = b.dtype(indices);
    let shrink = StridedSliceMasks {
        shrink_axis: 1,
        ..StridedSliceMasks::default()
    };
    // Element `i` of an int vector as an int64 scalar.
    let element = |v: Output, i: i64| {
        b.strided_slice_const(b.cast(v, DType::I64)?, &[i], &[i + 1], &[1], shrink)
    };
    let in_shape = b.shape_of(x)?;
    let (in_last, ind_last) = (element(in_shape, -1)?, element(b.shape_of(indices)?, -1)?);
    // Indices as [rows, k], each row offset by row * in_last.
    let dims_2d = b.stack(&[b.scalar_const(-1i64)?, ind_last], 0)?;
    let ind_2d = b.reshape(indices, dims_2d)?;
    let rows = element(b.shape_of(ind_2d)?, 0)?;
    let offsets = b.range(b.scalar_const(0i64)?, b.mul(rows, in_last)?, in_last)?;
    let offsets = b.cast(b.expand_dims(offsets, -1)?, index_type)?;
    let flat = b.reshape_to(b.add(ind_2d, offsets)?, &[-1])?;
    let total = b.cast(b.prod(in_shape, &[0], true)?, index_type)?;
    let scattered = b.scatter_nd(b.expand_dims(flat, -1)?, b.reshape_to(g, &[-1])?, total)?;
    Ok(vec![Some(b.reshape(scattered, in_shape)?), None])
}

fn top_k_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.with_rank_at_least(0, 1)?;
    let k = scalar_input_dim(cx, 1)?;
    let last = input.dim(-1);
    if let (Some(n), Some(k)) = (last.known(), k.known()) {
        if n < k {
            return Err(cx.error(format!(
                "input '{}' of shape {input} must have last dimension >= k = {k} (from '{}')",
                cx.input_names[0], cx.input_names[1]
            )));
        }
    }
    let out = concat_shapes(&subshape(&input, 0, Some(-1)), &Shape::from_dims([k]));
    Ok(vec![out.clone(), out])
}

fn in_top_k_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let predictions = cx.with_rank(0, 2)?;
    let targets = cx.with_rank(1, 1)?;
    cx.with_rank(2, 0)?;
    let what = "the batch sizes of predictions and targets";
    let batch: Dim = merge_input_dims(cx, 0, predictions.dim(0), 1, targets.dim(0), what)?;
    Ok(vec![Shape::from_dims([batch])])
}

impl Builder {
    /// `TopKV2`: `(values, indices)` of the `k` largest entries along the last dim.
    pub fn top_k(&self, input: Output, k: i64, sorted: bool) -> Result<(Output, Output)> {
        let k = self.int32_scalar_const(k)?;
        let id = self
            .op("TopKV2")
            .input(input)
            .input(k)
            .attr("sorted", sorted)
            .build()?;
        Ok((id.output(0), id.output(1)))
    }

    /// `InTopKV2`: whether each of `targets` is among the top `k` of its row of
    /// `predictions`; `targets` and `k` share an int32/int64 dtype.
    pub fn in_top_k(&self, predictions: Output, targets: Output, k: Output) -> Result<Output> {
        self.op("InTopKV2")
            .input(predictions)
            .input(targets)
            .input(k)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    #[test]
    fn top_k() {
        let a = attrs(&[("T", DType::F32.into())]);
        let k = |v: i32| vec![None, Some(Tensor::scalar(v))];
        assert_eq!(
            infer_with_values("TopKV2", &a, "[4,10];[]", &k(3)).unwrap(),
            "[4,3];[4,3]"
        );
        assert_eq!(
            infer_with_values("TopKV2", &a, "[?];[]", &k(3)).unwrap(),
            "[3];[3]"
        );
        assert_eq!(infer("TopKV2", &a, "[4,10];[]").unwrap(), "[4,?];[4,?]");
        assert_eq!(infer("TopKV2", &a, "?;[]").unwrap(), "?;?");
        let e = infer_with_values("TopKV2", &a, "[4,2];[]", &k(3)).unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[4,2]"),
            "{e}"
        );
        assert!(infer_with_values("TopKV2", &a, "[4,2];[]", &k(-1)).is_err());
        assert!(infer("TopKV2", &a, "[];[]").is_err());
        assert!(infer("TopKV2", &a, "[3];[1]").is_err());
    }

    #[test]
    fn in_top_k() {
        let a = attrs(&[]);
        assert_eq!(infer("InTopKV2", &a, "[?,10];[32];[]").unwrap(), "[32]");
        let e = infer("InTopKV2", &a, "[16,10];[32];[]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("in1:0"),
            "{e}"
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 10]).unwrap();
        let (values, indices) = b.top_k(x, 3, true).unwrap();
        assert_eq!(b.shape(values).to_string(), "[?,3]");
        assert_eq!(b.dtype(indices), DType::I32);
        assert!(b.top_k(x, 11, true).is_err());
        let t = b.placeholder("t", DType::I32, [-1i64]).unwrap();
        let k = b.placeholder("k", DType::I32, Shape::scalar()).unwrap();
        let hit = b.in_top_k(x, t, k).unwrap();
        assert_eq!(
            (b.shape(hit).to_string(), b.dtype(hit)),
            ("[?]".to_string(), DType::Bool)
        );
    }
}
