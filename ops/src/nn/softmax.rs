//! `Softmax` and `LogSoftmax` over the last dimension, with builder methods. The output has
//! the input's shape, which must have rank >= 1. Both have gradients (TensorFlow's).

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use crate::math::common::{type_attr, FLOAT};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for (name, out) in [("Softmax", "softmax: T"), ("LogSoftmax", "logsoftmax: T")] {
        r.register(
            OpDef::build(name)
                .input("logits: T")
                .output(out)
                .attr(&type_attr("T", FLOAT))
                .shape_fn(softmax_shape),
        )?;
    }
    // softmax: (dy - sum(dy * y)) * y over the last dim.
    r.gradient("Softmax", |c| {
        let b = c.b;
        let (y, dy) = (c.y(0), c.dy(0)?);
        let dot = b.sum(b.mul(dy, y)?, &[-1], true)?;
        Ok(c.only(b.mul(b.sub(dy, dot)?, y)?))
    })?;
    // log_softmax: dy - sum(dy) * exp(y) over the last dim.
    r.gradient("LogSoftmax", |c| {
        let b = c.b;
        let dy = c.dy(0)?;
        let total = b.sum(dy, &[-1], true)?;
        Ok(c.only(b.sub(dy, b.mul(total, b.exp(c.y(0))?)?)?))
    })
}

fn softmax_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.with_rank_at_least(0, 1)?])
}

impl Builder {
    /// `Softmax` of `logits` over the last dimension.
    pub fn softmax(&self, logits: Output) -> Result<Output> {
        self.op("Softmax").input(logits).build_output()
    }

    /// `LogSoftmax` of `logits` over the last dimension.
    pub fn log_softmax(&self, logits: Output) -> Result<Output> {
        self.op("LogSoftmax").input(logits).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    #[test]
    fn shapes() {
        let f = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Softmax", &f, "[?,10]").unwrap(), "[?,10]");
        assert_eq!(infer("LogSoftmax", &f, "?").unwrap(), "?");
        let e = infer("Softmax", &f, "[]").unwrap_err();
        assert!(e.message.contains("in0:0"), "{e}");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 10]).unwrap();
        assert_eq!(b.shape(b.softmax(x).unwrap()).to_string(), "[?,10]");
        assert_eq!(b.shape(b.log_softmax(x).unwrap()).to_string(), "[?,10]");
        let s = b.placeholder("s", DType::F32, Shape::scalar()).unwrap();
        assert!(b.softmax(s).is_err());
    }
}
