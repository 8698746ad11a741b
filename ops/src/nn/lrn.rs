//! `LRN`: local response normalization across channels of a 4-D NHWC tensor, with a
//! builder method. The output has the input's shape.

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("LRN")
            .input("input: T")
            .output("output: T")
            .attr("depth_radius: int = 5")
            .attr("bias: float = 1.0")
            .attr("alpha: float = 1.0")
            .attr("beta: float = 0.5")
            .attr("T: {half, bfloat16, float} = DT_FLOAT")
            .shape_fn(lrn_shape),
    )
}

fn lrn_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.with_rank(0, 4)?])
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
