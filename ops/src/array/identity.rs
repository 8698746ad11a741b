//! Pass-through ops: `Identity`, `IdentityN`, `StopGradient`, `PreventGradient`, `Snapshot`,
//! `CheckNumerics`, `EnsureShape`. Each output has its input's shape.
//!
//! Gradients: the pass-through ops pass the gradient on (`CheckNumerics` checks it);
//! `StopGradient` is not differentiable and differentiating `PreventGradient` is an error.

use rill_graph::shape_fn::unchanged;
use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for op in ["Identity", "StopGradient", "Snapshot"] {
        r.register(
            OpDef::build(op)
                .input("input: T")
                .output("output: T")
                .attr("T: type")
                .shape_fn(unchanged),
        )?;
    }
    r.register(
        OpDef::build("IdentityN")
            .input("input: T")
            .output("output: T")
            .attr("T: list(type)")
            .shape_fn(identity_n_shape),
    )?;
    r.register(
        OpDef::build("PreventGradient")
            .input("input: T")
            .output("output: T")
            .attr("T: type")
            .attr("message: string = ''")
            .shape_fn(unchanged),
    )?;
    r.register(
        OpDef::build("CheckNumerics")
            .input("tensor: T")
            .output("output: T")
            .attr("T: {bfloat16, half, float, double}")
            .attr("message: string")
            .stateful()
            .shape_fn(unchanged),
    )?;
    r.register(
        OpDef::build("EnsureShape")
            .input("input: T")
            .output("output: T")
            .attr("shape: shape")
            .attr("T: type")
            .shape_fn(ensure_shape),
    )?;
    for op in ["Identity", "Snapshot", "EnsureShape"] {
        r.gradient(op, |c| Ok(c.only(c.dy(0)?)))?;
    }
    r.gradient("IdentityN", |c| Ok(c.grads.clone()))?;
    r.gradient("CheckNumerics", |c| {
        let message = format!(
            "Not a number (NaN) or infinity (Inf) values detected in gradient. {}",
            c.attr_str("message")?
        );
        Ok(c.only(c.b.check_numerics(c.dy(0)?, &message)?))
    })?;
    r.no_gradient("StopGradient")?;
    r.gradient("PreventGradient", |c| {
        Err(c.error(
            rill_graph::Code::InvalidArgument,
            format!(
                "gradient explicitly disabled. Reason: {}",
                c.attr_str("message")?
            ),
        ))
    })?;
    Ok(())
}

fn identity_n_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(cx.input_shapes.clone())
}

fn ensure_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let want = cx.attr_shape("shape")?;
    let have = cx.input(0)?;
    let merged = have.merge(want).map_err(|_| {
        cx.error(format!(
            "'{}' has shape {have}, incompatible with the expected shape {want}",
            super::common::name(cx, 0)
        ))
    })?;
    Ok(vec![merged])
}

impl Builder {
    /// `tf.identity`: the same value under a new name.
    pub fn identity(&self, x: Output) -> Result<Output> {
        self.op("Identity").input(x).build_output()
    }

    /// `Identity` named `name`.
    pub fn identity_named(&self, name: &str, x: Output) -> Result<Output> {
        self.op("Identity").name(name).input(x).build_output()
    }

    /// `tf.identity_n`: several values passed through one node.
    pub fn identity_n(&self, xs: &[Output]) -> Result<Vec<Output>> {
        self.op("IdentityN").input_list(xs).build_outputs()
    }

    /// `tf.stop_gradient`: the value, treated as a constant by differentiation.
    pub fn stop_gradient(&self, x: Output) -> Result<Output> {
        self.op("StopGradient").input(x).build_output()
    }

    /// `PreventGradient`: the value; differentiating through it is an error carrying
    /// `message`.
    pub fn prevent_gradient(&self, x: Output, message: &str) -> Result<Output> {
        self.op("PreventGradient")
            .input(x)
            .attr("message", message)
            .build_output()
    }

    /// `Snapshot`: a copy of the value.
    pub fn snapshot(&self, x: Output) -> Result<Output> {
        self.op("Snapshot").input(x).build_output()
    }

    /// `tf.debugging.check_numerics`: the value, failing at run time on NaN or Inf.
    pub fn check_numerics(&self, x: Output, message: &str) -> Result<Output> {
        self.op("CheckNumerics")
            .input(x)
            .attr("message", message)
            .build_output()
    }

    /// `tf.ensure_shape`: the value, checked to have a shape compatible with `shape`.
    pub fn ensure_shape(&self, x: Output, shape: impl Into<Shape>) -> Result<Output> {
        self.op("EnsureShape")
            .input(x)
            .attr("shape", shape.into())
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType};

    #[test]
    fn shapes() {
        let t = attrs(&[("T", DType::F32.into())]);
        for op in ["Identity", "StopGradient", "Snapshot", "PreventGradient"] {
            assert_eq!(infer(op, &t, "[2,?]").unwrap(), "[2,?]");
            assert_eq!(infer(op, &t, "?").unwrap(), "?");
        }
        let a = attrs(&[("T", DType::F32.into()), ("message", "m".into())]);
        assert_eq!(infer("CheckNumerics", &a, "[3]").unwrap(), "[3]");
        let a = attrs(&[("T", AttrValue::TypeList(vec![DType::F32, DType::I32]))]);
        assert_eq!(infer("IdentityN", &a, "[2];?").unwrap(), "[2];?");
    }

    #[test]
    fn check_numerics_rejects_integers() {
        let a = attrs(&[("T", DType::I32.into()), ("message", "m".into())]);
        assert!(infer("CheckNumerics", &a, "[3]").is_err());
    }

    #[test]
    fn ensure_shape() {
        let a = attrs(&[
            ("T", DType::F32.into()),
            ("shape", Shape::from([-1i64, 3]).into()),
        ]);
        assert_eq!(infer("EnsureShape", &a, "[2,?]").unwrap(), "[2,3]");
        assert_eq!(infer("EnsureShape", &a, "?").unwrap(), "[?,3]");
        let e = infer("EnsureShape", &a, "[2,4]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[2,4]"),
            "{e}"
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 4]).unwrap();
        let y = b.identity_named("y", x).unwrap();
        assert_eq!(b.graph().tensor_name(y), "y:0");
        assert_eq!(b.shape(b.stop_gradient(y).unwrap()).to_string(), "[?,4]");
        let n = b.identity_n(&[x, y]).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(
            b.shape(b.ensure_shape(x, [8i64, 4]).unwrap()).to_string(),
            "[8,4]"
        );
        assert!(b.ensure_shape(x, [8i64, 5]).is_err());
        assert_eq!(
            b.shape(b.check_numerics(x, "bad").unwrap()).to_string(),
            "[?,4]"
        );
        assert_eq!(b.shape(b.snapshot(x).unwrap()).to_string(), "[?,4]");
        assert_eq!(
            b.shape(b.prevent_gradient(x, "no").unwrap()).to_string(),
            "[?,4]"
        );
    }
}
