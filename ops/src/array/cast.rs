//! `Cast`: elementwise conversion between dtypes (float to int truncates toward zero).
//!
//! Gradient: float-to-float casts pass the gradient back cast to the source dtype; other
//! casts pass none.

use rill_graph::shape_fn::unchanged;
use rill_graph::{DType, OpDef, Output, Result};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Cast")
            .input("x: SrcT")
            .output("y: DstT")
            .attr("SrcT: type")
            .attr("DstT: type")
            .attr("Truncate: bool = false")
            .shape_fn(unchanged),
    )?;
    // Only float-to-float casts pass a gradient (cast back to the source dtype).
    r.gradient("Cast", |c| {
        let (src, dst) = (c.dtype(c.x(0)), c.dtype(c.y(0)));
        if !(src.is_float() && dst.is_float()) {
            return Ok(vec![None]);
        }
        Ok(c.only(c.b.cast(c.dy(0)?, src)?))
    })?;
    Ok(())
}

impl Builder {
    /// `tf.cast` to `dtype`; returns `x` itself when it already has that dtype, as
    /// TensorFlow's Python API does.
    pub fn cast(&self, x: Output, dtype: DType) -> Result<Output> {
        if self.dtype(x) == dtype {
            return Ok(x);
        }
        self.op("Cast").input(x).attr("DstT", dtype).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};

    #[test]
    fn shape_is_unchanged() {
        let a = attrs(&[("SrcT", DType::F32.into()), ("DstT", DType::I32.into())]);
        assert_eq!(infer("Cast", &a, "[2,?]").unwrap(), "[2,?]");
        assert_eq!(infer("Cast", &a, "?").unwrap(), "?");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        let y = b.cast(x, DType::I32).unwrap();
        assert_eq!(
            (b.dtype(y), b.shape(y).to_string()),
            (DType::I32, "[?,3]".to_string())
        );
        assert_eq!(b.cast(x, DType::F32).unwrap(), x);
        let node = b.graph().node(y.node).clone();
        assert_eq!(node.attr("SrcT"), Some(&DType::F32.into()));
        assert_eq!(node.attr("Truncate"), Some(&false.into()));
    }
}
