//! CPU kernels, by family.

use crate::KernelRegistry;

pub mod array;
pub mod math;
pub mod nn;
pub mod state;

pub(crate) fn register(r: &mut KernelRegistry) {
    array::register(r);
    math::register(r);
    nn::register(r);
    state::register(r);
}
