//! CPU kernels of the math ops (and the elementwise activations TensorFlow files under nn):
//! elementwise unary/binary/n-ary ops with broadcasting, comparisons, reductions, arg
//! max/min, cumulative sums and products, segment reductions, and matrix products through
//! `gemm`.
//!
//! The helpers here (`broadcast`, `num`, `par`, `util`, `matmul::gemm_into`) are
//! `pub(crate)` for the other kernel families.

use crate::KernelRegistry;

pub(crate) mod binary;
pub(crate) mod broadcast;
pub(crate) mod compare;
pub(crate) mod matmul;
pub(crate) mod nary;
pub(crate) mod num;
pub(crate) mod par;
#[cfg(test)]
mod perf;
pub(crate) mod reduce;
pub(crate) mod scan;
pub(crate) mod segment;
pub(crate) mod simd;
#[cfg(test)]
pub(crate) mod test_util;
pub(crate) mod unary;
pub(crate) mod util;

pub(crate) fn register(r: &mut KernelRegistry) {
    unary::register(r);
    binary::register(r);
    compare::register(r);
    nary::register(r);
    reduce::register(r);
    scan::register(r);
    segment::register(r);
    matmul::register(r);
}
