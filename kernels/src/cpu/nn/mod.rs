//! CPU kernels of the nn ops.

use crate::KernelRegistry;

pub(crate) fn register(_r: &mut KernelRegistry) {}
