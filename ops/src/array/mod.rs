//! Array ops: graph inputs and constants, shape manipulation, slicing, gathering, casting.

use rill_graph::Result;

mod broadcast;
mod cast;
pub(crate) mod common;
mod concat;
mod constant;
mod fill;
mod gather;
mod identity;
mod one_hot;
mod pad;
mod placeholder;
mod range;
mod reshape;
mod shape_ops;
mod slice;
mod slice_spec;
mod split;
mod stitch;
mod strided_slice;
mod tile;
mod transpose;
mod where_op;

pub use broadcast::{broadcast_with_reduction, BroadcastReduction};
pub use range::range_len;
pub use slice_spec::{slice_spec, DimSlice, OutputDim, SliceSpec, StridedSliceMasks};

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    let files: [fn(&mut crate::Registry) -> Result<()>; 20] = [
        placeholder::register,
        constant::register,
        identity::register,
        shape_ops::register,
        reshape::register,
        transpose::register,
        concat::register,
        split::register,
        slice::register,
        strided_slice::register,
        gather::register,
        one_hot::register,
        tile::register,
        broadcast::register,
        pad::register,
        fill::register,
        cast::register,
        where_op::register,
        stitch::register,
        range::register,
    ];
    for register in files {
        register(r)?;
    }
    Ok(())
}
