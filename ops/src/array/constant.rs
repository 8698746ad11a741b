//! `Const`: a tensor value baked into the graph; its shape is the value's shape.
//!
//! `Const` is not differentiable.

use rill_graph::{DType, Element, InferenceContext, OpDef, Output, Result, Shape, Tensor};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Const")
            .output("output: dtype")
            .attr("value: tensor")
            .attr("dtype: type")
            .shape_fn(const_shape),
    )?;
    r.no_gradient("Const")?;
    Ok(())
}

fn const_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let value = cx
        .attr("value")?
        .as_tensor()
        .ok_or_else(|| cx.error("attr 'value' of Const must be a tensor".into()))?;
    let dtype = cx.attr_type("dtype")?;
    if value.dtype() != dtype {
        return Err(cx.error(format!(
            "Const's value has dtype {} but its attr 'dtype' is {dtype}",
            value.dtype()
        )));
    }
    Ok(vec![value.shape()])
}

impl Builder {
    /// A `Const` node holding `value`.
    pub fn constant(&self, value: Tensor) -> Result<Output> {
        self.op("Const")
            .attr("dtype", value.dtype())
            .attr("value", value)
            .build_output()
    }

    /// A `Const` node named `name` (within the current name scope).
    pub fn constant_named(&self, name: &str, value: Tensor) -> Result<Output> {
        self.op("Const")
            .name(name)
            .attr("dtype", value.dtype())
            .attr("value", value)
            .build_output()
    }

    /// A scalar constant of any element type.
    pub fn scalar_const<T: Element>(&self, value: T) -> Result<Output> {
        self.constant(Tensor::scalar(value))
    }

    /// A rank-1 constant of any element type.
    pub fn vector_const<T: Element>(&self, values: Vec<T>) -> Result<Output> {
        self.constant(Tensor::vector(values))
    }

    /// A `float` scalar constant.
    pub fn scalar_f32(&self, value: f32) -> Result<Output> {
        self.constant(Tensor::scalar(value))
    }

    /// An `int32` scalar constant.
    pub fn scalar_i32(&self, value: i32) -> Result<Output> {
        self.constant(Tensor::scalar(value))
    }

    /// An `int64` scalar constant.
    pub fn scalar_i64(&self, value: i64) -> Result<Output> {
        self.constant(Tensor::scalar(value))
    }

    /// A constant of `dtype` and fully known `dims` filled with zeros (false, "").
    pub fn zeros_const(&self, dtype: DType, dims: &[usize]) -> Result<Output> {
        self.constant(Tensor::zeros(dtype, dims)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};

    #[test]
    fn shape_is_the_value_shape() {
        let t = Tensor::new(&[2, 3], vec![0f32; 6]).unwrap();
        let a = attrs(&[("value", t.into()), ("dtype", DType::F32.into())]);
        assert_eq!(infer("Const", &a, "").unwrap(), "[2,3]");
        let a = attrs(&[
            ("value", Tensor::scalar(1i32).into()),
            ("dtype", DType::I32.into()),
        ]);
        assert_eq!(infer("Const", &a, "").unwrap(), "[]");
    }

    #[test]
    fn dtype_must_match_value() {
        let a = attrs(&[
            ("value", Tensor::scalar(1i32).into()),
            ("dtype", DType::F32.into()),
        ]);
        let e = infer("Const", &a, "").unwrap_err();
        assert!(e.message.contains("int32"), "{e}");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let c = b
            .constant_named("c", Tensor::vector(vec![1f32, 2.0]))
            .unwrap();
        assert_eq!(b.graph().tensor_name(c), "c:0");
        assert_eq!(b.shape(c).to_string(), "[2]");
        let s = b.scalar_i64(7).unwrap();
        assert_eq!(b.dtype(s), DType::I64);
        let z = b.zeros_const(DType::F64, &[2, 0]).unwrap();
        assert_eq!(b.shape(z).to_string(), "[2,0]");
        let v = b.vector_const(vec![true, false]).unwrap();
        assert_eq!(b.dtype(v), DType::Bool);
        assert_eq!(b.dtype(b.scalar_const(1u8).unwrap()), DType::U8);
        assert_eq!(b.dtype(b.scalar_f32(1.0).unwrap()), DType::F32);
        assert_eq!(b.dtype(b.scalar_i32(1).unwrap()), DType::I32);
    }
}
