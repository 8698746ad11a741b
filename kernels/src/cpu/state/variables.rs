//! TF1 reference variables: `VariableV2`/`Variable` (the variable itself), `Assign`,
//! `AssignAdd`, `AssignSub`, `IsVariableInitialized`.
//!
//! Invariant: ops with a `Ref(T)` input find their variable in
//! [`crate::KernelContext::ref_input`] (resolved when the plan is compiled), never through
//! the data they are handed; the value a variable op outputs is the value after its effect.

use std::sync::Arc;

use rill_graph::{DType, Error, Node, Result, Shape, Tensor};

use super::apply::{elementwise_update, Update};
use crate::{Kernel, KernelContext, KernelRegistry, Variable};

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("VariableV2", variable);
    r.cpu("Variable", variable);
    r.cpu("Assign", assign);
    r.cpu("AssignAdd", |n| assign_update(n, Update::Add));
    r.cpu("AssignSub", |n| assign_update(n, Update::Sub));
    r.cpu("IsVariableInitialized", |_| Ok(Box::new(IsInitialized)));
}

/// The (container, name) a variable node's resource goes by: its `shared_name`, else the
/// node name (TF1 variables and `VarHandleOp` alike).
pub(crate) fn resource_name(node: &Node) -> (String, String) {
    let shared = node
        .attr("shared_name")
        .and_then(|a| a.as_str())
        .unwrap_or("");
    let container = node
        .attr("container")
        .and_then(|a| a.as_str())
        .unwrap_or("");
    let name = if shared.is_empty() {
        node.name.as_str()
    } else {
        shared
    };
    (container.to_string(), name.to_string())
}

/// The key a resource is stored under: `container/name`, or `name` without a container.
pub(crate) fn resource_key(container: &str, name: &str) -> String {
    if container.is_empty() {
        name.to_string()
    } else {
        format!("{container}/{name}")
    }
}

/// The key of a variable node's resource (see [`resource_key`]).
pub fn variable_key(node: &Node) -> String {
    let (container, name) = resource_name(node);
    resource_key(&container, &name)
}

/// The declared dtype and shape of a variable node.
pub fn variable_spec(node: &Node) -> (DType, Shape) {
    let dtype = node
        .attr("dtype")
        .and_then(|a| a.as_type())
        .unwrap_or(DType::F32);
    let shape = node
        .attr("shape")
        .and_then(|a| a.as_shape())
        .cloned()
        .unwrap_or_default();
    (dtype, shape)
}

/// An output nobody reads: an empty tensor of the right dtype.
pub(crate) fn unread(dtype: DType) -> Result<Tensor> {
    Tensor::zeros(dtype, &[0])
}

struct VariableKernel {
    key: String,
    dtype: DType,
    shape: Shape,
}

fn variable(node: &Node) -> Result<Box<dyn Kernel>> {
    let (dtype, shape) = variable_spec(node);
    Ok(Box::new(VariableKernel {
        key: variable_key(node),
        dtype,
        shape,
    }))
}

impl Kernel for VariableKernel {
    fn compute(&self, cx: &KernelContext, _inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if !cx.output_needed(0) {
            return Ok(vec![unread(self.dtype)?]);
        }
        let var = cx.resources.variable(&self.key, self.dtype, &self.shape)?;
        Ok(vec![var.read()?])
    }
}

fn ref_var(cx: &KernelContext, i: usize) -> Result<Arc<Variable>> {
    cx.ref_input(i)
}

struct Assign {
    validate_shape: bool,
    dtype: DType,
}

fn assign(node: &Node) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Assign {
        validate_shape: node
            .attr("validate_shape")
            .and_then(|a| a.as_bool())
            .unwrap_or(true),
        dtype: node.output_types.first().copied().unwrap_or(DType::F32),
    }))
}

impl Kernel for Assign {
    fn compute(&self, cx: &KernelContext, mut inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let value = inputs
            .pop()
            .ok_or_else(|| Error::invalid_argument("Assign needs a value"))?;
        let var = ref_var(cx, 0)?;
        let out = if cx.output_needed(0) {
            value.clone()
        } else {
            unread(self.dtype)?
        };
        var.assign(value, self.validate_shape)?;
        Ok(vec![out])
    }
}

struct AssignUpdate {
    update: Update,
    dtype: DType,
}

fn assign_update(node: &Node, update: Update) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(AssignUpdate {
        update,
        dtype: node.output_types.first().copied().unwrap_or(DType::F32),
    }))
}

impl Kernel for AssignUpdate {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let value = inputs
            .get(1)
            .ok_or_else(|| Error::invalid_argument("AssignAdd/Sub needs a value"))?;
        let var = ref_var(cx, 0)?;
        let out = var.update(|t| {
            elementwise_update(t, value, self.update)?;
            Ok(t.clone())
        })?;
        Ok(vec![if cx.output_needed(0) {
            out
        } else {
            unread(self.dtype)?
        }])
    }
}

struct IsInitialized;

impl Kernel for IsInitialized {
    fn compute(&self, cx: &KernelContext, _inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(vec![Tensor::scalar(ref_var(cx, 0)?.is_initialized())])
    }
}
