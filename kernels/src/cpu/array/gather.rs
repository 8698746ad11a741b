//! `Gather` and `GatherV2` (with `axis` and `batch_dims`): slices of `params` picked by
//! `indices` along one axis.
//!
//! The output is `params.shape[:axis] + indices.shape[batch_dims:] + params.shape[axis+1:]`;
//! viewed as `[batch, outer, n, inner]` each output row `[b, o, k]` is the params row
//! `[b, o, indices[b, k]]`.
//!
//! Invariants: every index is checked before anything is copied; a bad one is
//! InvalidArgument `indices[i,j] = v is not in [0, n)` naming the first bad position (as on
//! TensorFlow's CPU, negative indices are errors); any index dtype works (int16/32/64).

use rayon::prelude::*;
use rill_graph::{Buffer, Error, Node, Result, Tensor};

use super::util::{attr_int, filled, int_scalar, kernel, product, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Gather", |_| gather_kernel(false, 0));
    r.cpu("GatherV2", |node: &Node| {
        gather_kernel(true, attr_int(node, "batch_dims", Some(0))?)
    });
}

/// TensorFlow's `SliceDebugString`: `[i,j]` for flat position `flat` of `dims` (`` for a
/// scalar).
pub(super) fn position(dims: &[usize], flat: usize) -> String {
    if dims.is_empty() {
        return String::new();
    }
    let mut idx = vec![0; dims.len()];
    let mut rem = flat;
    for d in (0..dims.len()).rev() {
        let n = dims[d].max(1);
        idx[d] = rem % n;
        rem /= n;
    }
    shape_str(&idx)
}

/// Copies `rows` (each `inner` long) of `src` into a new vector: output row `r` is source
/// row `rows[r]`.
pub(super) fn copy_rows<T: Clone + Default + Send + Sync>(
    src: &[T],
    rows: &[usize],
    inner: usize,
) -> Result<Vec<T>> {
    let n = rows.len() * inner;
    if inner == 0 {
        return Ok(Vec::new());
    }
    let mut out = filled(n, T::default())?;
    let copy = |(r, dst): (usize, &mut [T])| {
        let s = rows[r] * inner;
        dst.clone_from_slice(&src[s..s + inner]);
    };
    if n >= 1 << 16 {
        out.par_chunks_mut(inner).enumerate().for_each(copy);
    } else {
        out.chunks_mut(inner).enumerate().for_each(copy);
    }
    Ok(out)
}

/// [`copy_rows`] on a tensor of any dtype; the result has shape `dims`.
pub(super) fn copy_rows_tensor(
    t: &Tensor,
    rows: &[usize],
    inner: usize,
    dims: &[usize],
) -> Result<Tensor> {
    macro_rules! go {
        ($($v:ident),*) => {
            match t.buffer() {
                $(Buffer::$v(s) => Buffer::$v(copy_rows(s, rows, inner)?),)*
                Buffer::Arena(_) => return copy_rows_tensor(&t.clone().detach(), rows, inner, dims),
            }
        };
    }
    let buffer =
        go!(F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, String, Resource);
    Tensor::from_buffer(dims, buffer)
}

/// GatherV2 on `params` with `indices`, `axis` (already given or defaulted) and `batch_dims`.
pub(super) fn gather(
    params: &Tensor,
    indices: &Tensor,
    axis: Option<i64>,
    batch_dims: i64,
) -> Result<Tensor> {
    if params.rank() == 0 {
        return Err(Error::invalid_argument(
            "params must be at least 1 dimensional",
        ));
    }
    let prank = params.rank() as i64;
    let mut axis_v = axis.unwrap_or(0);
    if axis.is_some() {
        if !(-prank <= axis_v && axis_v < prank) {
            return Err(Error::invalid_argument(format!(
                "Expected axis in the range [{}, {prank}), but got {axis_v}",
                -prank
            )));
        }
        if axis_v < 0 {
            axis_v += prank;
        }
    }
    let irank = indices.rank() as i64;
    let mut batch = batch_dims;
    if batch != 0 {
        if !(-irank <= batch && batch <= irank) {
            return Err(Error::invalid_argument(format!(
                "Expected batch_dims in the range [{}, {irank}], but got {batch}",
                -irank
            )));
        }
        if batch < 0 {
            batch += irank;
        }
        if axis.is_none() {
            axis_v = batch;
        }
        if batch >= prank {
            return Err(Error::invalid_argument(format!(
                "batch_dims ({batch}) must be less than rank(params) ({prank})."
            )));
        }
        if axis_v < batch {
            return Err(Error::invalid_argument(format!(
                "batch_dims ({batch}) must be less than or equal to axis ({axis_v})."
            )));
        }
        for i in 0..batch as usize {
            if params.dims()[i] != indices.dims()[i] {
                return Err(Error::invalid_argument(format!(
                    "params.shape[{i}]: {} should be equal to indices.shape[{i}]: {}",
                    params.dims()[i],
                    indices.dims()[i]
                )));
            }
        }
    }
    let (axis, batch) = (axis_v as usize, batch as usize);
    let pd = params.dims();
    let gdim = pd[axis];
    let batch_size = product(&pd[..batch]);
    let outer = product(&pd[batch..axis]);
    let inner = product(&pd[axis + 1..]);
    let n = product(&indices.dims()[batch..]);

    let idx = indices.to_i64_vec()?;
    if let Some(bad) = idx.iter().position(|&v| v < 0 || v >= gdim as i64) {
        return Err(Error::invalid_argument(format!(
            "indices{} = {} is not in [0, {gdim})",
            position(indices.dims(), bad),
            idx[bad]
        )));
    }
    let mut dims: Vec<usize> = pd[..axis].to_vec();
    dims.extend_from_slice(&indices.dims()[batch..]);
    dims.extend_from_slice(&pd[axis + 1..]);
    let count = rill_graph::element_count(&dims)?;
    if count == 0 {
        return Tensor::zeros(params.dtype(), &dims);
    }
    let mut rows = Vec::new();
    rows.try_reserve_exact(batch_size * outer * n)
        .map_err(|_| Error::resource_exhausted(format!("cannot gather {count} elements")))?;
    for b in 0..batch_size {
        for o in 0..outer {
            let base = (b * outer + o) * gdim;
            rows.extend(idx[b * n..(b + 1) * n].iter().map(|&k| base + k as usize));
        }
    }
    copy_rows_tensor(params, &rows, inner, &dims)
}

fn gather_kernel(has_axis: bool, batch_dims: i64) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| {
        if has_axis {
            let [params, indices, axis] = take(inputs)?;
            let axis = int_scalar(&axis, "axis")?;
            Ok(vec![gather(&params, &indices, Some(axis), batch_dims)?])
        } else {
            let [params, indices] = take(inputs)?;
            Ok(vec![gather(&params, &indices, Some(0), 0)?])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{AttrValue, Code, DType, Tensor};

    #[test]
    fn gather_rows_and_axes() {
        let p = iota(&[3, 2]);
        let y = run1("Gather", &[], vec![p.clone(), i(&[2, 2], &[2, 0, 1, 1])]).unwrap();
        assert_eq!(ints(&y), (vec![2, 2, 2], vec![4, 5, 0, 1, 2, 3, 2, 3]));
        let y = run1(
            "GatherV2",
            &[],
            vec![p.clone(), l(&[3], &[1, 1, 0]), Tensor::scalar(-1i32)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![3, 3], vec![1, 1, 0, 3, 3, 2, 5, 5, 4]));
        let y = run1(
            "GatherV2",
            &[],
            vec![p.clone(), Tensor::scalar(2i64), Tensor::scalar(0i64)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2], vec![4, 5]));
        let y = run1("GatherV2", &[], vec![p, i(&[0], &[]), Tensor::scalar(0i32)]).unwrap();
        assert_eq!(y.dims(), &[0, 2]);
    }

    #[test]
    fn gather_with_batch_dims() {
        // params [2,3], indices [2,2], batch_dims 1: out[b][k] = params[b][idx[b][k]].
        let a = [("batch_dims", AttrValue::Int(1))];
        let y = run1(
            "GatherV2",
            &a,
            vec![
                iota(&[2, 3]),
                i(&[2, 2], &[2, 0, 1, 1]),
                Tensor::scalar(1i32),
            ],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 2], vec![2, 0, 4, 4]));
        let a = [("batch_dims", AttrValue::Int(-1))];
        let y = run1(
            "GatherV2",
            &a,
            vec![iota(&[2, 3]), i(&[2, 1], &[1, 2]), Tensor::scalar(1i32)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 1], vec![1, 5]));
        let a = [("batch_dims", AttrValue::Int(1))];
        assert!(run(
            "GatherV2",
            &a,
            vec![iota(&[2, 3]), i(&[3, 1], &[0, 0, 0]), Tensor::scalar(1i32)]
        )
        .is_err());
        assert!(run(
            "GatherV2",
            &a,
            vec![iota(&[2, 3]), i(&[2, 1], &[0, 0]), Tensor::scalar(0i32)]
        )
        .is_err());
    }

    #[test]
    fn out_of_range_indices() {
        let p = iota(&[5]);
        let (code, msg) = run_err("Gather", &[], vec![p.clone(), i(&[2, 2], &[0, 1, 7, 2])]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "indices[1,0] = 7 is not in [0, 5)");
        let (_, msg) = run_err(
            "GatherV2",
            &[],
            vec![p.clone(), l(&[2], &[0, -1]), Tensor::scalar(0i32)],
        );
        assert_eq!(msg, "indices[1] = -1 is not in [0, 5)");
        let (_, msg) = run_err(
            "GatherV2",
            &[],
            vec![p.clone(), Tensor::scalar(5i32), Tensor::scalar(0i32)],
        );
        assert_eq!(msg, "indices = 5 is not in [0, 5)");
        let (_, msg) = run_err(
            "GatherV2",
            &[],
            vec![p, Tensor::scalar(0i32), Tensor::scalar(1i32)],
        );
        assert_eq!(msg, "Expected axis in the range [-1, 1), but got 1");
        assert!(run(
            "Gather",
            &[],
            vec![Tensor::scalar(1i32), Tensor::scalar(0i32)]
        )
        .is_err());
    }

    #[test]
    fn gather_strings_and_big() {
        let p = Tensor::vector(vec![b"x".to_vec(), b"y".to_vec()]);
        let y = run1("Gather", &[], vec![p, i(&[3], &[1, 0, 1])]).unwrap();
        assert_eq!(
            y.as_slice::<Vec<u8>>().unwrap(),
            &[b"y".to_vec(), b"x".to_vec(), b"y".to_vec()]
        );
        let p = Tensor::zeros(DType::F32, &[10, 10_000]).unwrap();
        let y = run1("Gather", &[], vec![p, i(&[8], &[9, 8, 7, 6, 5, 4, 3, 2])]).unwrap();
        assert_eq!(y.dims(), &[8, 10_000]);
    }
}
