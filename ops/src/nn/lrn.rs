//! `LRN`: local response normalization across channels of a 4-D NHWC tensor, with a
//! builder method, and its gradient op `LRNGrad`. Outputs have the input's shape (LRNGrad
//! merges its three inputs).
//!
//! `LRN`'s gradient is `LRNGrad(dy, input, output)` with the forward node's attrs (TF's
//! `_LRNGrad`).

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use crate::Builder;

const ATTRS: [&str; 4] = ["depth_radius", "bias", "alpha", "beta"];

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    let op = |name: &str| {
        OpDef::build(name)
            .output("output: T")
            .attr("depth_radius: int = 5")
            .attr("bias: float = 1.0")
            .attr("alpha: float = 1.0")
            .attr("beta: float = 0.5")
            .attr("T: {half, bfloat16, float} = DT_FLOAT")
    };
    r.register(op("LRN").input("input: T").shape_fn(lrn_shape))?;
    r.register(
        op("LRNGrad")
            .input("input_grads: T")
            .input("input_image: T")
            .input("output_image: T")
            .shape_fn(lrn_grad_shape),
    )?;
    r.gradient("LRN", |c| {
        let nb =
            c.b.op("LRNGrad")
                .input(c.dy(0)?)
                .input(c.x(0))
                .input(c.y(0));
        Ok(vec![Some(c.with_attrs(nb, &ATTRS)?.build_output()?)])
    })
}

fn lrn_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.with_rank(0, 4)?])
}

fn lrn_grad_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let mut merged = cx.with_rank(0, 4)?;
    for i in 1..3 {
        let s = cx.with_rank(i, 4)?;
        merged = merged.merge(&s).map_err(|_| {
            cx.error(format!(
                "'{}' has shape {s}, but the inputs before it have shape {merged}; LRNGrad's \
                 inputs must have the same shape",
                cx.input_names[i]
            ))
        })?;
    }
    Ok(vec![merged])
}

impl Builder {
    /// `LRN` of `input` (`tf.nn.local_response_normalization`).
    pub fn local_response_normalization(
        &self,
        input: Output,
        depth_radius: i64,
        bias: f32,
        alpha: f32,
        beta: f32,
    ) -> Result<Output> {
        self.op("LRN")
            .input(input)
            .attr("depth_radius", depth_radius)
            .attr("bias", bias)
            .attr("alpha", alpha)
            .attr("beta", beta)
            .build_output()
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
        assert_eq!(infer("LRN", &a, "[1,?,3,4]").unwrap(), "[1,?,3,4]");
        assert_eq!(infer("LRN", &a, "?").unwrap(), "[?,?,?,?]");
        assert!(infer("LRN", &a, "[1,2,3]").is_err());
        assert_eq!(
            infer("LRNGrad", &a, "[1,?,3,?];?;[?,2,?,4]").unwrap(),
            "[1,2,3,4]"
        );
        assert!(infer("LRNGrad", &a, "[1,2,3,4];[1,2,3,5];?").is_err());
        assert!(infer("LRNGrad", &a, "[1,2,3];?;?").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 5, 5, 8]).unwrap();
        let y = b
            .local_response_normalization(x, 2, 1.0, 1e-4, 0.75)
            .unwrap();
        assert_eq!(b.shape(y).to_string(), "[2,5,5,8]");
    }
}
