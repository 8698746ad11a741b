//! `Where`: the coordinates of the true (non-zero) elements, an `int64` matrix
//! `[count, rank]`.
//!
//! `Where` is not differentiable.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::NUMBER_TYPES;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Where")
            .input("input: T")
            .output("index: int64")
            .attr(&format!("T: {{{NUMBER_TYPES}, bool}} = DT_BOOL"))
            .shape_fn(where_shape),
    )?;
    r.no_gradient("Where")?;
    Ok(())
}

fn where_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let rank = Dim::from(cx.input(0)?.rank());
    Ok(vec![Shape::from_dims([Dim::Unknown, rank])])
}

impl Builder {
    /// `tf.where(x)` with one argument: the coordinates of `x`'s non-zero elements.
    pub fn where_(&self, x: Output) -> Result<Output> {
        self.op("Where").input(x).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    #[test]
    fn shapes() {
        let a = attrs(&[]);
        assert_eq!(infer("Where", &a, "[2,3]").unwrap(), "[?,2]");
        assert_eq!(infer("Where", &a, "[]").unwrap(), "[?,0]");
        assert_eq!(infer("Where", &a, "?").unwrap(), "[?,?]");
        let s = attrs(&[("T", DType::String.into())]);
        assert!(infer("Where", &s, "[2]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        let w = b.where_(x).unwrap();
        assert_eq!(
            (b.dtype(w), b.shape(w).to_string()),
            (DType::I64, "[?,2]".to_string())
        );
    }
}
