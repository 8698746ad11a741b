//! Activation functions (`Relu`, `Relu6`, `Elu`, `Selu`, `LeakyRelu`, `Softplus`,
//! `Softsign`) and their gradients (`ReluGrad`, `EluGrad`, ...), one table line each, with
//! builder methods.
//!
//! Shapes: an activation keeps its input's shape; a gradient's two inputs must merge.
//! Gradients: each activation's gradient is its `<op>Grad` op, fed the input or output as
//! TensorFlow does (`GRAD_OPS`).

use rill_graph::{OpDef, OpDefBuilder, Output, Result};

use crate::gradient::GradContext;
use crate::math::common::{type_attr, type_attr_default, FLOAT, NUMBER};
use crate::Builder;

/// `(op, allowed T, leaky)`: `features: T -> activations: T`. A leaky op also has
/// `alpha: float = 0.2` and `T` defaults to float.
const ACTIVATIONS: &[(&str, &str, bool)] = &[
    ("Relu", NUMBER, false),
    ("Relu6", NUMBER, false),
    ("Elu", FLOAT, false),
    ("Selu", FLOAT, false),
    ("LeakyRelu", FLOAT, true),
    ("Softplus", FLOAT, false),
    ("Softsign", FLOAT, false),
];

/// `(op, name of the second input, allowed T, leaky)`:
/// `gradients: T, <second>: T -> backprops: T`.
const GRADIENTS: &[(&str, &str, &str, bool)] = &[
    ("ReluGrad", "features", NUMBER, false),
    ("Relu6Grad", "features", NUMBER, false),
    ("EluGrad", "outputs", FLOAT, false),
    ("SeluGrad", "outputs", FLOAT, false),
    ("LeakyReluGrad", "features", FLOAT, true),
    ("SoftplusGrad", "features", FLOAT, false),
    ("SoftsignGrad", "features", FLOAT, false),
];

/// Adds `T` (and for leaky ops `alpha`) to `def`.
fn with_attrs(def: OpDefBuilder, set: &str, leaky: bool) -> OpDefBuilder {
    if leaky {
        def.attr("alpha: float = 0.2")
            .attr(&type_attr_default("T", set, "DT_FLOAT"))
    } else {
        def.attr(&type_attr("T", set))
    }
}

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for &(name, set, leaky) in ACTIVATIONS {
        let def = OpDef::build(name)
            .input("features: T")
            .output("activations: T");
        r.register(with_attrs(def, set, leaky).shape_fn(rill_graph::shape_fn::unchanged))?;
    }
    for &(name, second, set, leaky) in GRADIENTS {
        let def = OpDef::build(name)
            .input("gradients: T")
            .input(&format!("{second}: T"))
            .output("backprops: T");
        r.register(with_attrs(def, set, leaky).shape_fn(crate::math::unary::merge_both))?;
    }
    for &(op, from_output) in GRAD_OPS {
        r.gradient(op, if from_output { from_y } else { from_x })?;
    }
    for op in [
        "ReluGrad",
        "Relu6Grad",
        "LeakyReluGrad",
        "EluGrad",
        "SeluGrad",
    ] {
        r.gradient(op, piecewise_grad_of_grad)?;
    }
    r.gradient("SoftplusGrad", softplus_grad_of_grad)
}

/// The gradient of `z = <op>Grad(gradients, second)`, linear in `gradients`: `<op>Grad(g,
/// second)` for `gradients`. For `second`: zero where the activation is piecewise linear
/// (Relu, Relu6, LeakyRelu); for Elu and Selu, whose grads read the outputs, `g *
/// gradients` where the outputs are negative (TensorFlow's `_EluGradGrad`).
fn piecewise_grad_of_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (gradients, second, g) = (c.x(0), c.x(1), c.dy(0)?);
    let op = c.op_type();
    let mut nb = b.op(&op).input(g).input(second);
    if op == "LeakyReluGrad" {
        nb = nb.attr("alpha", c.attr_float("alpha")?);
    }
    let d_gradients = nb.build_output()?;
    let zeros = b.zeros_like(second)?;
    let d_second = match op.as_str() {
        "EluGrad" | "SeluGrad" => {
            let negative = b.less(second, zeros)?;
            b.select_v2(negative, b.mul(g, gradients)?, zeros)?
        }
        _ => zeros,
    };
    Ok(vec![Some(d_gradients), Some(d_second)])
}

/// `z = gradients * sigmoid(x)`: `SoftplusGrad(g, x)` for `gradients`, and `g * gradients *
/// sigmoid'(x) = g * gradients / (exp(-x) + 2 + exp(x))` for `x`.
fn softplus_grad_of_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (gradients, x, g) = (c.x(0), c.x(1), c.dy(0)?);
    let d_gradients = b.op("SoftplusGrad").input(g).input(x).build_output()?;
    let two = crate::gradient::scalar_like(b, c.dtype(x), 2.0)?;
    let cosh2 = b.add(b.add(b.exp(b.neg(x)?)?, two)?, b.exp(x)?)?;
    let d_x = b.real_div(b.mul(g, gradients)?, cosh2)?;
    Ok(vec![Some(d_gradients), Some(d_x)])
}

/// `(op, whether its gradient op <op>Grad takes the output rather than the input)`, as
/// TensorFlow's `nn_grad.py` calls them.
const GRAD_OPS: &[(&str, bool)] = &[
    ("Relu", true),
    ("Relu6", false),
    ("Elu", true),
    ("Selu", true),
    ("LeakyRelu", false),
    ("Softplus", false),
    ("Softsign", false),
];

/// `<op>Grad(dy, features)` (with `alpha` for LeakyRelu).
fn from_x(c: &GradContext) -> Result<Vec<Option<Output>>> {
    grad_op(c, c.x(0))
}

/// `<op>Grad(dy, activations)`.
fn from_y(c: &GradContext) -> Result<Vec<Option<Output>>> {
    grad_op(c, c.y(0))
}

fn grad_op(c: &GradContext, second: Output) -> Result<Vec<Option<Output>>> {
    let op = format!("{}Grad", c.op_type());
    let mut nb = c.b.op(&op).input(c.dy(0)?).input(second);
    if op == "LeakyReluGrad" {
        nb = nb.attr("alpha", c.attr_float("alpha")?);
    }
    Ok(c.only(nb.build_output()?))
}

macro_rules! activation_methods {
    ($($name:ident => $op:literal),* $(,)?) => {
        impl Builder {
            $(
                #[doc = concat!("`", $op, "` of `features`.")]
                pub fn $name(&self, features: Output) -> Result<Output> {
                    self.unary($op, features)
                }
            )*
        }
    };
}

activation_methods! {
    relu => "Relu", relu6 => "Relu6", elu => "Elu", selu => "Selu", softplus => "Softplus",
    softsign => "Softsign",
}

impl Builder {
    /// `LeakyRelu` of `features` with slope `alpha` below zero.
    pub fn leaky_relu(&self, features: Output, alpha: f32) -> Result<Output> {
        self.op("LeakyRelu")
            .input(features)
            .attr("alpha", alpha)
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
        let f = attrs(&[("T", DType::F32.into())]);
        for (op, ..) in ACTIVATIONS {
            assert_eq!(infer(op, &f, "[?,3]").unwrap(), "[?,3]", "{op}");
        }
        for (op, ..) in GRADIENTS {
            assert_eq!(infer(op, &f, "[?,3];[2,?]").unwrap(), "[2,3]", "{op}");
        }
        let e = infer("ReluGrad", &f, "[2,3];[3]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("in1:0") && e.message.contains("[3]"),
            "{e}"
        );
        assert_eq!(
            infer("Relu", &attrs(&[("T", DType::I32.into())]), "[1]").unwrap(),
            "[1]"
        );
        assert!(infer("Elu", &attrs(&[("T", DType::I32.into())]), "[1]").is_err());
    }

    #[test]
    fn leaky_relu_defaults() {
        let r = crate::registry();
        let d = r.lookup("LeakyRelu").unwrap();
        let mut a = attrs(&[]);
        d.complete_attrs(&mut a).unwrap();
        assert_eq!(a["alpha"], AttrValue::Float(0.2));
        assert_eq!(a["T"], AttrValue::Type(DType::F32));
        assert_eq!(r.lookup("EluGrad").unwrap().inputs[1].name, "outputs");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        let y = b.leaky_relu(b.relu(x).unwrap(), 0.1).unwrap();
        assert_eq!(b.shape(y).to_string(), "[?,3]");
        assert_eq!(
            b.graph().node(y.node).attr("alpha"),
            Some(&AttrValue::Float(0.1))
        );
        assert_eq!(
            b.shape(b.softplus(b.selu(y).unwrap()).unwrap()).to_string(),
            "[?,3]"
        );
    }
}
