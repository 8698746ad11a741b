//! Small helpers shared by the math and nn kernels: reading a node's attrs with
//! TensorFlow's defaults, taking a fixed number of inputs, normalising axes, and the
//! dtype-dispatch macros.
//!
//! Invariants: a missing attr yields the op definition's default (so kernels work on nodes
//! whose attrs were not completed); an attr of the wrong type is InvalidArgument.

use rill_graph::{AttrValue, DType, Error, Node, Result, Tensor};

fn wrong_type(node: &Node, name: &str, want: &str, got: &AttrValue) -> Error {
    Error::invalid_argument(format!(
        "attr '{name}' of {} must be {want}, got {}",
        node.op_name(),
        got.type_name()
    ))
}

pub(crate) fn attr_bool(node: &Node, name: &str, default: bool) -> Result<bool> {
    match node.attr(name) {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| wrong_type(node, name, "a bool", v)),
    }
}

pub(crate) fn attr_int(node: &Node, name: &str, default: i64) -> Result<i64> {
    match node.attr(name) {
        None => Ok(default),
        Some(v) => v
            .as_int()
            .ok_or_else(|| wrong_type(node, name, "an int", v)),
    }
}

pub(crate) fn attr_float(node: &Node, name: &str, default: f32) -> Result<f32> {
    match node.attr(name) {
        None => Ok(default),
        Some(v) => v
            .as_float()
            .ok_or_else(|| wrong_type(node, name, "a float", v)),
    }
}

pub(crate) fn attr_type(node: &Node, name: &str, default: DType) -> Result<DType> {
    match node.attr(name) {
        None => Ok(default),
        Some(v) => v
            .as_type()
            .ok_or_else(|| wrong_type(node, name, "a type", v)),
    }
}

pub(crate) fn attr_str(node: &Node, name: &str, default: &str) -> Result<String> {
    match node.attr(name) {
        None => Ok(default.to_string()),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| wrong_type(node, name, "a string", v)),
    }
}

/// An int-list attr, or `None` when absent.
pub(crate) fn attr_ints(node: &Node, name: &str) -> Result<Option<Vec<i64>>> {
    match node.attr(name) {
        None => Ok(None),
        Some(v) => v
            .as_int_list()
            .map(|l| Some(l.to_vec()))
            .ok_or_else(|| wrong_type(node, name, "a list of ints", v)),
    }
}

/// Exactly `N` inputs, or InvalidArgument.
pub(crate) fn take<const N: usize>(op: &str, inputs: Vec<Tensor>) -> Result<[Tensor; N]> {
    let n = inputs.len();
    inputs
        .try_into()
        .map_err(|_| Error::invalid_argument(format!("{op} expects {N} inputs, got {n}")))
}

/// An axis in `[-rank, rank)` mapped into `[0, rank)`.
pub(crate) fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(Error::invalid_argument(format!(
            "{what} {axis} is out of range for a tensor of rank {rank} (must be in [{}, {r}))",
            -r
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// A scalar (or one-element) integer tensor as i64.
pub(crate) fn scalar_i64(t: &Tensor, what: &str) -> Result<i64> {
    match t.to_i64_vec()?.as_slice() {
        [v] => Ok(*v),
        _ => Err(Error::invalid_argument(format!(
            "{what} must be a scalar, got shape {}",
            t.shape()
        ))),
    }
}

/// Runs `$body` with `$T` bound to the Rust type of an integer dtype; `$other` otherwise.
macro_rules! match_int {
    ($dt:expr, $T:ident => $body:expr, $other:pat => $fallback:expr) => {
        match $dt {
            rill_graph::DType::I8 => {
                type $T = i8;
                $body
            }
            rill_graph::DType::I16 => {
                type $T = i16;
                $body
            }
            rill_graph::DType::I32 => {
                type $T = i32;
                $body
            }
            rill_graph::DType::I64 => {
                type $T = i64;
                $body
            }
            rill_graph::DType::U8 => {
                type $T = u8;
                $body
            }
            rill_graph::DType::U16 => {
                type $T = u16;
                $body
            }
            rill_graph::DType::U32 => {
                type $T = u32;
                $body
            }
            rill_graph::DType::U64 => {
                type $T = u64;
                $body
            }
            $other => $fallback,
        }
    };
}
pub(crate) use match_int;

/// Runs `$body` with `$T` bound to f32 or f64; `$other` otherwise.
macro_rules! match_float {
    ($dt:expr, $T:ident => $body:expr, $other:pat => $fallback:expr) => {
        match $dt {
            rill_graph::DType::F32 => {
                type $T = f32;
                $body
            }
            rill_graph::DType::F64 => {
                type $T = f64;
                $body
            }
            $other => $fallback,
        }
    };
}
pub(crate) use match_float;

/// Runs `$body` with `$T` bound to any real-number type (floats incl. f16/bf16, ints).
macro_rules! match_real {
    ($dt:expr, $T:ident => $body:expr, $other:pat => $fallback:expr) => {
        match $dt {
            rill_graph::DType::F32 => { type $T = f32; $body }
            rill_graph::DType::F64 => { type $T = f64; $body }
            rill_graph::DType::F16 => { type $T = half::f16; $body }
            rill_graph::DType::BF16 => { type $T = half::bf16; $body }
            d => $crate::cpu::math::util::match_int!(d, $T => $body, $other => $fallback),
        }
    };
}
pub(crate) use match_real;
