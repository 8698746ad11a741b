//! `OneHot`: indices expanded to one-hot vectors along a new axis of size `depth`.
//!
//! `OneHot` is not differentiable.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{check_scalar, name, scalar_input};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("OneHot")
            .input("indices: TI")
            .input("depth: int32")
            .input("on_value: T")
            .input("off_value: T")
            .output("output: T")
            .attr("axis: int = -1")
            .attr("T: type")
            .attr("TI: {uint8, int8, int32, int64} = DT_INT64")
            .shape_fn(one_hot_shape),
    )?;
    r.no_gradient("OneHot")?;
    Ok(())
}

fn one_hot_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    for i in 1..4 {
        check_scalar(cx, i)?;
    }
    let axis = cx.attr_int("axis")?;
    if axis < -1 {
        return Err(cx.error(format!("OneHot's axis must be >= -1, got {axis}")));
    }
    let depth = match scalar_input(cx, 1)? {
        Some(d) if d < 0 => {
            return Err(cx.error(format!(
                "depth given by '{}' must be non-negative, got {d}",
                name(cx, 1)
            )))
        }
        Some(d) => Dim::Known(d as usize),
        None => Dim::Unknown,
    };
    let indices = cx.input(0)?;
    let Some(dims) = indices.dims() else {
        return Ok(vec![Shape::unknown()]);
    };
    let at = if axis == -1 {
        dims.len()
    } else {
        axis as usize
    };
    if at > dims.len() {
        return Err(cx.error(format!(
            "OneHot's axis {axis} is out of range for indices '{}' with shape {indices}",
            name(cx, 0)
        )));
    }
    let mut out = dims.to_vec();
    out.insert(at, depth);
    Ok(vec![Shape::from(out)])
}

impl Builder {
    /// `tf.one_hot`: `on` where `indices` point along a new dim of size `depth` at `axis`
    /// (-1: last), `off` elsewhere; `on` and `off` are scalars of the output dtype.
    pub fn one_hot(
        &self,
        indices: Output,
        depth: i32,
        on: Output,
        off: Output,
        axis: i64,
    ) -> Result<Output> {
        let d = self.scalar_i32(depth)?;
        self.op("OneHot")
            .input(indices)
            .input(d)
            .input(on)
            .input(off)
            .attr("axis", axis)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn one_hot(indices: &str, depth: i32, axis: i64) -> Result<String> {
        let a = attrs(&[
            ("T", DType::F32.into()),
            ("TI", DType::I32.into()),
            ("axis", axis.into()),
        ]);
        infer_with_values(
            "OneHot",
            &a,
            &format!("{indices};[];[];[]"),
            &[None, Some(Tensor::scalar(depth))],
        )
    }

    #[test]
    fn shapes() {
        assert_eq!(one_hot("[4]", 3, -1).unwrap(), "[4,3]");
        assert_eq!(one_hot("[4,2]", 3, 0).unwrap(), "[3,4,2]");
        assert_eq!(one_hot("[4,2]", 3, 1).unwrap(), "[4,3,2]");
        assert_eq!(one_hot("[]", 5, -1).unwrap(), "[5]");
        assert_eq!(one_hot("?", 5, -1).unwrap(), "?");
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("OneHot", &a, "[4];[];[];[]").unwrap(), "[4,?]");
    }

    #[test]
    fn errors() {
        assert!(one_hot("[4]", -1, -1).is_err());
        assert!(one_hot("[4]", 3, -2).is_err());
        assert!(one_hot("[4]", 3, 2).is_err());
        let a = attrs(&[("T", DType::F32.into())]);
        assert!(infer("OneHot", &a, "[4];[2];[];[]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let labels = b.placeholder("labels", DType::I64, [-1i64]).unwrap();
        let on = b.scalar_f32(1.0).unwrap();
        let off = b.scalar_f32(0.0).unwrap();
        let y = b.one_hot(labels, 10, on, off, -1).unwrap();
        assert_eq!(b.shape(y).to_string(), "[?,10]");
        assert_eq!(b.dtype(y), DType::F32);
    }
}
