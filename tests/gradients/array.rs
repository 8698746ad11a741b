//! Gradient checks of the array ops: pass-through ops, reshaping, transposition,
//! concatenation and splitting, slicing, gathering and scattering, tiling, padding, fill,
//! cast and stitching; plus the gradients checked structurally (PreventGradient's error,
//! ReadVariableOp's pass-through to the handle).

use rill::ops::array::StridedSliceMasks;
use rill::prelude::*;
use rill_autodiff::gradients;

use super::{check, check_with, t, Opts, DEFAULT};

fn ints(dims: &[usize], v: &[i32]) -> Tensor {
    Tensor::new(dims, v.to_vec()).unwrap()
}

cases! {
    identity: "Identity" => { check("Identity", &[t(&[2, 3], 1)], |b, p| b.identity(p[0])) }
    snapshot: "Snapshot" => { check("Snapshot", &[t(&[2, 3], 1)], |b, p| b.snapshot(p[0])) }
    ensure_shape: "EnsureShape" => {
        check("EnsureShape", &[t(&[2, 3], 1)], |b, p| b.ensure_shape(p[0], [2i64, 3]));
    }
    identity_n: "IdentityN" => {
        check("IdentityN", &[t(&[2, 3], 1), t(&[3], 2)], |b, p| {
            let outs = b.identity_n(&[p[0], p[1]])?;
            b.add(outs[0], b.square(outs[1])?)
        });
        // A gradient reaching only one output.
        check("IdentityN", &[t(&[2, 3], 1), t(&[3], 2)], |b, p| Ok(b.identity_n(&[p[0], p[1]])?[1]));
    }
    check_numerics: "CheckNumerics" => {
        check("CheckNumerics", &[t(&[2, 3], 1)], |b, p| b.check_numerics(p[0], "x"));
    }
    placeholder_with_default: "PlaceholderWithDefault" => {
        check("PlaceholderWithDefault", &[t(&[2, 3], 1)], |b, p| {
            b.placeholder_with_default("d", b.sin(p[0])?, [-1i64, 3])
        });
    }
    reshape: "Reshape" => { check("Reshape", &[t(&[2, 3], 1)], |b, p| b.reshape_to(p[0], &[3, -1])) }
    expand_dims: "ExpandDims" => {
        check("ExpandDims", &[t(&[2, 3], 1)], |b, p| b.expand_dims(p[0], -1));
    }
    squeeze: "Squeeze" => { check("Squeeze", &[t(&[2, 1, 3], 1)], |b, p| b.squeeze(p[0], &[1])) }
    transpose: "Transpose" => {
        check("Transpose", &[t(&[2, 3, 4], 1)], |b, p| b.transpose_perm(p[0], &[1, 2, 0]));
        // A permutation fed at run time: InvertPermutation.
        check("Transpose", &[t(&[2, 3, 4], 1), ints(&[3], &[2, 0, 1])], |b, p| {
            b.transpose(p[0], p[1])
        });
    }
    reverse_v2: "ReverseV2" => { check("ReverseV2", &[t(&[2, 3], 1)], |b, p| b.reverse(p[0], &[1])) }
    concat_v2: "ConcatV2" => {
        let values = [t(&[2, 3], 1), t(&[2, 1], 2), t(&[2, 2], 3)];
        check("ConcatV2", &values, |b, p| b.concat(&[p[0], p[1], p[2]], -1));
        // The axis fed at run time: ConcatOffset.
        let mut fed = values.to_vec();
        fed.push(Tensor::scalar(1i32));
        check("ConcatV2", &fed, |b, p| b.concat_v2(&[p[0], p[1], p[2]], p[3]));
    }
    concat: "Concat" => {
        check("Concat", &[t(&[1, 3], 1), t(&[2, 3], 2)], |b, p| {
            let axis = b.scalar_i32(0)?;
            b.op("Concat").input(axis).input_list(&[p[0], p[1]]).build_output()
        });
    }
    pack: "Pack" => {
        check("Pack", &[t(&[2, 3], 1), t(&[2, 3], 2)], |b, p| b.stack(&[p[0], p[1]], 1));
    }
    unpack: "Unpack" => {
        check("Unpack", &[t(&[3, 2], 1)], |b, p| Ok(b.unstack(p[0], 3, 0)?[1]));
        check("Unpack", &[t(&[3, 2], 1)], |b, p| {
            let outs = b.unstack(p[0], 2, 1)?;
            b.mul(outs[0], outs[1])
        });
    }
    split: "Split" => {
        check("Split", &[t(&[4, 3], 1)], |b, p| Ok(b.split(p[0], 2, 0)?[1]));
        check("Split", &[t(&[4, 3], 1)], |b, p| Ok(b.split(p[0], 1, 1)?[0]));
    }
    split_v: "SplitV" => {
        check("SplitV", &[t(&[2, 5], 1)], |b, p| {
            let outs = b.split_v(p[0], &[1, -1], 1)?;
            b.add(b.sum(outs[0], &[1], false)?, b.sum(b.square(outs[1])?, &[1], false)?)
        });
    }
    slice: "Slice" => {
        check("Slice", &[t(&[3, 4], 1)], |b, p| b.slice_const(p[0], &[1, 1], &[2, -1]));
        let begin = Tensor::vector(vec![0i64, 2]);
        let size = Tensor::vector(vec![2i64, 1]);
        check("Slice", &[t(&[3, 4], 1), begin, size], |b, p| b.slice(p[0], p[1], p[2]));
    }
    strided_slice: "StridedSlice" => {
        let none = StridedSliceMasks::default();
        check("StridedSlice", &[t(&[4, 5], 1)], |b, p| {
            b.strided_slice_const(p[0], &[1, -1], &[4, 0], &[2, -2], none)
        });
        // x[..., 1, tf.newaxis]
        let masks = StridedSliceMasks { ellipsis: 1, new_axis: 4, shrink_axis: 2, ..none };
        check("StridedSlice", &[t(&[2, 3, 4], 1)], |b, p| {
            b.strided_slice_const(p[0], &[0, 1, 0], &[0, 2, 0], &[1, 1, 1], masks)
        });
    }
    strided_slice_grad: "StridedSliceGrad" => {
        check("StridedSliceGrad", &[t(&[2, 2], 1)], |b, p| {
            let c = |v: &[i64]| b.index_const(v);
            let nb = b.op("StridedSliceGrad").input(c(&[4, 5])?).input(c(&[1, -1])?);
            nb.input(c(&[4, 0])?).input(c(&[2, -2])?).input(p[0]).build_output()
        });
    }
    gather: "Gather" => {
        check("Gather", &[t(&[4, 3], 1), ints(&[3], &[2, 0, 2])], |b, p| {
            b.op("Gather").input(p[0]).input(p[1]).build_output()
        });
    }
    gather_v2: "GatherV2" => {
        check("GatherV2", &[t(&[4, 3], 1), ints(&[2, 2], &[3, 0, 3, 1])], |b, p| {
            b.gather(p[0], p[1], 0)
        });
        check("GatherV2", &[t(&[2, 4, 3], 1), ints(&[3], &[1, 3, 1])], |b, p| {
            b.gather(p[0], p[1], 1)
        });
        check("GatherV2", &[t(&[2, 3], 1), ints(&[2, 2], &[2, 2, 0, 1])], |b, p| {
            b.gather(p[0], p[1], -1)
        });
    }
    gather_nd: "GatherNd" => {
        check("GatherNd", &[t(&[3, 4], 1), ints(&[3, 2], &[0, 1, 2, 3, 0, 1])], |b, p| {
            b.gather_nd(p[0], p[1])
        });
    }
    scatter_nd: "ScatterNd" => {
        check("ScatterNd", &[ints(&[3, 1], &[1, 3, 1]), t(&[3, 2], 1)], |b, p| {
            b.scatter_nd(p[0], p[1], b.index_const(&[5, 2])?)
        });
    }
    tile: "Tile" => {
        check("Tile", &[t(&[2, 3], 1)], |b, p| b.tile_const(p[0], &[2, 1]));
        check("Tile", &[t(&[2, 3], 1), ints(&[2], &[1, 3])], |b, p| b.tile(p[0], p[1]));
    }
    broadcast_to: "BroadcastTo" => {
        check("BroadcastTo", &[t(&[1, 3], 1)], |b, p| b.broadcast_to(p[0], b.index_const(&[2, 3])?));
        check("BroadcastTo", &[t(&[3], 1)], |b, p| {
            b.broadcast_to(p[0], b.index_const(&[2, 2, 3])?)
        });
    }
    pad: "Pad" => {
        check("Pad", &[t(&[2, 3], 1)], |b, p| b.pad_const(p[0], &[(1, 0), (2, 1)]));
        let paddings = Tensor::new(&[2, 2], vec![0i64, 2, 1, 1]).unwrap();
        check("Pad", &[t(&[2, 3], 1), paddings], |b, p| b.pad(p[0], p[1]));
    }
    pad_v2: "PadV2" => {
        check("PadV2", &[t(&[2, 3], 1), Tensor::scalar(0.5f64)], |b, p| {
            let paddings = b.constant(Tensor::new(&[2, 2], vec![1i32, 1, 0, 2])?)?;
            b.pad_v2(p[0], paddings, p[1])
        });
    }
    fill: "Fill" => {
        check("Fill", &[Tensor::scalar(0.7f64)], |b, p| b.fill(b.index_const(&[2, 3])?, p[0]));
    }
    cast: "Cast" => {
        // Through f32 and back: the numeric side carries f32 rounding.
        let opts = Opts { tol: 1e-2, ..DEFAULT };
        check_with("Cast", &[t(&[2, 3], 1)], opts, |b, p| {
            b.cast(b.cast(p[0], DType::F32)?, DType::F64)
        });
    }
    dynamic_stitch: "DynamicStitch" => {
        check("DynamicStitch", &[t(&[2, 3], 1), t(&[2, 3], 2)], |b, p| {
            let i0 = b.vector_const(vec![0i32, 2])?;
            let i1 = b.vector_const(vec![1i32, 3])?;
            b.dynamic_stitch(&[i0, i1], &[p[0], p[1]])
        });
    }
}

#[test]
fn prevent_gradient_is_an_error() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F64, [2i64]).unwrap();
    let y = b.prevent_gradient(b.exp(x).unwrap(), "not here").unwrap();
    let e = gradients(&b, &[y], &[x], None).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.message.contains("not here"), "{e}");
}

#[test]
fn read_variable_passes_its_gradient_to_the_handle() {
    let b = Builder::new();
    let handle = b.var_handle("v", DType::F32, [2i64]).unwrap();
    let value = b.read_variable(handle, DType::F32).unwrap();
    let y = b.square(value).unwrap();
    let g = gradients(&b, &[y], &[handle, value], None).unwrap();
    let (to_handle, to_value) = (g[0].unwrap(), g[1].unwrap());
    assert_eq!(to_handle, to_value);
    assert_eq!(b.dtype(to_handle), DType::F32);
}
