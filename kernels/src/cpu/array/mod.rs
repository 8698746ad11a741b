//! CPU kernels of the array ops: constants and graph inputs, forwarding and checks, shape
//! queries, reshaping, transposition, concatenation and splitting, slicing (including
//! `StridedSlice` with all five masks), gathering and scattering, one-hot, tiling and
//! broadcasting, padding, filling, ranges, casts, `Where`, reversal and stitching.
//!
//! Invariants: every kernel here is registered for all dtypes (dtype `None`) and dispatches
//! on the tensors it gets: data-movement ops work for every dtype that holds values
//! (numbers, bool, string, half types); arithmetic ones (`ScatterNd`, `Range`,
//! `CheckNumerics`, `Cast`) return Unimplemented for dtypes they cannot handle. No kernel
//! panics on user input: bad shapes, indices and attrs are typed errors with TensorFlow's
//! messages. Pure data movement shares the input's buffer whenever the output is the
//! input (Reshape, identity Transpose/Slice/StridedSlice, zero Pad, ...).

use crate::KernelRegistry;

mod broadcast;
mod cast;
mod concat;
mod constant;
mod fill;
mod gather;
mod gather_nd;
mod identity;
mod one_hot;
mod pad;
mod range;
mod reshape;
mod reverse;
mod shape;
mod slice;
mod split;
mod stitch;
mod strided;
mod strided_slice;
#[cfg(test)]
mod test_util;
mod tile;
mod transpose;
mod util;
mod where_op;

pub(crate) fn register(r: &mut KernelRegistry) {
    broadcast::register(r);
    cast::register(r);
    concat::register(r);
    constant::register(r);
    fill::register(r);
    gather::register(r);
    gather_nd::register(r);
    identity::register(r);
    one_hot::register(r);
    pad::register(r);
    range::register(r);
    reshape::register(r);
    reverse::register(r);
    shape::register(r);
    slice::register(r);
    split::register(r);
    stitch::register(r);
    strided_slice::register(r);
    tile::register(r);
    transpose::register(r);
    where_op::register(r);
}
