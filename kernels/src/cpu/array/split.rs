//! `Split`, `SplitV` and `Unpack` (unstack): one tensor into pieces along an axis.
//!
//! Invariants: checks and messages follow TensorFlow's `SplitOp`, `SplitVOp` and
//! `UnpackOp`; a split into one piece forwards the input's buffer; each piece is copied by
//! the strided engine (a contiguous slice when the axis is outermost).

use rill_graph::{Error, Node, Result, Tensor};

use super::strided::gather_tensor;
use super::util::{attr_int, int_scalar, kernel, product, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Split", split);
    r.cpu("SplitV", split_v);
    r.cpu("Unpack", unpack);
}

/// `x` cut along `axis` into pieces of `sizes` (which sum to the axis' size).
pub(super) fn split_along(x: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    if sizes.len() == 1 {
        return Ok(vec![x.clone()]);
    }
    let outer = product(&x.dims()[..axis]);
    let inner = product(&x.dims()[axis + 1..]);
    let row = x.dims()[axis] * inner;
    let mut start = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let flat = gather_tensor(x, start * inner, &[outer, size * inner], &[row as isize, 1])?;
        let mut dims = x.dims().to_vec();
        dims[axis] = size;
        out.push(flat.reshape(&dims)?);
        start += size;
    }
    Ok(out)
}

fn split_axis(axis: i64, x: &Tensor) -> Result<usize> {
    let rank = x.rank() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0 <= a && a < rank) {
        return Err(Error::invalid_argument(format!(
            "-input rank(-{rank}) <= split_dim < input rank ({rank}), but got {axis}"
        )));
    }
    Ok(a as usize)
}

fn split(node: &Node) -> Result<Box<dyn Kernel>> {
    let num = attr_int(node, "num_split", None)?;
    kernel(move |inputs| {
        let [axis, x] = take(inputs)?;
        let a = split_axis(int_scalar(&axis, "split_dim")?, &x)?;
        if num <= 0 {
            return Err(Error::invalid_argument(format!(
                "Number of ways to split should be > 0, but got {num}"
            )));
        }
        let n = num as usize;
        let d = x.dims()[a];
        if d % n != 0 {
            return Err(Error::invalid_argument(format!(
                "Number of ways to split should evenly divide the split dimension, but got split_dim {a} (size = {d}) and num_split {num}"
            )));
        }
        split_along(&x, a, &vec![d / n; n])
    })
}

fn split_v(node: &Node) -> Result<Box<dyn Kernel>> {
    let num = attr_int(node, "num_split", None)?;
    kernel(move |inputs| {
        let [x, sizes, axis] = take(inputs)?;
        if sizes.rank() != 1 || sizes.num_elements() as i64 != num {
            return Err(Error::invalid_argument(format!(
                "size of the split_tensor must be 1-D and have the same elements as outputs got {} -D and {} elements",
                sizes.rank(),
                sizes.num_elements()
            )));
        }
        let mut sizes = sizes.to_i64_vec()?;
        let a = split_axis(int_scalar(&axis, "split_dim")?, &x)?;
        let d = x.dims()[a] as i64;
        let mut neg_one = None;
        let mut determined = 0i64;
        for (i, &s) in sizes.iter().enumerate() {
            if s == -1 {
                if neg_one.is_some() {
                    return Err(Error::invalid_argument(
                        "There can only be one -1 in the input.",
                    ));
                }
                neg_one = Some(i);
            } else {
                determined = determined.saturating_add(s);
            }
        }
        let fits = match neg_one {
            None => determined == d,
            Some(_) => determined <= d,
        };
        if !fits {
            return Err(Error::invalid_argument(format!(
                "Determined shape must either match input shape along split_dim exactly if fully specified, or be less than the size of the input along split_dim if not fully specified.  Got: {determined}"
            )));
        }
        if let Some(i) = neg_one {
            sizes[i] = d - determined;
        }
        if let Some((i, s)) = sizes.iter().enumerate().find(|(_, &s)| s < 0) {
            return Err(Error::invalid_argument(format!(
                "Split size at index {i} must be >= 0. Got: {s}"
            )));
        }
        let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
        split_along(&x, a, &sizes)
    })
}

fn unpack(node: &Node) -> Result<Box<dyn Kernel>> {
    let num = attr_int(node, "num", None)?;
    let axis = attr_int(node, "axis", Some(0))?;
    kernel(move |inputs| {
        let [x] = take(inputs)?;
        let rank = x.rank() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if !(0 <= a && a < rank) {
            return Err(Error::invalid_argument(format!(
                "axis = {axis} not in [{}, {rank})",
                -rank
            )));
        }
        let a = a as usize;
        if x.dims()[a] as i64 != num {
            return Err(Error::invalid_argument(format!(
                "Input shape axis {a} must equal {num}, got shape {}",
                shape_str(x.dims())
            )));
        }
        let mut dims = x.dims().to_vec();
        dims.remove(a);
        split_along(&x, a, &vec![1; num as usize])?
            .iter()
            .map(|t| t.reshape(&dims))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, DType, Tensor};

    #[test]
    fn split_even() {
        let x = iota(&[2, 4]);
        let out = run(
            "Split",
            &[("num_split", 2i64.into())],
            vec![Tensor::scalar(1i32), x.clone()],
        )
        .unwrap();
        assert_eq!(ints(&out[0]), (vec![2, 2], vec![0, 1, 4, 5]));
        assert_eq!(ints(&out[1]), (vec![2, 2], vec![2, 3, 6, 7]));
        let out = run(
            "Split",
            &[("num_split", 2i64.into())],
            vec![Tensor::scalar(-2i32), x.clone()],
        )
        .unwrap();
        assert_eq!(ints(&out[1]), (vec![1, 4], vec![4, 5, 6, 7]));
        let one = run(
            "Split",
            &[("num_split", 1i64.into())],
            vec![Tensor::scalar(0i32), x.clone()],
        )
        .unwrap();
        assert!(std::ptr::eq(one[0].buffer(), x.buffer()));
        let (code, msg) = run_err(
            "Split",
            &[("num_split", 3i64.into())],
            vec![Tensor::scalar(1i32), x.clone()],
        );
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "Number of ways to split should evenly divide the split dimension, but got split_dim 1 (size = 4) and num_split 3");
        let (_, msg) = run_err(
            "Split",
            &[("num_split", 2i64.into())],
            vec![Tensor::scalar(2i32), x],
        );
        assert_eq!(
            msg,
            "-input rank(-2) <= split_dim < input rank (2), but got 2"
        );
    }

    #[test]
    fn split_v() {
        let x = iota(&[5, 2]);
        let a = [("num_split", 3i64.into())];
        let out = run(
            "SplitV",
            &a,
            vec![x.clone(), i(&[3], &[1, -1, 2]), Tensor::scalar(0i32)],
        )
        .unwrap();
        assert_eq!(ints(&out[0]), (vec![1, 2], vec![0, 1]));
        assert_eq!(ints(&out[1]), (vec![2, 2], vec![2, 3, 4, 5]));
        assert_eq!(ints(&out[2]), (vec![2, 2], vec![6, 7, 8, 9]));
        let out = run(
            "SplitV",
            &a,
            vec![x.clone(), l(&[3], &[0, 5, 0]), Tensor::scalar(0i32)],
        )
        .unwrap();
        assert_eq!(out[0].dims(), &[0, 2]);
        assert!(run(
            "SplitV",
            &a,
            vec![x.clone(), i(&[3], &[-1, -1, 2]), Tensor::scalar(0i32)]
        )
        .is_err());
        assert!(run(
            "SplitV",
            &a,
            vec![x.clone(), i(&[3], &[1, 1, 2]), Tensor::scalar(0i32)]
        )
        .is_err());
        assert!(run(
            "SplitV",
            &a,
            vec![x, i(&[3], &[1, 6, -2]), Tensor::scalar(0i32)]
        )
        .is_err());
    }

    #[test]
    fn unpack() {
        let x = iota(&[2, 3]);
        let out = run(
            "Unpack",
            &[("num", 3i64.into()), ("axis", (-1i64).into())],
            vec![x.clone()],
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(ints(&out[2]), (vec![2], vec![2, 5]));
        let out = run("Unpack", &[("num", 2i64.into())], vec![x.clone()]).unwrap();
        assert_eq!(ints(&out[1]), (vec![3], vec![3, 4, 5]));
        let (_, msg) = run_err("Unpack", &[("num", 3i64.into())], vec![x]);
        assert_eq!(msg, "Input shape axis 0 must equal 3, got shape [2,3]");
        let e = Tensor::zeros(DType::F32, &[0, 2]).unwrap();
        assert!(run("Unpack", &[("num", 0i64.into())], vec![e])
            .unwrap()
            .is_empty());
        assert!(run(
            "Unpack",
            &[("num", 1i64.into())],
            vec![Tensor::scalar(1i32)]
        )
        .is_err());
    }
}
