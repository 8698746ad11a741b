//! Tensors of one repeated value: `Fill` (a given shape), `ZerosLike` and `OnesLike`
//! (another tensor's shape).
//!
//! `Fill`'s value gets the sum of the gradient; `ZerosLike`/`OnesLike` are not differentiable.

use rill_graph::shape_fn::unchanged;
use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{check_scalar, name, vector_len};
use crate::gradient::sum_all;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Fill")
            .input("dims: index_type")
            .input("value: T")
            .output("output: T")
            .attr("T: type")
            .attr("index_type: {int32, int64} = DT_INT32")
            .shape_fn(fill_shape),
    )?;
    r.register(
        OpDef::build("ZerosLike")
            .input("x: T")
            .output("y: T")
            .attr("T: type")
            .shape_fn(unchanged),
    )?;
    r.register(
        OpDef::build("OnesLike")
            .input("x: T")
            .output("y: T")
            .attr("T: {bfloat16, half, float, double, int8, uint8, int16, uint16, int32, uint32, int64, uint64, bool}")
            .shape_fn(unchanged),
    )?;
    // Every element of the output is `value`: its gradient is the sum of all of `dy`.
    r.gradient("Fill", |c| Ok(vec![None, Some(sum_all(c.b, c.dy(0)?)?)]))?;
    r.no_gradient("ZerosLike")?;
    r.no_gradient("OnesLike")?;
    Ok(())
}

fn fill_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    vector_len(cx, 0)?;
    check_scalar(cx, 1)?;
    if let Some(dims) = cx.input_ints(0)? {
        if let Some(bad) = dims.iter().find(|&&d| d < 0) {
            return Err(cx.error(format!(
                "Fill dims given by '{}' must be non-negative, got {bad} in {dims:?}",
                name(cx, 0)
            )));
        }
    }
    Ok(vec![cx.input_as_shape(0)?])
}

impl Builder {
    /// `tf.fill`: a tensor of the shape held by the int vector `dims`, every element `value`
    /// (a scalar).
    pub fn fill(&self, dims: Output, value: Output) -> Result<Output> {
        self.op("Fill").input(dims).input(value).build_output()
    }

    /// `tf.zeros_like`.
    pub fn zeros_like(&self, x: Output) -> Result<Output> {
        self.op("ZerosLike").input(x).build_output()
    }

    /// `tf.ones_like`.
    pub fn ones_like(&self, x: Output) -> Result<Output> {
        self.op("OnesLike").input(x).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    #[test]
    fn fill() {
        let a = attrs(&[("T", DType::F32.into())]);
        let fill = |dims: Vec<i32>| {
            let n = dims.len();
            infer_with_values(
                "Fill",
                &a,
                &format!("[{n}];[]"),
                &[Some(Tensor::vector(dims))],
            )
        };
        assert_eq!(fill(vec![2, 3]).unwrap(), "[2,3]");
        assert_eq!(fill(vec![]).unwrap(), "[]");
        let e = fill(vec![2, -1]).unwrap_err();
        assert!(e.message.contains("in0:0"), "{e}");
        assert_eq!(infer("Fill", &a, "[3];[]").unwrap(), "[?,?,?]");
        assert_eq!(infer("Fill", &a, "?;[]").unwrap(), "?");
        assert!(infer("Fill", &a, "[3];[1]").is_err());
        assert!(infer("Fill", &a, "[];[]").is_err());
    }

    #[test]
    fn like() {
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("ZerosLike", &a, "[2,?]").unwrap(), "[2,?]");
        assert_eq!(infer("OnesLike", &a, "?").unwrap(), "?");
        let s = attrs(&[("T", DType::String.into())]);
        assert!(infer("ZerosLike", &s, "[2]").is_ok());
        assert!(infer("OnesLike", &s, "[2]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        // Dims from a Shape op keep what is known.
        let f = b
            .fill(b.shape_of(x).unwrap(), b.scalar_f32(1.0).unwrap())
            .unwrap();
        assert_eq!(b.shape(f).to_string(), "[?,3]");
        let f = b
            .fill(b.index_const(&[2, 2]).unwrap(), b.scalar_f32(0.5).unwrap())
            .unwrap();
        assert_eq!(b.shape(f).to_string(), "[2,2]");
        assert_eq!(b.shape(b.zeros_like(x).unwrap()).to_string(), "[?,3]");
        assert_eq!(b.shape(b.ones_like(x).unwrap()).to_string(), "[?,3]");
    }
}
