//! Elementwise unary math ops (`Abs`, `Neg`, `Exp`, `IsNan`, `LogicalNot`, ...) and the
//! same-shape binary gradient helpers (`TanhGrad`, `SigmoidGrad`, ...), each declared by one
//! line of a table giving its allowed `T`; plus the builder's `unary` and named methods.
//!
//! Shapes: the output has the input's shape; a gradient helper's inputs must merge.
//! Gradients: each differentiable op's gradient function is in the `GRADIENTS` table.

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{type_attr, FLOAT, NUMBER, SIGNED};
use crate::gradient::{scalar_like, GradContext, GradFn};
use crate::Builder;

/// What an op's `y` is.
#[derive(Clone, Copy, PartialEq)]
enum Out {
    /// Same dtype as `x`.
    Same,
    /// `bool` (IsNan, ...).
    Bool,
}
use Out::{Bool, Same};

/// `(op, allowed T, output)`: `x: T -> y`, shape unchanged. Type sets are TensorFlow's
/// without complex types.
const UNARY: &[(&str, &str, Out)] = &[
    ("Abs", SIGNED, Same),
    ("Neg", SIGNED, Same),
    ("Sign", SIGNED, Same),
    ("Reciprocal", SIGNED, Same),
    ("Inv", SIGNED, Same),
    ("Square", NUMBER, Same),
    ("Sqrt", FLOAT, Same),
    ("Rsqrt", FLOAT, Same),
    ("Exp", FLOAT, Same),
    ("Expm1", FLOAT, Same),
    ("Log", FLOAT, Same),
    ("Log1p", FLOAT, Same),
    ("Sin", FLOAT, Same),
    ("Cos", FLOAT, Same),
    ("Tan", SIGNED, Same),
    ("Tanh", FLOAT, Same),
    ("Sigmoid", FLOAT, Same),
    ("Floor", FLOAT, Same),
    ("Ceil", FLOAT, Same),
    ("Round", SIGNED, Same),
    ("Rint", FLOAT, Same),
    ("Erf", FLOAT, Same),
    ("Erfc", FLOAT, Same),
    ("IsNan", FLOAT, Bool),
    ("IsInf", FLOAT, Bool),
    ("IsFinite", FLOAT, Bool),
];

/// Gradient helpers `(y: T, dy: T) -> z: T` over floating `T`: the gradient of the op named
/// without `Grad`, given its output `y` and the incoming gradient `dy`.
const GRADS: &[&str] = &[
    "TanhGrad",
    "SigmoidGrad",
    "RsqrtGrad",
    "SqrtGrad",
    "ReciprocalGrad",
    "InvGrad",
];

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for &(name, types, out) in UNARY {
        let y = if out == Bool { "y: bool" } else { "y: T" };
        r.register(
            OpDef::build(name)
                .input("x: T")
                .output(y)
                .attr(&type_attr("T", types))
                .shape_fn(rill_graph::shape_fn::unchanged),
        )?;
    }
    r.register(
        OpDef::build("LogicalNot")
            .input("x: bool")
            .output("y: bool")
            .shape_fn(rill_graph::shape_fn::unchanged),
    )?;
    for &name in GRADS {
        r.register(
            OpDef::build(name)
                .input("y: T")
                .input("dy: T")
                .output("z: T")
                .attr(&type_attr("T", FLOAT))
                .shape_fn(merge_both),
        )?;
    }
    for op in GRADS {
        r.gradient(op, grad_of_grad)?;
    }
    for &(op, f) in GRADIENTS {
        r.gradient(op, f)?;
    }
    for op in [
        "Floor",
        "Ceil",
        "Round",
        "Rint",
        "IsNan",
        "IsInf",
        "IsFinite",
        "LogicalNot",
    ] {
        r.no_gradient(op)?;
    }
    Ok(())
}

/// Gradient functions (TensorFlow's `math_grad.py`). `Floor`, `Ceil`, `Round`, `Rint`
/// have none (piecewise constant), `Sign`'s is zero.
const GRADIENTS: &[(&str, GradFn)] = &[
    ("Neg", |c| Ok(c.only(c.b.neg(c.dy(0)?)?))),
    ("Abs", |c| Ok(c.only(c.b.mul(c.dy(0)?, c.b.sign(c.x(0))?)?))),
    ("Sign", |c| Ok(c.only(c.b.zeros_like(c.x(0))?))),
    ("Square", |c| {
        let two = scalar_like(c.b, c.dtype(c.x(0)), 2.0)?;
        Ok(c.only(c.b.mul(c.dy(0)?, c.b.mul(c.x(0), two)?)?))
    }),
    ("Sqrt", |c| output_grad(c, "SqrtGrad")),
    ("Rsqrt", |c| output_grad(c, "RsqrtGrad")),
    ("Tanh", |c| output_grad(c, "TanhGrad")),
    ("Sigmoid", |c| output_grad(c, "SigmoidGrad")),
    ("Reciprocal", |c| output_grad(c, "ReciprocalGrad")),
    ("Inv", |c| output_grad(c, "InvGrad")),
    ("Exp", |c| Ok(c.only(c.b.mul(c.dy(0)?, c.y(0))?))),
    (
        "Expm1",
        |c| Ok(c.only(c.b.mul(c.dy(0)?, c.b.exp(c.x(0))?)?)),
    ),
    ("Log", |c| {
        Ok(c.only(c.b.mul(c.dy(0)?, c.b.reciprocal(c.x(0))?)?))
    }),
    ("Log1p", |c| {
        let one = scalar_like(c.b, c.dtype(c.x(0)), 1.0)?;
        let r = c.b.reciprocal(c.b.add(one, c.x(0))?)?;
        Ok(c.only(c.b.mul(c.dy(0)?, r)?))
    }),
    ("Sin", |c| Ok(c.only(c.b.mul(c.dy(0)?, c.b.cos(c.x(0))?)?))),
    ("Cos", |c| {
        Ok(c.only(c.b.neg(c.b.mul(c.dy(0)?, c.b.sin(c.x(0))?)?)?))
    }),
    ("Tan", |c| {
        let sec2 = c.b.square(c.b.reciprocal(c.b.cos(c.x(0))?)?)?;
        Ok(c.only(c.b.mul(c.dy(0)?, sec2)?))
    }),
    ("Erf", |c| erf_grad(c, std::f64::consts::FRAC_2_SQRT_PI)),
    ("Erfc", |c| erf_grad(c, -std::f64::consts::FRAC_2_SQRT_PI)),
];

/// `op(y, dy)`: the gradient helpers that take the forward output (`TanhGrad`, ...).
fn output_grad(c: &GradContext, op: &str) -> Result<Vec<Option<Output>>> {
    let g = c.b.op(op).input(c.y(0)).input(c.dy(0)?).build_output()?;
    Ok(c.only(g))
}

/// The second derivatives of [`GRADS`] (TensorFlow's `_TanhGradGrad` and siblings): `z =
/// op(y, dy)` is linear in `dy`, so `dz/d dy` is `op(y, g)`; `dz/dy` is, per op, `-2 dy y`
/// (Tanh), `dy (1 - 2y)` (Sigmoid), `-1.5 dy y^2` (Rsqrt), `-z / y` (Sqrt), `-2 dy y`
/// (Reciprocal, Inv), times `g`.
fn grad_of_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (y, dy, g) = (c.x(0), c.x(1), c.dy(0)?);
    let k = |v: f64| scalar_like(b, c.dtype(y), v);
    let op = c.op_type();
    let slope = match op.as_str() {
        "TanhGrad" | "ReciprocalGrad" | "InvGrad" => b.mul(b.mul(dy, y)?, k(-2.0)?)?,
        "SigmoidGrad" => b.mul(dy, b.sub(k(1.0)?, b.mul(y, k(2.0)?)?)?)?,
        "RsqrtGrad" => b.mul(b.mul(dy, b.square(y)?)?, k(-1.5)?)?,
        "SqrtGrad" => b.neg(b.real_div(c.y(0), y)?)?,
        other => {
            return Err(c.error(
                rill_graph::Code::Internal,
                format!("{other} is not a gradient helper"),
            ))
        }
    };
    let d_dy = b.op(&op).input(y).input(g).build_output()?;
    Ok(vec![Some(b.mul(g, slope)?), Some(d_dy)])
}

/// `dy * scale * exp(-x^2)` (`scale` is ±2/sqrt(pi)).
fn erf_grad(c: &GradContext, scale: f64) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let k = scalar_like(b, c.dtype(c.x(0)), scale)?;
    let e = b.exp(b.neg(b.square(c.x(0))?)?)?;
    Ok(c.only(b.mul(c.dy(0)?, b.mul(k, e)?)?))
}

/// Both inputs have the same shape, which is the output's.
pub(crate) fn merge_both(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.merge_inputs(0, 1)?])
}

impl Builder {
    /// Any elementwise unary op by name (`"Exp"`, `"IsNan"`, ...).
    pub fn unary(&self, op: &str, x: Output) -> Result<Output> {
        self.op(op).input(x).build_output()
    }
}

macro_rules! unary_methods {
    ($($name:ident => $op:literal),* $(,)?) => {
        impl Builder {
            $(
                #[doc = concat!("`", $op, "` of `x`, elementwise.")]
                pub fn $name(&self, x: Output) -> Result<Output> {
                    self.unary($op, x)
                }
            )*
        }
    };
}

unary_methods! {
    abs => "Abs", neg => "Neg", sign => "Sign", reciprocal => "Reciprocal", square => "Square",
    sqrt => "Sqrt", rsqrt => "Rsqrt", exp => "Exp", expm1 => "Expm1", log => "Log",
    log1p => "Log1p", sin => "Sin", cos => "Cos", tan => "Tan", tanh => "Tanh",
    sigmoid => "Sigmoid", floor => "Floor", ceil => "Ceil", round => "Round", rint => "Rint",
    erf => "Erf", erfc => "Erfc", is_nan => "IsNan", is_inf => "IsInf", is_finite => "IsFinite",
    logical_not => "LogicalNot",
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    #[test]
    fn unchanged_shapes() {
        let f = attrs(&[("T", DType::F32.into())]);
        for op in ["Abs", "Exp", "Tanh", "Sigmoid", "Rint", "IsNan"] {
            assert_eq!(infer(op, &f, "[2,?,3]").unwrap(), "[2,?,3]", "{op}");
            assert_eq!(infer(op, &f, "?").unwrap(), "?", "{op}");
        }
        assert_eq!(infer("LogicalNot", &attrs(&[]), "[4]").unwrap(), "[4]");
        assert_eq!(
            infer("Square", &attrs(&[("T", DType::U8.into())]), "[]").unwrap(),
            "[]"
        );
    }

    #[test]
    fn allowed_types_are_checked() {
        let b = attrs(&[("T", DType::Bool.into())]);
        assert!(infer("Exp", &b, "[1]").is_err());
        let i = attrs(&[("T", DType::I32.into())]);
        assert!(infer("Sqrt", &i, "[1]").is_err());
        assert_eq!(infer("Abs", &i, "[1]").unwrap(), "[1]");
        assert_eq!(infer("Neg", &i, "[1]").unwrap(), "[1]");
    }

    #[test]
    fn bool_outputs() {
        let r = crate::registry();
        let d = r.lookup("IsFinite").unwrap();
        let a = attrs(&[("T", DType::F16.into())]);
        assert_eq!(d.arg_types(&d.outputs, &a).unwrap(), vec![DType::Bool]);
    }

    #[test]
    fn gradient_helpers_merge_shapes() {
        let f = attrs(&[("T", DType::F32.into())]);
        for op in GRADS {
            assert_eq!(infer(op, &f, "[2,?];[?,3]").unwrap(), "[2,3]", "{op}");
        }
        let e = infer("TanhGrad", &f, "[2,3];[3,2]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[3,2]"),
            "{e}"
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 4]).unwrap();
        let y = b.tanh(b.exp(x).unwrap()).unwrap();
        assert_eq!(b.shape(y).to_string(), "[?,4]");
        let n = b.is_nan(y).unwrap();
        assert_eq!(b.dtype(n), DType::Bool);
        assert_eq!(b.dtype(b.logical_not(n).unwrap()), DType::Bool);
        assert!(b
            .sqrt(b.placeholder("i", DType::I32, [2i64]).unwrap())
            .is_err());
    }
}
