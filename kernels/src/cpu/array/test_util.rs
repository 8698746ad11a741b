//! Test helpers for the array kernels: run one op's CPU kernel on a hand-built node.
//!
//! Invariant: the node is built directly (an `OpDef` with no args), so these helpers do not
//! depend on the op definitions in `rill-ops`; the kernel sees exactly the attrs given.

use std::sync::Arc;

use rill_graph::{AttrValue, Code, Node, NodeExtras, OpDef, Result, Tensor};

use crate::{DeviceType, KernelContext, KernelRegistry};

/// A node of `op` with `attrs`, typed by its inputs.
pub(crate) fn node(op: &str, attrs: &[(&str, AttrValue)], inputs: &[Tensor]) -> Node {
    Node {
        name: format!("test_{op}"),
        op: Arc::new(OpDef::build(op).finish().expect("bare op def")),
        inputs: vec![],
        control_inputs: vec![],
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        requested_device: Default::default(),
        assigned_device: None,
        input_types: inputs.iter().map(Tensor::dtype).collect(),
        output_types: vec![],
        output_shapes: vec![],
        extras: NodeExtras::default(),
    }
}

/// Creates `op`'s CPU kernel from `attrs` and computes it on `inputs`.
pub(crate) fn run(
    op: &str,
    attrs: &[(&str, AttrValue)],
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    let mut r = KernelRegistry::new();
    super::register(&mut r);
    let n = node(op, attrs, &inputs);
    let kernel = r.create(&n, DeviceType::Cpu)?;
    kernel.compute(
        &KernelContext::new(&n.name, &crate::ResourceMgr::new()),
        inputs,
    )
}

/// [`run`] for an op with one output.
pub(crate) fn run1(op: &str, attrs: &[(&str, AttrValue)], inputs: Vec<Tensor>) -> Result<Tensor> {
    let mut out = run(op, attrs, inputs)?;
    assert_eq!(out.len(), 1, "{op} should have one output");
    Ok(out.remove(0))
}

/// The error code and message of a failing run.
pub(crate) fn run_err(
    op: &str,
    attrs: &[(&str, AttrValue)],
    inputs: Vec<Tensor>,
) -> (Code, String) {
    match run(op, attrs, inputs) {
        Ok(out) => panic!("{op} should fail, got {out:?}"),
        Err(e) => (e.code, e.message),
    }
}

/// An f32 tensor.
pub(crate) fn f(dims: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(dims, v.to_vec()).expect("valid test tensor")
}

/// An i32 tensor.
pub(crate) fn i(dims: &[usize], v: &[i32]) -> Tensor {
    Tensor::new(dims, v.to_vec()).expect("valid test tensor")
}

/// An i64 tensor.
pub(crate) fn l(dims: &[usize], v: &[i64]) -> Tensor {
    Tensor::new(dims, v.to_vec()).expect("valid test tensor")
}

/// An i32 tensor `0..n` of shape `dims`.
pub(crate) fn iota(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::new(dims, (0..n as i32).collect::<Vec<_>>()).expect("valid test tensor")
}

/// The i32 values of a tensor with its dims.
pub(crate) fn ints(t: &Tensor) -> (Vec<usize>, Vec<i32>) {
    (
        t.dims().to_vec(),
        t.as_slice::<i32>().expect("int32 tensor").to_vec(),
    )
}

/// The f32 values of a tensor with its dims.
pub(crate) fn floats(t: &Tensor) -> (Vec<usize>, Vec<f32>) {
    (
        t.dims().to_vec(),
        t.as_slice::<f32>().expect("float tensor").to_vec(),
    )
}

/// The i64 values of a tensor with its dims.
pub(crate) fn longs(t: &Tensor) -> (Vec<usize>, Vec<i64>) {
    (
        t.dims().to_vec(),
        t.as_slice::<i64>().expect("int64 tensor").to_vec(),
    )
}
