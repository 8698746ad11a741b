//! Optimizer update ops: `ApplyGradientDescent`, `ApplyMomentum`, `ApplyAdam`,
//! `ApplyRMSProp`, `ApplyAdagrad` on reference variables (each returns the updated
//! variable's reference) and their `ResourceApply*` forms on resource handles (no outputs).
//!
//! Shape rule (TensorFlow's): the variable, its slots and the gradient share one shape;
//! hyper-parameters are scalars. Resource handles carry no shape at graph time, so only
//! the scalars are checked for the resource forms.

use rill_graph::{InferenceContext, NodeId, OpDef, Output, Result, Shape};

use crate::array::common::{check_scalar, merge_all, NUMBER_TYPES};
use crate::Builder;

/// One optimizer: its name without prefix, slot inputs after `var` (variables too), the
/// `T` inputs after those (hyper-parameters and the gradient, in TensorFlow's order), and
/// its attrs beyond `T` and `use_locking`.
struct Optimizer {
    op: &'static str,
    slots: &'static [&'static str],
    tensors: &'static [&'static str],
    extra_attrs: &'static [&'static str],
    ref_shape: fn(&InferenceContext) -> Result<Vec<Shape>>,
    resource_shape: fn(&InferenceContext) -> Result<Vec<Shape>>,
}

/// Shape functions per layout: `S` slot inputs after `var` (each a variable-shaped
/// tensor), `H` scalars, then the gradient.
fn apply_shape<const S: usize, const H: usize>(cx: &InferenceContext) -> Result<Vec<Shape>> {
    for i in S + 1..S + 1 + H {
        check_scalar(cx, i)?;
    }
    Ok(vec![merge_all(cx, (0..=S).chain([S + 1 + H]))?])
}

fn resource_apply_shape<const S: usize, const H: usize>(
    cx: &InferenceContext,
) -> Result<Vec<Shape>> {
    for i in S + 1..S + 1 + H {
        check_scalar(cx, i)?;
    }
    Ok(vec![])
}

const OPTIMIZERS: [Optimizer; 5] = [
    Optimizer {
        op: "GradientDescent",
        slots: &[],
        tensors: &["alpha", "delta"],
        extra_attrs: &[],
        ref_shape: gradient_descent_shape,
        resource_shape: resource_apply_shape::<0, 1>,
    },
    Optimizer {
        op: "Momentum",
        slots: &["accum"],
        tensors: &["lr", "grad", "momentum"],
        extra_attrs: &["use_nesterov: bool = false"],
        ref_shape: momentum_shape,
        resource_shape: resource_momentum_shape,
    },
    Optimizer {
        op: "Adam",
        slots: &["m", "v"],
        tensors: &[
            "beta1_power",
            "beta2_power",
            "lr",
            "beta1",
            "beta2",
            "epsilon",
            "grad",
        ],
        extra_attrs: &["use_nesterov: bool = false"],
        ref_shape: apply_shape::<2, 6>,
        resource_shape: resource_apply_shape::<2, 6>,
    },
    Optimizer {
        op: "RMSProp",
        slots: &["ms", "mom"],
        tensors: &["lr", "rho", "momentum", "epsilon", "grad"],
        extra_attrs: &[],
        ref_shape: apply_shape::<2, 4>,
        resource_shape: resource_apply_shape::<2, 4>,
    },
    Optimizer {
        op: "Adagrad",
        slots: &["accum"],
        tensors: &["lr", "grad"],
        extra_attrs: &["update_slots: bool = true"],
        ref_shape: apply_shape::<1, 1>,
        resource_shape: resource_apply_shape::<1, 1>,
    },
];

/// GradientDescent's second tensor is `delta`, the gradient.
fn gradient_descent_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    apply_shape::<0, 1>(cx)
}

/// Momentum's inputs are `var, accum, lr, grad, momentum`: the gradient comes between
/// the two scalars.
fn momentum_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    check_scalar(cx, 2)?;
    check_scalar(cx, 4)?;
    Ok(vec![merge_all(cx, [0, 1, 3])?])
}

fn resource_momentum_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    check_scalar(cx, 2)?;
    check_scalar(cx, 4)?;
    Ok(vec![])
}

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    let t = format!("T: {{{NUMBER_TYPES}}}");
    for o in &OPTIMIZERS {
        for resource in [false, true] {
            let name = if resource {
                format!("ResourceApply{}", o.op)
            } else {
                format!("Apply{}", o.op)
            };
            let var_type = if resource { "resource" } else { "Ref(T)" };
            let mut def = OpDef::build(&name).input(&format!("var: {var_type}"));
            for s in o.slots {
                def = def.input(&format!("{s}: {var_type}"));
            }
            for s in o.tensors {
                def = def.input(&format!("{s}: T"));
            }
            if !resource {
                def = def.output("out: Ref(T)");
            }
            def = def.attr(&t).attr("use_locking: bool = false");
            for a in o.extra_attrs {
                def = def.attr(a);
            }
            let shape_fn = if resource {
                o.resource_shape
            } else {
                o.ref_shape
            };
            r.register(def.stateful().shape_fn(shape_fn))?;
        }
    }
    Ok(())
}

/// Adam's scalar hyper-parameters (each a scalar of the variable's dtype).
#[derive(Debug, Clone, Copy)]
pub struct AdamParams {
    pub beta1_power: Output,
    pub beta2_power: Output,
    pub lr: Output,
    pub beta1: Output,
    pub beta2: Output,
    pub epsilon: Output,
}

/// RMSProp's scalar hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct RmsPropParams {
    pub lr: Output,
    pub rho: Output,
    pub momentum: Output,
    pub epsilon: Output,
}

impl Builder {
    /// `ApplyGradientDescent`: `var -= alpha * delta`; returns the variable's reference.
    pub fn apply_gradient_descent(
        &self,
        var: Output,
        alpha: Output,
        delta: Output,
    ) -> Result<Output> {
        self.op("ApplyGradientDescent")
            .input(var)
            .input(alpha)
            .input(delta)
            .build_output()
    }

    /// `ApplyMomentum`: `accum = accum * momentum + grad; var -= lr * accum` (or the
    /// Nesterov form).
    pub fn apply_momentum(
        &self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
        momentum: Output,
        use_nesterov: bool,
    ) -> Result<Output> {
        self.op("ApplyMomentum")
            .input(var)
            .input(accum)
            .input(lr)
            .input(grad)
            .input(momentum)
            .attr("use_nesterov", use_nesterov)
            .build_output()
    }

    /// `ApplyAdam` on `var` with moment slots `m` and `v`.
    pub fn apply_adam(
        &self,
        var: Output,
        m: Output,
        v: Output,
        p: &AdamParams,
        grad: Output,
    ) -> Result<Output> {
        self.adam("ApplyAdam", var, m, v, p, grad).build_output()
    }

    /// `ApplyRMSProp` on `var` with slots `ms` and `mom`.
    pub fn apply_rms_prop(
        &self,
        var: Output,
        ms: Output,
        mom: Output,
        p: &RmsPropParams,
        grad: Output,
    ) -> Result<Output> {
        self.rms_prop("ApplyRMSProp", var, ms, mom, p, grad)
            .build_output()
    }

    /// `ApplyAdagrad`: `accum += grad^2; var -= lr * grad / sqrt(accum)`.
    pub fn apply_adagrad(
        &self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
    ) -> Result<Output> {
        self.op("ApplyAdagrad")
            .input(var)
            .input(accum)
            .input(lr)
            .input(grad)
            .build_output()
    }

    /// `ResourceApplyGradientDescent` on a resource variable's handle.
    pub fn resource_apply_gradient_descent(
        &self,
        var: Output,
        alpha: Output,
        delta: Output,
    ) -> Result<NodeId> {
        self.op("ResourceApplyGradientDescent")
            .input(var)
            .input(alpha)
            .input(delta)
            .build()
    }

    /// `ResourceApplyMomentum` on resource handles `var` and `accum`.
    pub fn resource_apply_momentum(
        &self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
        momentum: Output,
        use_nesterov: bool,
    ) -> Result<NodeId> {
        self.op("ResourceApplyMomentum")
            .input(var)
            .input(accum)
            .input(lr)
            .input(grad)
            .input(momentum)
            .attr("use_nesterov", use_nesterov)
            .build()
    }

    /// `ResourceApplyAdam` on resource handles `var`, `m` and `v`.
    pub fn resource_apply_adam(
        &self,
        var: Output,
        m: Output,
        v: Output,
        p: &AdamParams,
        grad: Output,
    ) -> Result<NodeId> {
        self.adam("ResourceApplyAdam", var, m, v, p, grad).build()
    }

    /// `ResourceApplyRMSProp` on resource handles `var`, `ms` and `mom`.
    pub fn resource_apply_rms_prop(
        &self,
        var: Output,
        ms: Output,
        mom: Output,
        p: &RmsPropParams,
        grad: Output,
    ) -> Result<NodeId> {
        self.rms_prop("ResourceApplyRMSProp", var, ms, mom, p, grad)
            .build()
    }

    /// `ResourceApplyAdagrad` on resource handles `var` and `accum`.
    pub fn resource_apply_adagrad(
        &self,
        var: Output,
        accum: Output,
        lr: Output,
        grad: Output,
    ) -> Result<NodeId> {
        self.op("ResourceApplyAdagrad")
            .input(var)
            .input(accum)
            .input(lr)
            .input(grad)
            .build()
    }

    fn adam(
        &self,
        op: &str,
        var: Output,
        m: Output,
        v: Output,
        p: &AdamParams,
        grad: Output,
    ) -> crate::NodeBuilder<'_> {
        self.op(op)
            .input(var)
            .input(m)
            .input(v)
            .input(p.beta1_power)
            .input(p.beta2_power)
            .input(p.lr)
            .input(p.beta1)
            .input(p.beta2)
            .input(p.epsilon)
            .input(grad)
    }

    fn rms_prop(
        &self,
        op: &str,
        var: Output,
        ms: Output,
        mom: Output,
        p: &RmsPropParams,
        grad: Output,
    ) -> crate::NodeBuilder<'_> {
        self.op(op)
            .input(var)
            .input(ms)
            .input(mom)
            .input(p.lr)
            .input(p.rho)
            .input(p.momentum)
            .input(p.epsilon)
            .input(grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType};

    fn t() -> rill_graph::Attrs {
        attrs(&[("T", DType::F32.into())])
    }

    #[test]
    fn definitions_follow_tensorflow() {
        let r = crate::registry();
        let names = |op: &str| -> Vec<String> {
            r.lookup(op)
                .unwrap()
                .inputs
                .iter()
                .map(|a| a.name.clone())
                .collect()
        };
        assert_eq!(
            names("ApplyMomentum"),
            ["var", "accum", "lr", "grad", "momentum"]
        );
        assert_eq!(
            names("ResourceApplyAdam"),
            [
                "var",
                "m",
                "v",
                "beta1_power",
                "beta2_power",
                "lr",
                "beta1",
                "beta2",
                "epsilon",
                "grad"
            ]
        );
        assert_eq!(
            names("ApplyRMSProp"),
            ["var", "ms", "mom", "lr", "rho", "momentum", "epsilon", "grad"]
        );
        let gd = r.lookup("ApplyGradientDescent").unwrap();
        assert!(gd.is_stateful && gd.inputs[0].is_ref && gd.outputs[0].is_ref);
        assert_eq!(
            gd.attr("use_locking").unwrap().default,
            Some(AttrValue::Bool(false))
        );
        let adagrad = r.lookup("ResourceApplyAdagrad").unwrap();
        assert!(adagrad.outputs.is_empty());
        assert_eq!(
            adagrad.attr("update_slots").unwrap().default,
            Some(AttrValue::Bool(true))
        );
        assert!(r
            .lookup("ApplyAdam")
            .unwrap()
            .attr("use_nesterov")
            .is_some());
    }

    #[test]
    fn shapes() {
        assert_eq!(
            infer("ApplyGradientDescent", &t(), "[5,8];[];[5,8]").unwrap(),
            "[5,8]"
        );
        assert_eq!(
            infer("ApplyGradientDescent", &t(), "[5,?];[];[?,8]").unwrap(),
            "[5,8]"
        );
        let e = infer("ApplyGradientDescent", &t(), "[5,8];[];[8,5]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[8,5]"),
            "{e}"
        );
        assert!(infer("ApplyGradientDescent", &t(), "[5,8];[1];[5,8]").is_err());
        assert_eq!(
            infer("ApplyMomentum", &t(), "[3];[3];[];[?];[]").unwrap(),
            "[3]"
        );
        assert!(infer("ApplyMomentum", &t(), "[3];[4];[];[3];[]").is_err());
        assert!(infer("ApplyMomentum", &t(), "[3];[3];[];[3];[2]").is_err());
        assert_eq!(
            infer("ApplyAdam", &t(), "[3];[3];[3];[];[];[];[];[];[];[3]").unwrap(),
            "[3]"
        );
        assert!(infer("ApplyAdam", &t(), "[3];[3];[3];[];[];[];[];[];[2];[3]").is_err());
        assert_eq!(
            infer("ApplyRMSProp", &t(), "[3];[3];[3];[];[];[];[];?").unwrap(),
            "[3]"
        );
        assert_eq!(infer("ApplyAdagrad", &t(), "[3];?;[];[3]").unwrap(), "[3]");
        assert_eq!(
            infer("ResourceApplyGradientDescent", &t(), "[];[];[5,8]").unwrap(),
            ""
        );
        assert!(infer("ResourceApplyGradientDescent", &t(), "[];[2];[5,8]").is_err());
        assert_eq!(
            infer("ResourceApplyMomentum", &t(), "[];[];[];[3];[]").unwrap(),
            ""
        );
        let s = attrs(&[("T", DType::String.into())]);
        assert!(infer("ApplyGradientDescent", &s, "[3];[];[3]").is_err());
    }

    #[test]
    fn builder_sgd_step() {
        let b = Builder::new();
        let w = b.variable("w", DType::F32, [5i64, 8]).unwrap();
        let lr = b.scalar_f32(0.2).unwrap();
        let g = b.placeholder("g", DType::F32, [5i64, 8]).unwrap();
        let step = b.apply_gradient_descent(w, lr, g).unwrap();
        assert_eq!(b.shape(step).to_string(), "[5,8]");
        let acc = b.variable("acc", DType::F32, [5i64, 8]).unwrap();
        let mom = b.apply_momentum(w, acc, lr, g, lr, true).unwrap();
        assert_eq!(b.shape(mom).to_string(), "[5,8]");
        let p = AdamParams {
            beta1_power: lr,
            beta2_power: lr,
            lr,
            beta1: lr,
            beta2: lr,
            epsilon: lr,
        };
        assert_eq!(
            b.shape(b.apply_adam(w, acc, acc, &p, g).unwrap())
                .to_string(),
            "[5,8]"
        );
        let rp = RmsPropParams {
            lr,
            rho: lr,
            momentum: lr,
            epsilon: lr,
        };
        assert_eq!(
            b.shape(b.apply_rms_prop(w, acc, acc, &rp, g).unwrap())
                .to_string(),
            "[5,8]"
        );
        assert_eq!(
            b.shape(b.apply_adagrad(w, acc, lr, g).unwrap()).to_string(),
            "[5,8]"
        );
        let bad = b.placeholder("bad", DType::F32, [8i64, 5]).unwrap();
        assert!(b.apply_gradient_descent(w, lr, bad).is_err());
    }

    #[test]
    fn builder_resource_forms() {
        let b = Builder::new();
        let h = b.var_handle("v", DType::F32, [3i64]).unwrap();
        let lr = b.scalar_f32(0.1).unwrap();
        let g = b.placeholder("g", DType::F32, [3i64]).unwrap();
        let id = b.resource_apply_gradient_descent(h, lr, g).unwrap();
        assert_eq!(b.graph().node(id).num_outputs(), 0);
        b.resource_apply_momentum(h, h, lr, g, lr, false).unwrap();
        let p = AdamParams {
            beta1_power: lr,
            beta2_power: lr,
            lr,
            beta1: lr,
            beta2: lr,
            epsilon: lr,
        };
        b.resource_apply_adam(h, h, h, &p, g).unwrap();
        let rp = RmsPropParams {
            lr,
            rho: lr,
            momentum: lr,
            epsilon: lr,
        };
        b.resource_apply_rms_prop(h, h, h, &rp, g).unwrap();
        b.resource_apply_adagrad(h, h, lr, g).unwrap();
    }
}
