//! CPU kernels of the nn ops: convolutions (regular, grouped, depthwise) and their
//! gradients, pooling and its gradients, bias add, softmax and the cross-entropy losses,
//! fused batch normalisation, LRN, L2 loss and top-k. (The elementwise activations and
//! their gradients live with the elementwise tables in `cpu::math`.)
//!
//! Shared geometry (data formats, padding, TensorFlow's output-size rule) is in `window`.

use crate::KernelRegistry;

mod batch_norm;
mod bias;
pub(crate) mod conv;
#[cfg(test)]
mod conv_tests;
mod depthwise;
mod misc;
mod pool;
mod softmax;
#[cfg(test)]
mod tests;
pub(crate) mod window;

pub(crate) fn register(r: &mut KernelRegistry) {
    conv::register(r);
    depthwise::register(r);
    pool::register(r);
    bias::register(r);
    softmax::register(r);
    batch_norm::register(r);
    misc::register(r);
}
