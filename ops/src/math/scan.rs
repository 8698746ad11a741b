//! Cumulative scans along an axis: `Cumsum` and `Cumprod` (`exclusive`, `reverse`), with
//! builder methods and gradients. The output has the input's shape; the axis must be a
//! scalar.

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{type_attr, type_attr_default, INDEX, NUMBER};
use crate::gradient::GradContext;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for name in ["Cumsum", "Cumprod"] {
        r.register(
            OpDef::build(name)
                .input("x: T")
                .input("axis: Tidx")
                .output("out: T")
                .attr("exclusive: bool = false")
                .attr("reverse: bool = false")
                .attr(&type_attr("T", NUMBER))
                .attr(&type_attr_default("Tidx", INDEX, "DT_INT32"))
                .shape_fn(scan_shape),
        )?;
    }
    // TensorFlow's rules: the gradient of a scan is the scan of the gradient the other way.
    r.gradient("Cumsum", |c| {
        let g = scan(c, "Cumsum", c.dy(0)?, true)?;
        Ok(vec![Some(g), None])
    })?;
    r.gradient("Cumprod", |c| {
        // Exact only where no element is zero (as in TensorFlow).
        let b = c.b;
        let g = scan(c, "Cumsum", b.mul(c.y(0), c.dy(0)?)?, true)?;
        Ok(vec![Some(b.div(g, c.x(0))?), None])
    })
}

/// `op` of `x` along the forward node's axis with its `exclusive` attr, and its `reverse`
/// attr flipped when `flip`.
fn scan(c: &GradContext, op: &str, x: Output, flip: bool) -> Result<Output> {
    let reverse = c.attr_bool("reverse")? != flip;
    c.b.op(op)
        .input(x)
        .input(c.x(1))
        .attr("exclusive", c.attr_bool("exclusive")?)
        .attr("reverse", reverse)
        .build_output()
}

fn scan_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    cx.with_rank(1, 0)?;
    let x = cx.input(0)?;
    if let (Some(rank), Some(axis)) = (x.rank(), cx.input_ints(1)?.and_then(|v| v.first().copied()))
    {
        if axis < -(rank as i64) || axis >= rank as i64 {
            return Err(cx.error(format!(
                "axis {axis} (from '{}') is out of range for '{}' of shape {x}",
                cx.input_names[1], cx.input_names[0]
            )));
        }
    }
    Ok(vec![x.clone()])
}

impl Builder {
    /// `Cumsum` of `x` along `axis`.
    pub fn cumsum(&self, x: Output, axis: i64, exclusive: bool, reverse: bool) -> Result<Output> {
        self.cumulative_scan("Cumsum", x, axis, exclusive, reverse)
    }

    /// `Cumprod` of `x` along `axis`.
    pub fn cumprod(&self, x: Output, axis: i64, exclusive: bool, reverse: bool) -> Result<Output> {
        self.cumulative_scan("Cumprod", x, axis, exclusive, reverse)
    }

    fn cumulative_scan(
        &self,
        op: &str,
        x: Output,
        axis: i64,
        exclusive: bool,
        reverse: bool,
    ) -> Result<Output> {
        let axis = self.int32_scalar_const(axis)?;
        self.op(op)
            .input(x)
            .input(axis)
            .attr("exclusive", exclusive)
            .attr("reverse", reverse)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    #[test]
    fn shapes() {
        let a = attrs(&[("T", DType::F32.into()), ("exclusive", true.into())]);
        assert_eq!(infer("Cumsum", &a, "[2,?];[]").unwrap(), "[2,?]");
        assert_eq!(infer("Cumprod", &a, "?;[]").unwrap(), "?");
        assert!(infer("Cumsum", &a, "[2];[1]").is_err());
        let axis = [None, Some(Tensor::scalar(-3i32))];
        assert!(infer_with_values("Cumsum", &a, "[2,3];[]", &axis).is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let y = b.cumsum(x, -1, false, true).unwrap();
        assert_eq!(b.shape(y).to_string(), "[2,3]");
        assert!(b.cumprod(x, 2, false, false).is_err());
    }
}
