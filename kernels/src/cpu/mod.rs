//! CPU kernels, by family.

use crate::KernelRegistry;

pub mod array;
pub mod fused;
pub mod math;
pub mod nn;
pub mod state;

pub(crate) fn register(r: &mut KernelRegistry) {
    array::register(r);
    fused::register(r);
    math::register(r);
    nn::register(r);
    state::register(r);
}
