//! Optimizers in the Rust API, as TensorFlow's TF1 optimizers build them: `minimize` adds
//! the gradient graph, then `apply_gradients` (also callable with gradients computed
//! elsewhere, e.g. averaged over replicas) adds slot variables (zeros, registered as
//! initialisers), one apply op per variable (`ApplyGradientDescent`, `ApplyMomentum`,
//! `ApplyAdam`, `ApplyRMSProp`, `ApplyAdagrad`), Adam's beta-power updates, the
//! global-step increment, and a grouping `NoOp`.
//!
//! Invariants: slots are named `<var>/<Optimizer>` (and `<var>/<Optimizer>_1`), created once
//! per variable outside the update's name scope; hyper-parameters are constants of the
//! variable's dtype; every update of a step reads values from before the step's updates
//! (apply ops only run after all gradients, through data dependencies).

use rill_graph::{DType, Error, NodeId, Output, Result, Shape, Tensor};
use rill_ops::Builder;

use crate::gradients;

/// The name of the global step variable.
pub const GLOBAL_STEP: &str = "global_step";

/// The graph's `global_step` (a scalar int64 variable starting at 0), created on first use.
pub fn global_step(b: &Builder) -> Result<Output> {
    if let Some(id) = b.graph().find(GLOBAL_STEP) {
        return Ok(id.output(0));
    }
    b.variable_with_init(GLOBAL_STEP, Tensor::scalar(0i64))
}

/// One `NoOp` running every variable initialiser (`tf.global_variables_initializer`).
pub fn initializer(b: &Builder, name: &str) -> Result<NodeId> {
    b.initializer(name)
}

fn scalar(b: &Builder, dtype: DType, name: &str, v: f64) -> Result<Output> {
    let t = match dtype {
        DType::F32 => Tensor::scalar(v as f32),
        DType::F64 => Tensor::scalar(v),
        other => {
            return Err(Error::unimplemented(format!(
                "optimizers support float and double variables, not {other}"
            )))
        }
    };
    b.op("Const")
        .name(name)
        .attr("dtype", dtype)
        .attr("value", t)
        .build_output()
}

/// A slot variable shaped like `var`, filled with `init`, named
/// `<var>/<slot>` (under the caller's name scope).
fn slot(b: &Builder, var: Output, slot_name: &str, init: f64) -> Result<Output> {
    let (name, dtype, shape) = {
        let g = b.graph();
        let n = g.node(var.node);
        let shape = n
            .attr("shape")
            .and_then(|s| s.as_shape())
            .cloned()
            .unwrap_or_else(Shape::unknown);
        (n.name.clone(), g.dtype(var), shape)
    };
    let dims = shape.to_known().ok_or_else(|| {
        Error::invalid_argument(format!(
            "variable {name} needs a fully known shape for optimizer slots, has {shape}"
        ))
    })?;
    let n: usize = dims.iter().product();
    let t = match dtype {
        DType::F32 => Tensor::new(&dims, vec![init as f32; n])?,
        DType::F64 => Tensor::new(&dims, vec![init; n])?,
        other => {
            return Err(Error::unimplemented(format!(
                "optimizer slots for {other} variables"
            )))
        }
    };
    b.variable_with_init(&format!("{name}/{slot_name}"), t)
}

/// TF1's `variable.value()`: an `Identity` named `name` reading `var`, colocated with it
/// (`_class: loc:@<var>`, as TensorFlow's `Variable` builds `<var>/read`), so the read
/// happens where the variable lives and waits for whatever its control inputs wait for.
pub fn read_beside(b: &Builder, var: Output, name: &str) -> Result<Output> {
    let var_name = b.graph().node(var.node).name.clone();
    b.op("Identity")
        .name(name)
        .input(var)
        .attr(
            "_class",
            rill_graph::AttrValue::StringList(vec![format!("loc:@{var_name}").into_bytes()]),
        )
        .build_output()
}

/// A TF1 optimizer.
pub trait Optimizer {
    /// TensorFlow's name of the optimizer (slot names and scopes).
    fn name(&self) -> &str;

    /// Creates this optimizer's slots for `var` (called once per variable, before any
    /// update is built).
    fn slots(&self, b: &Builder, var: Output) -> Result<Vec<Output>>;

    /// The update op of `var` given its gradient and slots.
    fn apply(&self, b: &Builder, var: Output, grad: Output, slots: &[Output]) -> Result<NodeId>;

    /// Ops that run once per step after every update (Adam's beta powers).
    fn finish(&self, _b: &Builder, _updates: &[NodeId]) -> Result<Vec<NodeId>> {
        Ok(vec![])
    }

    /// Adds the gradients of `loss` with respect to `vars` (TF1 `VariableV2` outputs) and
    /// their updates; returns the `NoOp` named `name` that runs one training step and
    /// increments the global step when the graph has one.
    fn minimize(&self, b: &Builder, loss: Output, vars: &[Output], name: &str) -> Result<NodeId> {
        let grads = gradients(b, &[loss], vars, None)?;
        let grads_and_vars = vars
            .iter()
            .zip(grads)
            .map(|(&var, grad)| {
                let grad = grad.ok_or_else(|| {
                    let g = b.graph();
                    Error::invalid_argument(format!(
                        "no gradient for variable {}: the loss does not depend on it",
                        g.node(var.node).name
                    ))
                })?;
                Ok((grad, var))
            })
            .collect::<Result<Vec<_>>>()?;
        self.apply_gradients(b, &grads_and_vars, name)
    }

    /// The update half of [`Optimizer::minimize`] with gradients computed elsewhere (e.g.
    /// averaged over replicas): `(gradient, variable)` pairs, as TensorFlow's
    /// `apply_gradients`. Creates the slots, one apply op per variable (each waiting for
    /// every gradient), the optimizer's [`Optimizer::finish`] ops and the global-step
    /// increment; returns the `NoOp` named `name` grouping them.
    fn apply_gradients(
        &self,
        b: &Builder,
        grads_and_vars: &[(Output, Output)],
        name: &str,
    ) -> Result<NodeId> {
        // Every update waits for every gradient: gradients are taken at the values the
        // forward pass read, whatever order the executor picks (a variable is read when
        // its consumer runs, so an early update would leak into another gradient).
        let grad_nodes: Vec<NodeId> = grads_and_vars.iter().map(|(g, _)| g.node).collect();
        let slots = grads_and_vars
            .iter()
            .map(|&(_, v)| self.slots(b, v))
            .collect::<Result<Vec<_>>>()?;
        let _after_gradients = b.control_dependencies(&grad_nodes);
        let scope = b.name_scope(name);
        let mut updates = Vec::with_capacity(grads_and_vars.len());
        for (&(grad, var), slots) in grads_and_vars.iter().zip(&slots) {
            updates.push(self.apply(b, var, grad, slots)?);
        }
        let mut group = updates.clone();
        group.extend(self.finish(b, &updates)?);
        if b.graph().find(GLOBAL_STEP).is_some() {
            let step = global_step(b)?;
            let one = b
                .op("Const")
                .name("one")
                .attr("dtype", DType::I64)
                .attr("value", Tensor::scalar(1i64))
                .build_output()?;
            let mut inc = b
                .op("AssignAdd")
                .name("increment_global_step")
                .input(step)
                .input(one);
            for &u in &group {
                inc = inc.control_input(u);
            }
            group.push(inc.build()?);
        }
        drop(scope);
        let mut op = b.op("NoOp").name(name);
        for id in group {
            op = op.control_input(id);
        }
        op.build()
    }
}

/// Plain gradient descent: `var -= lr * grad`.
pub struct Sgd {
    pub learning_rate: f64,
}

impl Optimizer for Sgd {
    fn name(&self) -> &str {
        "GradientDescent"
    }
    fn slots(&self, _b: &Builder, _var: Output) -> Result<Vec<Output>> {
        Ok(vec![])
    }
    fn apply(&self, b: &Builder, var: Output, grad: Output, _slots: &[Output]) -> Result<NodeId> {
        let lr = scalar(b, b.dtype(grad), "learning_rate", self.learning_rate)?;
        b.op("ApplyGradientDescent")
            .input(var)
            .input(lr)
            .input(grad)
            .build()
    }
}

/// Momentum (optionally Nesterov).
pub struct Momentum {
    pub learning_rate: f64,
    pub momentum: f64,
    pub nesterov: bool,
}

impl Optimizer for Momentum {
    fn name(&self) -> &str {
        "Momentum"
    }
    fn slots(&self, b: &Builder, var: Output) -> Result<Vec<Output>> {
        Ok(vec![slot(b, var, "Momentum", 0.0)?])
    }
    fn apply(&self, b: &Builder, var: Output, grad: Output, slots: &[Output]) -> Result<NodeId> {
        let dtype = b.dtype(grad);
        let lr = scalar(b, dtype, "learning_rate", self.learning_rate)?;
        let m = scalar(b, dtype, "momentum", self.momentum)?;
        b.op("ApplyMomentum")
            .input(var)
            .input(slots[0])
            .input(lr)
            .input(grad)
            .input(m)
            .attr("use_nesterov", self.nesterov)
            .build()
    }
}

/// Adam (Kingma & Ba), with TensorFlow's epsilon placement.
pub struct Adam {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Prefix of the beta-power variables' names: empty gives TF1's `beta1_power` and
    /// `beta2_power`, one pair per graph; in-graph replicas that each apply their own
    /// update need a pair each (`replica_1/beta1_power`), or every replica's step would
    /// advance the shared pair.
    pub powers_prefix: String,
}

impl Default for Adam {
    fn default() -> Adam {
        Adam {
            learning_rate: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            powers_prefix: String::new(),
        }
    }
}

impl Adam {
    /// The names of the beta-power variables.
    fn power_names(&self) -> [String; 2] {
        ["beta1_power", "beta2_power"].map(|n| format!("{}{n}", self.powers_prefix))
    }

    /// The values of the `beta1_power`/`beta2_power` variables (one pair per graph, or per
    /// [`Adam::powers_prefix`], as TF1), read once per step through `<power>/read`: the apply ops take them as
    /// plain tensors, so variables on other devices (ps tasks) need not colocate with them.
    fn powers(&self, b: &Builder, dtype: DType) -> Result<(Output, Output)> {
        let get = |name: &str, init: f64| -> Result<Output> {
            let read = format!("{name}/read");
            let existing = b.graph().find(&read);
            if let Some(id) = existing {
                return Ok(id.output(0));
            }
            let existing = b.graph().find(name);
            let var = match existing {
                Some(id) => id.output(0),
                None => {
                    let t = if dtype == DType::F64 {
                        Tensor::scalar(init)
                    } else {
                        Tensor::scalar(init as f32)
                    };
                    b.variable_with_init(name, t)?
                }
            };
            read_beside(b, var, &read)
        };
        let [p1, p2] = self.power_names();
        Ok((get(&p1, self.beta1)?, get(&p2, self.beta2)?))
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &str {
        "Adam"
    }
    fn slots(&self, b: &Builder, var: Output) -> Result<Vec<Output>> {
        let (p1, p2) = self.powers(b, b.dtype(var))?;
        Ok(vec![
            slot(b, var, "Adam", 0.0)?,
            slot(b, var, "Adam_1", 0.0)?,
            p1,
            p2,
        ])
    }
    fn apply(&self, b: &Builder, var: Output, grad: Output, slots: &[Output]) -> Result<NodeId> {
        let dtype = b.dtype(grad);
        b.op("ApplyAdam")
            .input(var)
            .input(slots[0])
            .input(slots[1])
            .input(slots[2])
            .input(slots[3])
            .input(scalar(b, dtype, "learning_rate", self.learning_rate)?)
            .input(scalar(b, dtype, "beta1", self.beta1)?)
            .input(scalar(b, dtype, "beta2", self.beta2)?)
            .input(scalar(b, dtype, "epsilon", self.epsilon)?)
            .input(grad)
            .build()
    }
    fn finish(&self, b: &Builder, updates: &[NodeId]) -> Result<Vec<NodeId>> {
        let powers: Vec<(Output, f64)> = {
            let g = b.graph();
            self.power_names()
                .iter()
                .zip([self.beta1, self.beta2])
                .filter_map(|(n, beta)| g.find(n).map(|id| (id.output(0), beta)))
                .collect()
        };
        let mut ops = vec![];
        for (p, beta) in powers {
            let beta = scalar(b, b.dtype(p), "beta", beta)?;
            let next = b.mul(p, beta)?;
            let mut assign = b.op("Assign").input(p).input(next);
            for &u in updates {
                assign = assign.control_input(u);
            }
            ops.push(assign.build()?);
        }
        Ok(ops)
    }
}

/// RMSProp as TensorFlow's `ApplyRMSProp`.
pub struct RmsProp {
    pub learning_rate: f64,
    pub decay: f64,
    pub momentum: f64,
    pub epsilon: f64,
}

impl Optimizer for RmsProp {
    fn name(&self) -> &str {
        "RMSProp"
    }
    fn slots(&self, b: &Builder, var: Output) -> Result<Vec<Output>> {
        // TF1 initialises the mean square to ones.
        Ok(vec![
            slot(b, var, "RMSProp", 1.0)?,
            slot(b, var, "RMSProp_1", 0.0)?,
        ])
    }
    fn apply(&self, b: &Builder, var: Output, grad: Output, slots: &[Output]) -> Result<NodeId> {
        let dtype = b.dtype(grad);
        b.op("ApplyRMSProp")
            .input(var)
            .input(slots[0])
            .input(slots[1])
            .input(scalar(b, dtype, "learning_rate", self.learning_rate)?)
            .input(scalar(b, dtype, "decay", self.decay)?)
            .input(scalar(b, dtype, "momentum", self.momentum)?)
            .input(scalar(b, dtype, "epsilon", self.epsilon)?)
            .input(grad)
            .build()
    }
}

/// Adagrad.
pub struct Adagrad {
    pub learning_rate: f64,
    pub initial_accumulator: f64,
}

impl Optimizer for Adagrad {
    fn name(&self) -> &str {
        "Adagrad"
    }
    fn slots(&self, b: &Builder, var: Output) -> Result<Vec<Output>> {
        Ok(vec![slot(b, var, "Adagrad", self.initial_accumulator)?])
    }
    fn apply(&self, b: &Builder, var: Output, grad: Output, slots: &[Output]) -> Result<NodeId> {
        let lr = scalar(b, b.dtype(grad), "learning_rate", self.learning_rate)?;
        b.op("ApplyAdagrad")
            .input(var)
            .input(slots[0])
            .input(lr)
            .input(grad)
            .build()
    }
}
