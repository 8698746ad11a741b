//! The epilogue of `_FusedMatMul` and `_FusedConv2D`: what their `fused_ops` do to the
//! contraction's output, applied to blocks of whole output rows right after the GEMM
//! wrote them (while they are in cache).
//!
//! Supported `fused_ops` (TensorFlow's names): `["BiasAdd"]`, `["BiasAdd", A]`,
//! `["BiasAdd", "Add"]` and `["BiasAdd", "Add", A]` with `A` one of `Relu`, `Relu6`,
//! `Elu`, `LeakyRelu` (slope `leakyrelu_alpha`), `Tanh`, `Sigmoid`; `args` holds the bias
//! and, with `Add`, the tensor added (of the output's shape). Anything else is
//! InvalidArgument naming the `fused_ops`.
//!
//! Invariants: each step uses the unfused kernels' per-element function (`BiasAdd` and
//! `Add` are `AddV2`'s functor, activations the fused elementwise table's), in the unfused
//! order, rounding to the storage precision after every step (f16/bf16), so results equal
//! the unfused ops applied to the same GEMM output.

use rill_graph::{Error, Node, Result};

use super::lane::Lane;
use super::program::{leaky_relu, unary_in_place, Un};
use crate::cpu::math::binary::{op::AddV2, BinaryOp};
use crate::cpu::math::num::Float;
use crate::cpu::math::util::{attr_float, attr_int};

/// The activation ending a fused contraction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Act {
    Un(Un),
    LeakyRelu(f32),
}

/// A parsed, supported `fused_ops`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FusedOps {
    /// `Add` of a second argument after the bias.
    pub add: bool,
    pub act: Option<Act>,
}

impl FusedOps {
    /// Reads `fused_ops`, `num_args` and `leakyrelu_alpha` of a fused contraction node.
    pub fn parse(node: &Node) -> Result<FusedOps> {
        let op = node.op_name();
        let names: Vec<String> = node
            .attr("fused_ops")
            .and_then(|v| v.as_string_list())
            .unwrap_or(&[])
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        let unsupported = || {
            Error::invalid_argument(format!(
                "{op}: unsupported fused_ops {names:?}; supported: [\"BiasAdd\"], \
                 [\"BiasAdd\", A], [\"BiasAdd\", \"Add\"], [\"BiasAdd\", \"Add\", A] with A in \
                 Relu, Relu6, Elu, LeakyRelu, Tanh, Sigmoid"
            ))
        };
        let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
        let (add, act_name) = match names_ref.as_slice() {
            ["BiasAdd"] => (false, None),
            ["BiasAdd", "Add"] => (true, None),
            ["BiasAdd", "Add", a] => (true, Some(*a)),
            ["BiasAdd", a] => (false, Some(*a)),
            _ => return Err(unsupported()),
        };
        let act = match act_name {
            None => None,
            Some("Relu") => Some(Act::Un(Un::Relu)),
            Some("Relu6") => Some(Act::Un(Un::Relu6)),
            Some("Elu") => Some(Act::Un(Un::Elu)),
            Some("Tanh") => Some(Act::Un(Un::Tanh)),
            Some("Sigmoid") => Some(Act::Un(Un::Sigmoid)),
            Some("LeakyRelu") => Some(Act::LeakyRelu(attr_float(node, "leakyrelu_alpha", 0.2)?)),
            Some(_) => return Err(unsupported()),
        };
        let want = 1 + add as i64;
        let num_args = attr_int(node, "num_args", want)?;
        if num_args != want {
            return Err(Error::invalid_argument(format!(
                "{op} with fused_ops {names:?} takes {want} args, but num_args is {num_args}"
            )));
        }
        Ok(FusedOps { add, act })
    }

    /// How many `args` inputs the node has.
    pub fn num_args(&self) -> usize {
        1 + self.add as usize
    }
}

/// The steps after the GEMM, over output rows of `bias.len()` values.
pub(crate) struct Epilogue<'a, C> {
    pub bias: &'a [C],
    /// With `Add`: the whole output-shaped tensor added, row-major like the output.
    pub side: Option<&'a [C]>,
    pub act: Option<Act>,
    /// Rounds to the storage precision (a no-op for f32/f64).
    pub round: fn(&mut [C]),
}

impl<C: Float> Epilogue<'_, C> {
    /// Applies the steps to output rows `first_row..` held in `block` (whole rows).
    pub fn apply(&self, first_row: usize, block: &mut [C]) {
        let n = self.bias.len();
        if n == 0 || block.is_empty() {
            return;
        }
        // The GEMM's own output is rounded first (halves computed in f32 are narrowed by
        // the unfused kernel before BiasAdd reads them).
        (self.round)(block);
        for row in block.chunks_mut(n) {
            for (v, &b) in row.iter_mut().zip(self.bias) {
                *v = AddV2::float(*v, b);
            }
        }
        (self.round)(block);
        if let Some(side) = self.side {
            let side = &side[first_row * n..first_row * n + block.len()];
            for (v, &s) in block.iter_mut().zip(side) {
                *v = AddV2::float(*v, s);
            }
            (self.round)(block);
        }
        match self.act {
            None => {}
            Some(Act::Un(u)) => unary_in_place(u, block),
            Some(Act::LeakyRelu(alpha)) => {
                let alpha = C::from_f64(alpha as f64);
                block.iter_mut().for_each(|v| *v = leaky_relu(*v, alpha));
            }
        }
        (self.round)(block);
    }

    /// [`Epilogue::apply`] on rows stored as `S`, widened a few rows at a time into a
    /// small scratch when `S` is not computed natively.
    pub fn apply_stored<S: Lane<C = C>>(&self, first_row: usize, block: &mut [S]) {
        if let Some(v) = S::direct_mut(block) {
            self.apply(first_row, v);
            return;
        }
        let n = self.bias.len().max(1);
        let rows = (4096 / n).max(1);
        let mut scratch = vec![C::ZERO; rows * n];
        for (i, chunk) in block.chunks_mut(rows * n).enumerate() {
            let s = &mut scratch[..chunk.len()];
            S::widen(chunk, s);
            self.apply(first_row + i * rows, s);
            S::narrow(s, chunk);
        }
    }
}
