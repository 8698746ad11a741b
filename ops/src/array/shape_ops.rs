//! Ops that describe a tensor's shape: `Shape`, `ShapeN`, `Size`, `Rank`.
//!
//! None of them is differentiable.

use rill_graph::shape_fn::scalars;
use rill_graph::{DType, Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::vector;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Shape")
            .input("input: T")
            .output("output: out_type")
            .attr("T: type")
            .attr("out_type: {int32, int64} = DT_INT32")
            .shape_fn(shape_shape),
    )?;
    r.register(
        OpDef::build("ShapeN")
            .input("input: N * T")
            .output("output: N * out_type")
            .attr("N: int >= 1")
            .attr("T: type")
            .attr("out_type: {int32, int64} = DT_INT32")
            .shape_fn(shape_n_shape),
    )?;
    r.register(
        OpDef::build("Size")
            .input("input: T")
            .output("output: out_type")
            .attr("T: type")
            .attr("out_type: {int32, int64} = DT_INT32")
            .shape_fn(scalars),
    )?;
    r.register(
        OpDef::build("Rank")
            .input("input: T")
            .output("output: int32")
            .attr("T: type")
            .shape_fn(scalars),
    )?;
    for op in ["Shape", "ShapeN", "Size", "Rank"] {
        r.no_gradient(op)?;
    }
    Ok(())
}

/// A vector as long as the input's rank.
fn rank_vector(s: &Shape) -> Shape {
    vector(Dim::from(s.rank()))
}

fn shape_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![rank_vector(cx.input(0)?)])
}

fn shape_n_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(cx.input_shapes.iter().map(rank_vector).collect())
}

impl Builder {
    /// `tf.shape`: the shape of `x` as an `int32` vector.
    pub fn shape_of(&self, x: Output) -> Result<Output> {
        self.op("Shape").input(x).build_output()
    }

    /// `tf.shape` with `out_type` `int32` or `int64`.
    pub fn shape_of_as(&self, x: Output, out_type: DType) -> Result<Output> {
        self.op("Shape")
            .input(x)
            .attr("out_type", out_type)
            .build_output()
    }

    /// `tf.shape_n`: the shapes of several tensors of one dtype.
    pub fn shape_n(&self, xs: &[Output]) -> Result<Vec<Output>> {
        self.op("ShapeN").input_list(xs).build_outputs()
    }

    /// `tf.size`: the element count of `x` as an `int32` scalar.
    pub fn size(&self, x: Output) -> Result<Output> {
        self.op("Size").input(x).build_output()
    }

    /// `tf.rank`: the rank of `x` as an `int32` scalar.
    pub fn rank(&self, x: Output) -> Result<Output> {
        self.op("Rank").input(x).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};

    #[test]
    fn shapes() {
        let t = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Shape", &t, "[2,?,3]").unwrap(), "[3]");
        assert_eq!(infer("Shape", &t, "[]").unwrap(), "[0]");
        assert_eq!(infer("Shape", &t, "?").unwrap(), "[?]");
        assert_eq!(infer("Size", &t, "[2,?]").unwrap(), "[]");
        assert_eq!(infer("Rank", &t, "?").unwrap(), "[]");
        let n = attrs(&[("T", DType::F32.into()), ("N", 2i64.into())]);
        assert_eq!(infer("ShapeN", &n, "[2,3];?").unwrap(), "[2];[?]");
    }

    #[test]
    fn out_type_is_int32_or_int64() {
        let a = attrs(&[("T", DType::F32.into()), ("out_type", DType::F32.into())]);
        assert!(infer("Shape", &a, "[2]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 4]).unwrap();
        let s = b.shape_of(x).unwrap();
        assert_eq!(
            (b.dtype(s), b.shape(s).to_string()),
            (DType::I32, "[2]".to_string())
        );
        let s64 = b.shape_of_as(x, DType::I64).unwrap();
        assert_eq!(b.dtype(s64), DType::I64);
        assert_eq!(b.shape(b.size(x).unwrap()).to_string(), "[]");
        assert_eq!(b.shape(b.rank(x).unwrap()).to_string(), "[]");
        let ns = b.shape_n(&[x, x]).unwrap();
        assert_eq!(b.shape(ns[1]).to_string(), "[2]");
    }
}
