//! CPU kernels of the math ops.

use crate::KernelRegistry;

pub(crate) fn register(_r: &mut KernelRegistry) {}
