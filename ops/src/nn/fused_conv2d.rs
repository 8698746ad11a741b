//! `_FusedConv2D`: TensorFlow's internal op for a `Conv2D` followed by the ops named in
//! `fused_ops`, applied in order to the convolution's output (further inputs of each come
//! from `args`). Grappler, and Rill's fusion pass, create it; users never do.
//!
//! Signature (TensorFlow's `nn_ops.cc`, in the `args: num_args * T` form): `input: T,
//! filter: T, args: num_args * T -> output: T`, attrs `T`, `num_args: int >= 0`,
//! `strides: list(int)`, `padding` (SAME, VALID, EXPLICIT), `explicit_paddings: list(int) =
//! []`, `data_format` (NHWC, NCHW) `= 'NHWC'`, `dilations: list(int) = [1, 1, 1, 1]`,
//! `use_cudnn_on_gpu: bool = true`, `fused_ops: list(string) = []`, `epsilon: float =
//! 0.0001`, `leakyrelu_alpha: float = 0.2`. Recent TensorFlow also has quantized-only
//! inputs (`host_args`, with `TArgs`/`num_host_args`) and `filter_format`; Rill has no
//! quantized types and leaves them out. `T` is any float type (TensorFlow's CPU kernel:
//! half, float, double).
//!
//! Shape: `Conv2D`'s (the registered `Conv2D` shape function is reused); with `fused_ops`
//! starting with `BiasAdd`, `args[0]` is a vector over the channel dim (and with
//! `["BiasAdd", "Add", ...]`, `args[1]` has the output's shape).
//!
//! Not differentiable: fusion runs after gradients are built.

use rill_graph::{InferenceContext, OpDef, Result, Shape};

use super::common::{data_format, Format};
use crate::math::fused_matmul::{check_args, contraction_shape};

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("_FusedConv2D")
            .input("input: T")
            .input("filter: T")
            .input("args: num_args * T")
            .output("output: T")
            .attr("T: {bfloat16, half, float, double}")
            .attr("num_args: int >= 0")
            .attr("strides: list(int)")
            .attr("padding: {'SAME', 'VALID', 'EXPLICIT'}")
            .attr("explicit_paddings: list(int) = []")
            .attr("data_format: {'NHWC', 'NCHW'} = 'NHWC'")
            .attr("dilations: list(int) = [1, 1, 1, 1]")
            .attr("use_cudnn_on_gpu: bool = true")
            .attr("fused_ops: list(string) = []")
            .attr("epsilon: float = 0.0001")
            .attr("leakyrelu_alpha: float = 0.2")
            .shape_fn(fused_conv2d_shape),
    )?;
    r.no_gradient("_FusedConv2D")
}

fn fused_conv2d_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let out = contraction_shape(cx, "Conv2D")?;
    let channel = match data_format(cx)? {
        Format::Nhwc => 3,
        Format::Nchw => 1,
    };
    Ok(vec![check_args(cx, out, channel)?])
}

#[cfg(test)]
mod tests {
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType};

    fn fused(format: &str, ops: &[&str], num_args: i64) -> rill_graph::Attrs {
        attrs(&[
            ("T", DType::F32.into()),
            ("strides", vec![1i64, 1, 1, 1].into()),
            ("padding", "SAME".into()),
            ("data_format", format.into()),
            ("num_args", AttrValue::Int(num_args)),
            (
                "fused_ops",
                AttrValue::StringList(ops.iter().map(|s| s.as_bytes().to_vec()).collect()),
            ),
        ])
    }

    #[test]
    fn shapes_follow_conv2d_and_the_bias() {
        let a = fused("NHWC", &["BiasAdd", "Relu"], 1);
        assert_eq!(
            infer("_FusedConv2D", &a, "[2,5,5,3];[3,3,3,8];[8]").unwrap(),
            "[2,5,5,8]"
        );
        assert_eq!(
            infer("_FusedConv2D", &a, "[2,5,5,3];[3,3,3,?];[8]").unwrap(),
            "[2,5,5,8]"
        );
        let e = infer("_FusedConv2D", &a, "[2,5,5,3];[3,3,3,8];[7]").unwrap_err();
        assert!(e.message.contains("in2:0"), "{e}");
        let c = fused("NCHW", &["BiasAdd"], 1);
        assert_eq!(
            infer("_FusedConv2D", &c, "[2,3,5,5];[3,3,3,8];[8]").unwrap(),
            "[2,8,5,5]"
        );
        assert!(infer("_FusedConv2D", &a, "[2,5,5,4];[3,3,3,8];[8]").is_err());
        let s = fused("NHWC", &["BiasAdd", "Add", "Relu"], 2);
        assert_eq!(
            infer("_FusedConv2D", &s, "[?,5,5,3];[3,3,3,8];[8];[2,5,5,8]").unwrap(),
            "[2,5,5,8]"
        );
    }
}
