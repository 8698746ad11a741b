//! Test helpers for the math and nn kernels: build a [`Node`] directly (no op registry
//! needed), create its kernel from the math+nn registrations and run it once.
//!
//! Invariant: `T` defaults to the first input's dtype, as graph construction would infer.

use std::sync::Arc;

use rill_graph::{AttrValue, Attrs, DType, Node, NodeExtras, OpDef, Result, Tensor};

use crate::{DeviceType, KernelContext, KernelRegistry};

/// A node of op `op` with `attrs`; `T` is set from `inputs[0]` unless given.
pub(crate) fn node(op: &str, attrs: &[(&str, AttrValue)], inputs: &[Tensor]) -> Node {
    let mut map: Attrs = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if let Some(first) = inputs.first() {
        map.entry("T".to_string())
            .or_insert(AttrValue::Type(first.dtype()));
    }
    Node {
        name: format!("test_{op}"),
        op: Arc::new(
            OpDef::build(op)
                .finish()
                .expect("a bare op definition is valid"),
        ),
        inputs: vec![],
        control_inputs: vec![],
        attrs: map,
        requested_device: Default::default(),
        assigned_device: None,
        input_types: inputs.iter().map(Tensor::dtype).collect(),
        output_types: vec![],
        output_shapes: vec![],
        extras: NodeExtras::default(),
    }
}

/// Creates `op`'s kernel for a node with `attrs` and runs it on `inputs`.
pub(crate) fn run(
    op: &str,
    attrs: &[(&str, AttrValue)],
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>> {
    let mut r = KernelRegistry::new();
    super::register(&mut r);
    crate::cpu::nn::register(&mut r);
    let n = node(op, attrs, &inputs);
    let kernel = r.create(&n, DeviceType::Cpu)?;
    kernel.compute(
        &KernelContext::new(&n.name, &crate::ResourceMgr::new()),
        inputs,
    )
}

/// [`run`] for a single-output op, unwrapping.
pub(crate) fn run1(op: &str, attrs: &[(&str, AttrValue)], inputs: Vec<Tensor>) -> Tensor {
    let mut out = run(op, attrs, inputs).unwrap_or_else(|e| panic!("{op}: {e}"));
    assert_eq!(out.len(), 1, "{op} returned {} outputs", out.len());
    out.remove(0)
}

/// An f32 tensor.
pub(crate) fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(dims, v.to_vec()).expect("test tensor")
}

/// An i32 tensor.
pub(crate) fn i32s(dims: &[usize], v: &[i32]) -> Tensor {
    Tensor::new(dims, v.to_vec()).expect("test tensor")
}

/// Asserts `t` is f32 with dims `dims` and values within `tol` of `want`.
pub(crate) fn assert_close(t: &Tensor, dims: &[usize], want: &[f32], tol: f32) {
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(t.dims(), dims, "dims");
    let got = t.as_slice::<f32>().expect("f32");
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

/// A deterministic pseudo-random f32 vector in [-1, 1).
pub(crate) fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
