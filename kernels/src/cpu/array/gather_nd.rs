//! `GatherNd` and `ScatterNd`: slices addressed by index tuples (the last dim of `indices`).
//!
//! `GatherNd(params, indices)` has shape `indices.shape[:-1] + params.shape[K:]` where `K`
//! is `indices.shape[-1]`; `ScatterNd(indices, updates, shape)` is its adjoint: zeros of
//! `shape` with every update slice added at its index (duplicates sum).
//!
//! Invariants: every index tuple is checked before anything is written, and a bad one is
//! InvalidArgument naming its position; integer sums wrap (two's complement), half-precision
//! sums go through f32; ScatterNd is defined for the numeric dtypes only.

use rill_graph::{Element, Error, Node, Result, Tensor};

use super::concat::concat_along;
use super::gather::{copy_rows_tensor, position};
use super::util::{
    attr_string, dims_from, filled, int_vector, kernel, product, row_strides, shape_str, take,
    with_numeric,
};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("GatherNd", gather_nd);
    r.cpu("ScatterNd", scatter_nd);
}

/// Whether the `bad_indices_policy` attr says to skip bad indices (`IGNORE`) rather than
/// fail (`""`, `DEFAULT`, `ERROR`).
fn ignore_bad_indices(node: &Node) -> Result<bool> {
    match attr_string(node, "bad_indices_policy", "")?.as_str() {
        "" | "DEFAULT" | "ERROR" => Ok(false),
        "IGNORE" => Ok(true),
        other => Err(Error::invalid_argument(format!(
            "bad_indices_policy must be one of DEFAULT, ERROR, IGNORE, not '{other}'"
        ))),
    }
}

/// The slice number (row-major over `dims[..K]`) each index tuple of `indices` names;
/// a bad tuple is `None` when `ignore`, else an error (`what` names the target).
fn slice_offsets(
    indices: &Tensor,
    dims: &[usize],
    what: &str,
    ignore: bool,
) -> Result<Vec<Option<usize>>> {
    let k = *indices.dims().last().unwrap_or(&0);
    let batch = &indices.dims()[..indices.rank().saturating_sub(1)];
    let idx = indices.to_i64_vec()?;
    let strides = row_strides(&dims[..k]);
    let count = product(batch);
    let mut out = Vec::with_capacity(count);
    for r in 0..count {
        let tuple = &idx[r * k..(r + 1) * k];
        let mut off = Some(0usize);
        for (j, &v) in tuple.iter().enumerate() {
            if v < 0 || v >= dims[j] as i64 {
                if ignore {
                    off = None;
                    break;
                }
                let list: Vec<String> = tuple.iter().map(i64::to_string).collect();
                return Err(Error::invalid_argument(format!(
                    "indices{} = [{}] does not index into {what} {}",
                    position(batch, r),
                    list.join(", "),
                    shape_str(dims)
                )));
            }
            off = off.map(|o| o + v as usize * strides[j]);
        }
        out.push(off);
    }
    Ok(out)
}

fn gather_nd(node: &Node) -> Result<Box<dyn Kernel>> {
    let name = node.name.clone();
    let ignore = ignore_bad_indices(node)?;
    kernel(move |inputs| {
        let [params, indices] = take(inputs)?;
        if params.rank() == 0 {
            return Err(Error::invalid_argument("params must be at least a vector"));
        }
        if indices.rank() == 0 {
            return Err(Error::invalid_argument("indices must be at least a vector"));
        }
        let k = indices.dims()[indices.rank() - 1];
        if k > params.rank() {
            return Err(Error::invalid_argument(format!(
                "index innermost dimension length must be <= params rank; saw: {k} vs. {}",
                params.rank()
            )));
        }
        let mut dims = indices.dims()[..indices.rank() - 1].to_vec();
        dims.extend_from_slice(&params.dims()[k..]);
        let slice = product(&params.dims()[k..]);
        if rill_graph::element_count(&dims)? == 0 {
            return Ok(vec![Tensor::zeros(params.dtype(), &dims)?]);
        }
        if params.num_elements() == 0 {
            return Err(Error::invalid_argument(format!(
                "Requested more than 0 entries, but params is empty.  Params shape: {}",
                shape_str(params.dims())
            )));
        }
        let rows = slice_offsets(&indices, params.dims(), "param shape", ignore)
            .map_err(|e| Error::invalid_argument(format!("{}, node name: {name}", e.message)))?;
        if rows.iter().all(Option::is_some) {
            let rows: Vec<usize> = rows.into_iter().flatten().collect();
            return Ok(vec![copy_rows_tensor(&params, &rows, slice, &dims)?]);
        }
        // Ignored bad indices read a zero row appended after the params' slices.
        let total = params.num_elements() / slice;
        let padded = concat_along(
            &[
                params.reshape(&[total, slice])?,
                Tensor::zeros(params.dtype(), &[1, slice])?,
            ],
            0,
        )?;
        let rows: Vec<usize> = rows.into_iter().map(|r| r.unwrap_or(total)).collect();
        Ok(vec![copy_rows_tensor(&padded, &rows, slice, &dims)?])
    })
}

/// Addition as ScatterNd accumulates: wrapping for integers, IEEE for floats.
trait Accumulate: Element + Copy {
    fn accumulate(self, other: Self) -> Self;
}

macro_rules! wrapping {
    ($($t:ty),*) => {$(impl Accumulate for $t {
        fn accumulate(self, other: Self) -> Self { self.wrapping_add(other) }
    })*};
}
wrapping!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Accumulate for f32 {
    fn accumulate(self, other: Self) -> Self {
        self + other
    }
}
impl Accumulate for f64 {
    fn accumulate(self, other: Self) -> Self {
        self + other
    }
}
impl Accumulate for half::f16 {
    fn accumulate(self, other: Self) -> Self {
        half::f16::from_f32(self.to_f32() + other.to_f32())
    }
}
impl Accumulate for half::bf16 {
    fn accumulate(self, other: Self) -> Self {
        half::bf16::from_f32(self.to_f32() + other.to_f32())
    }
}

fn scatter_add<T: Accumulate>(
    updates: &Tensor,
    offsets: &[Option<usize>],
    slice: usize,
    n: usize,
) -> Result<Vec<T>> {
    let mut out = filled(n, T::default())?;
    let up = updates.as_slice::<T>()?;
    for (r, off) in offsets.iter().enumerate() {
        let Some(off) = *off else { continue };
        let dst = &mut out[off * slice..(off + 1) * slice];
        for (o, &u) in dst.iter_mut().zip(&up[r * slice..(r + 1) * slice]) {
            *o = o.accumulate(u);
        }
    }
    Ok(out)
}

fn scatter_nd(node: &Node) -> Result<Box<dyn Kernel>> {
    let op = node.op_name().to_string();
    let ignore = ignore_bad_indices(node)?;
    kernel(move |inputs| {
        let [indices, updates, shape] = take(inputs)?;
        if shape.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "Shape must be a 1-D tensor, got shape {}",
                shape_str(shape.dims())
            )));
        }
        let dims = dims_from(&int_vector(&shape, "shape")?, "ScatterNd shape")?;
        if indices.rank() == 0 {
            return Err(Error::invalid_argument(
                "Indices shape must have rank at least one. Found:[]",
            ));
        }
        let n = product(&dims);
        if n == 0 && (indices.num_elements() > 0 || updates.num_elements() > 0) {
            return Err(Error::invalid_argument(
                "Indices and updates specified for empty output shape",
            ));
        }
        let k = indices.dims()[indices.rank() - 1];
        if k > dims.len() {
            return Err(Error::invalid_argument(format!(
                "Dimensions [0,{}) of indices[shape={}] = {k} must be <= rank of shape {}",
                indices.rank(),
                shape_str(indices.dims()),
                shape_str(&dims)
            )));
        }
        let mut want = indices.dims()[..indices.rank() - 1].to_vec();
        want.extend_from_slice(&dims[k..]);
        if updates.dims() != want.as_slice() {
            return Err(Error::invalid_argument(format!(
                "Must have updates.shape = indices.shape[:batch_dim] + shape[slice_dim:], got updates.shape: {}, indices.shape: {}, shape: {}, slice_dim: {k}, and batch_dim: {}",
                shape_str(updates.dims()),
                shape_str(indices.dims()),
                shape_str(&dims),
                indices.rank() - 1
            )));
        }
        let offsets = slice_offsets(&indices, &dims, "shape", ignore)?;
        let slice = product(&dims[k..]);
        let out = with_numeric!(updates.dtype(), &op, T => {
            Tensor::new(&dims, scatter_add::<T>(&updates, &offsets, slice, n)?)
        })?;
        Ok(vec![out])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{AttrValue, Code, Tensor};

    #[test]
    fn gather_nd() {
        let p = iota(&[2, 3]);
        let y = run1("GatherNd", &[], vec![p.clone(), i(&[2, 2], &[1, 2, 0, 1])]).unwrap();
        assert_eq!(ints(&y), (vec![2], vec![5, 1]));
        let y = run1("GatherNd", &[], vec![p.clone(), l(&[2, 1], &[1, 0])]).unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![3, 4, 5, 0, 1, 2]));
        let y = run1("GatherNd", &[], vec![p.clone(), i(&[2], &[1, 1])]).unwrap();
        assert_eq!(ints(&y), (vec![], vec![4]));
        let y = run1("GatherNd", &[], vec![p.clone(), i(&[0, 2], &[])]).unwrap();
        assert_eq!(y.dims(), &[0]);
        let (code, msg) = run_err("GatherNd", &[], vec![p.clone(), i(&[2, 2], &[0, 0, 2, 0])]);
        assert_eq!(code, Code::InvalidArgument);
        assert!(
            msg.starts_with("indices[1] = [2, 0] does not index into param shape [2,3]"),
            "{msg}"
        );
        assert!(run("GatherNd", &[], vec![p.clone(), i(&[1, 3], &[0, 0, 0])]).is_err());
        let ignore = [("bad_indices_policy", AttrValue::from("IGNORE"))];
        let y = run1("GatherNd", &ignore, vec![p, i(&[3, 1], &[1, 5, -1])]).unwrap();
        assert_eq!(ints(&y), (vec![3, 3], vec![3, 4, 5, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn scatter_nd_sums_duplicates() {
        let y = run1(
            "ScatterNd",
            &[],
            vec![
                i(&[3, 1], &[4, 3, 4]),
                f(&[3], &[1.0, 2.0, 3.0]),
                i(&[1], &[6]),
            ],
        )
        .unwrap();
        assert_eq!(floats(&y), (vec![6], vec![0.0, 0.0, 0.0, 2.0, 4.0, 0.0]));
        let y = run1(
            "ScatterNd",
            &[],
            vec![l(&[1, 1], &[1]), i(&[1, 2], &[5, 6]), l(&[2], &[2, 2])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 2], vec![0, 0, 5, 6]));
        let y = run1(
            "ScatterNd",
            &[],
            vec![
                i(&[2, 1], &[0, 0]),
                Tensor::vector(vec![i8::MAX, 1]),
                i(&[1], &[1]),
            ],
        )
        .unwrap();
        assert_eq!(y.as_slice::<i8>().unwrap(), &[i8::MIN]);
        let (_, msg) = run_err(
            "ScatterNd",
            &[],
            vec![i(&[1, 1], &[6]), f(&[1], &[1.0]), i(&[1], &[6])],
        );
        assert_eq!(msg, "indices[0] = [6] does not index into shape [6]");
        let ignore = [("bad_indices_policy", AttrValue::from("IGNORE"))];
        let y = run1(
            "ScatterNd",
            &ignore,
            vec![i(&[2, 1], &[7, 1]), f(&[2], &[1.0, 2.0]), i(&[1], &[3])],
        )
        .unwrap();
        assert_eq!(floats(&y), (vec![3], vec![0.0, 2.0, 0.0]));
        assert!(run(
            "ScatterNd",
            &[],
            vec![i(&[1, 1], &[0]), f(&[2], &[1.0, 1.0]), i(&[1], &[6])]
        )
        .is_err());
        let s = Tensor::vector(vec![true]);
        assert_eq!(
            run_err("ScatterNd", &[], vec![i(&[1, 1], &[0]), s, i(&[1], &[2])]).0,
            Code::Unimplemented
        );
    }
}
