//! Bias addition: `BiasAdd` (a 1-D bias added along the channel dim, NHWC or NCHW), its
//! gradient `BiasAddGrad` and the legacy `BiasAddV1`; with builder methods.
//!
//! Shapes follow TensorFlow's `BiasAddShape`: `value` has rank >= 2 (>= 3 for NCHW), the
//! bias length merges with the channel dim (last, or dim 1 for NCHW). `BiasAdd` and
//! `BiasAddV1` have gradients (through `BiasAddGrad`), and so has `BiasAddGrad` (for second
//! derivatives).

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use crate::math::common::{merge_input_dims, replace_dim, type_attr, NUMBER};
use crate::Builder;

const FORMAT: &str = "data_format: {'NHWC', 'NCHW'} = 'NHWC'";

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("BiasAdd")
            .attr(&type_attr("T", NUMBER))
            .input("value: T")
            .input("bias: T")
            .attr(FORMAT)
            .output("output: T")
            .shape_fn(bias_add_shape),
    )?;
    r.register(
        OpDef::build("BiasAddGrad")
            .attr(&type_attr("T", NUMBER))
            .input("out_backprop: T")
            .attr(FORMAT)
            .output("output: T")
            .shape_fn(bias_add_grad_shape),
    )?;
    r.register(
        OpDef::build("BiasAddV1")
            .attr(&type_attr("T", NUMBER))
            .input("value: T")
            .input("bias: T")
            .output("output: T")
            .shape_fn(bias_add_shape),
    )?;
    // The value's gradient passes through; the bias's sums over all but the channel dim.
    r.gradient("BiasAdd", |c| {
        let dy = c.dy(0)?;
        let nb = c.b.op("BiasAddGrad").input(dy);
        let db = c.with_attrs(nb, &["data_format"])?.build_output()?;
        Ok(vec![Some(dy), Some(db)])
    })?;
    r.gradient("BiasAddV1", |c| {
        let dy = c.dy(0)?;
        let db = c.b.op("BiasAddGrad").input(dy).build_output()?;
        Ok(vec![Some(dy), Some(db)])
    })?;
    // BiasAddGrad is linear: its gradient spreads the bias-shaped gradient back along the
    // channel dim (TensorFlow's `_BiasAddGradGrad` tiles it), here a BiasAdd onto zeros.
    r.gradient("BiasAddGrad", |c| {
        let zeros = c.b.zeros_like(c.x(0))?;
        let nb = c.b.op("BiasAdd").input(zeros).input(c.dy(0)?);
        Ok(vec![Some(
            c.with_attrs(nb, &["data_format"])?.build_output()?,
        )])
    })
}

fn is_nchw(cx: &InferenceContext) -> bool {
    cx.attrs.get("data_format").and_then(|v| v.as_str()) == Some("NCHW")
}

fn bias_add_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let nchw = is_nchw(cx);
    let value = cx.with_rank_at_least(0, if nchw { 3 } else { 2 })?;
    let bias = cx.with_rank(1, 1)?;
    let Some(rank) = value.rank() else {
        return Ok(vec![Shape::unknown()]);
    };
    let channel = if nchw { 1 } else { rank - 1 };
    let what = "the bias length and the channel dimension of value";
    let c = merge_input_dims(cx, 0, value.dim(channel as i64), 1, bias.dim(0), what)?;
    Ok(vec![replace_dim(&value, channel, c)])
}

fn bias_add_grad_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let nchw = is_nchw(cx);
    let grad = cx.with_rank_at_least(0, if nchw { 3 } else { 2 })?;
    Ok(vec![Shape::from_dims([grad.dim(if nchw {
        1
    } else {
        -1
    })])])
}

impl Builder {
    /// `BiasAdd`: `bias` (1-D) added along the last dim of `value` (NHWC).
    pub fn bias_add(&self, value: Output, bias: Output) -> Result<Output> {
        self.op("BiasAdd").input(value).input(bias).build_output()
    }

    /// `BiasAdd` with an explicit `data_format` ("NHWC" or "NCHW").
    pub fn bias_add_with_format(
        &self,
        value: Output,
        bias: Output,
        data_format: &str,
    ) -> Result<Output> {
        self.op("BiasAdd")
            .input(value)
            .input(bias)
            .attr("data_format", data_format)
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
        let nhwc = attrs(&[("T", DType::F32.into())]);
        let nchw = attrs(&[("T", DType::F32.into()), ("data_format", "NCHW".into())]);
        assert_eq!(infer("BiasAdd", &nhwc, "[?,10];[10]").unwrap(), "[?,10]");
        assert_eq!(infer("BiasAdd", &nhwc, "[2,?];[10]").unwrap(), "[2,10]");
        assert_eq!(
            infer("BiasAdd", &nhwc, "[2,5,5,?];[3]").unwrap(),
            "[2,5,5,3]"
        );
        assert_eq!(
            infer("BiasAdd", &nchw, "[2,?,5,5];[3]").unwrap(),
            "[2,3,5,5]"
        );
        assert_eq!(infer("BiasAdd", &nhwc, "?;[3]").unwrap(), "?");
        assert_eq!(infer("BiasAddV1", &nhwc, "[4,3];[?]").unwrap(), "[4,3]");
        assert_eq!(infer("BiasAddGrad", &nhwc, "[4,5,3]").unwrap(), "[3]");
        assert_eq!(infer("BiasAddGrad", &nchw, "[4,5,3]").unwrap(), "[5]");
        assert_eq!(infer("BiasAddGrad", &nhwc, "?").unwrap(), "[?]");
    }

    #[test]
    fn errors() {
        let nhwc = attrs(&[("T", DType::F32.into())]);
        let e = infer("BiasAdd", &nhwc, "[2,10];[5]").unwrap_err();
        for part in ["in0:0", "in1:0", "[2,10]", "[5]"] {
            assert!(e.message.contains(part), "{e}");
        }
        assert!(infer("BiasAdd", &nhwc, "[10];[10]").is_err());
        assert!(infer("BiasAdd", &nhwc, "[2,10];[2,5]").is_err());
        let nchw = attrs(&[("T", DType::F32.into()), ("data_format", "NCHW".into())]);
        assert!(infer("BiasAdd", &nchw, "[2,10];[10]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 10]).unwrap();
        let bias = b.placeholder("bias", DType::F32, [10i64]).unwrap();
        assert_eq!(b.shape(b.bias_add(x, bias).unwrap()).to_string(), "[?,10]");
        let y = b.placeholder("y", DType::F32, [2i64, 10, 4, 4]).unwrap();
        assert_eq!(
            b.shape(b.bias_add_with_format(y, bias, "NCHW").unwrap())
                .to_string(),
            "[2,10,4,4]"
        );
        assert!(b.bias_add(y, bias).is_err());
    }
}
