//! CPU kernels of the fused ops the compiler's fusion passes create: `_FusedElementwise`
//! (a program of elementwise ops in one pass over memory), `_FusedMatMul` and
//! `_FusedConv2D` (a contraction whose `fused_ops` epilogue runs on each block of output
//! rows right after the GEMM wrote it; `gemm` decides how the GEMM is split so that it
//! can).
//!
//! Invariant: a fused kernel's result equals that of the unfused ops it replaces: the
//! same per-element functions (the elementwise tables' functors) in the same order, with
//! f16/bf16 rounded after every step as separate kernels round them.

use crate::KernelRegistry;

#[cfg(test)]
mod contraction_tests;
mod conv;
pub(crate) mod elementwise;
mod epilogue;
mod gemm;
mod jit;
#[cfg(test)]
pub(crate) mod jit_tests;
mod lane;
mod matmul;
pub(crate) mod program;
#[cfg(test)]
pub(crate) mod tests;

pub use program::elementwise_signature;

pub(crate) fn register(r: &mut KernelRegistry) {
    elementwise::register(r);
    matmul::register(r);
    conv::register(r);
}
