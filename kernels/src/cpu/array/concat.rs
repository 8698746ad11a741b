//! `ConcatV2`, `Concat` (axis first), `ConcatOffset` and `Pack` (stack).
//!
//! Invariants: shapes are checked with TensorFlow's messages before anything is copied;
//! every input must have the first input's dtype; the copy moves whole contiguous rows
//! (one per input per outer index) and runs in parallel over outer rows when large.

use rayon::prelude::*;
use rill_graph::{Element, Error, Node, Result, Tensor};

use super::util::{
    attr_int, filled, int_scalar, int_vector, kernel, product, shape_str, with_dtype,
};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("ConcatV2", |_| concat(false));
    r.cpu("Concat", |_| concat(true));
    r.cpu("ConcatOffset", concat_offset);
    r.cpu("Pack", pack);
}

const PARALLEL_MIN: usize = 1 << 16;

fn rows<T: Element>(values: &[Tensor], axis: usize, out_len: usize) -> Result<Vec<T>> {
    let outer = product(&values[0].dims()[..axis]);
    let parts: Vec<(&[T], usize)> = values
        .iter()
        .map(|t| {
            let row = product(&t.dims()[axis..]);
            Ok((t.as_slice::<T>()?, row))
        })
        .collect::<Result<_>>()?;
    let out_row: usize = parts.iter().map(|p| p.1).sum();
    if out_len >= PARALLEL_MIN && outer > 1 && out_row > 0 {
        let mut out = filled(out_len, T::default())?;
        out.par_chunks_mut(out_row)
            .enumerate()
            .for_each(|(o, dst)| {
                let mut at = 0;
                for &(src, row) in &parts {
                    dst[at..at + row].clone_from_slice(&src[o * row..(o + 1) * row]);
                    at += row;
                }
            });
        return Ok(out);
    }
    let mut out = Vec::new();
    out.try_reserve_exact(out_len)
        .map_err(|_| Error::resource_exhausted(format!("cannot allocate {out_len} elements")))?;
    for o in 0..outer {
        for &(src, row) in &parts {
            out.extend_from_slice(&src[o * row..(o + 1) * row]);
        }
    }
    Ok(out)
}

/// Concatenates `values` (checked to agree off `axis`) along `axis`.
pub(super) fn concat_along(values: &[Tensor], axis: usize) -> Result<Tensor> {
    let first = &values[0];
    let mut dims = first.dims().to_vec();
    dims[axis] = values.iter().map(|t| t.dims()[axis]).sum();
    let n = rill_graph::element_count(&dims)?;
    if values.len() == 1 {
        return Ok(first.clone());
    }
    with_dtype!(first.dtype(), T => Tensor::new(&dims, rows::<T>(values, axis, n)?))
}

/// TensorFlow's `ConcatBaseOp` checks; returns the non-negative axis.
fn check_concat(values: &[Tensor], axis: i64) -> Result<usize> {
    let first = values
        .first()
        .ok_or_else(|| Error::invalid_argument("ConcatOp : Expected at least one input"))?;
    let rank = first.rank() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0 <= a && a < rank) {
        return Err(Error::invalid_argument(format!(
            "ConcatOp : Expected concatenating dimensions in the range [{}, {rank}), but got {axis}",
            -rank
        )));
    }
    let a = a as usize;
    for (i, t) in values.iter().enumerate().skip(1) {
        if t.rank() != first.rank() {
            return Err(Error::invalid_argument(format!(
                "ConcatOp : Ranks of all input tensors should match: shape[0] = {} vs. shape[{i}] = {}",
                shape_str(first.dims()),
                shape_str(t.dims())
            )));
        }
        if let Some(j) = (0..first.rank()).find(|&j| j != a && t.dims()[j] != first.dims()[j]) {
            return Err(Error::invalid_argument(format!(
                "ConcatOp : Dimension {j} in both shapes must be equal: shape[0] = {} vs. shape[{i}] = {}",
                shape_str(first.dims()),
                shape_str(t.dims())
            )));
        }
        if t.dtype() != first.dtype() {
            return Err(Error::invalid_argument(format!(
                "ConcatOp : input {i} has dtype {}, expected {}",
                t.dtype(),
                first.dtype()
            )));
        }
    }
    Ok(a)
}

fn concat(axis_first: bool) -> Result<Box<dyn Kernel>> {
    kernel(move |mut inputs| {
        if inputs.len() < 2 {
            return Err(Error::invalid_argument("ConcatOp needs values and an axis"));
        }
        let axis = if axis_first {
            inputs.remove(0)
        } else {
            inputs.pop().expect("two or more inputs")
        };
        let axis = int_scalar(&axis, "concat_dim")?;
        let a = check_concat(&inputs, axis)?;
        Ok(vec![concat_along(&inputs, a)?])
    })
}

fn concat_offset(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|mut inputs| {
        if inputs.len() < 2 {
            return Err(Error::invalid_argument(
                "ConcatOffset needs concat_dim and shapes",
            ));
        }
        let axis = int_scalar(&inputs.remove(0), "concat_dim")?;
        let shapes = inputs
            .iter()
            .map(|s| int_vector(s, "shape"))
            .collect::<Result<Vec<_>>>()?;
        let rank = shapes[0].len() as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if !(0 <= a && a < rank) {
            return Err(Error::invalid_argument(format!(
                "Concat dim is out of range: {axis} vs. {rank}"
            )));
        }
        let a = a as usize;
        let mut offset = 0i64;
        let mut out = Vec::with_capacity(shapes.len());
        for (i, (s, t)) in shapes.iter().zip(&inputs).enumerate() {
            if s.len() != shapes[0].len() {
                return Err(Error::invalid_argument(format!(
                    "input {i} should contain {rank} elements, but got {}",
                    s.len()
                )));
            }
            let mut v = vec![0i64; s.len()];
            for j in 0..s.len() {
                if j == a {
                    v[j] = offset;
                    offset += s[j];
                } else if s[j] != shapes[0][j] {
                    return Err(Error::invalid_argument(format!(
                        "All dimensions except {a} must match. Input {i} has shape {s:?} and doesn't match input 0 with shape {:?}.",
                        shapes[0]
                    )));
                }
            }
            out.push(super::util::index_tensor(t.dtype(), &[v.len()], v)?);
        }
        Ok(out)
    })
}

fn pack(node: &Node) -> Result<Box<dyn Kernel>> {
    let axis = attr_int(node, "axis", Some(0))?;
    kernel(move |inputs| {
        let first = inputs
            .first()
            .ok_or_else(|| Error::invalid_argument("Pack needs at least one input"))?;
        let expanded = first.rank() as i64 + 1;
        let a = if axis < 0 { axis + expanded } else { axis };
        if !(0 <= a && a < expanded) {
            return Err(Error::invalid_argument(format!(
                "axis = {axis} not in [{}, {expanded})",
                -expanded
            )));
        }
        let a = a as usize;
        let mut dims = first.dims().to_vec();
        dims.insert(a, 1);
        let mut parts = Vec::with_capacity(inputs.len());
        for (i, t) in inputs.iter().enumerate() {
            if t.dims() != first.dims() {
                return Err(Error::invalid_argument(format!(
                    "Shapes of all inputs must match: values[0].shape = {} != values[{i}].shape = {}",
                    shape_str(first.dims()),
                    shape_str(t.dims())
                )));
            }
            if t.dtype() != first.dtype() {
                return Err(Error::invalid_argument(format!(
                    "Pack: values[{i}] has dtype {}, expected {}",
                    t.dtype(),
                    first.dtype()
                )));
            }
            parts.push(t.reshape(&dims)?);
        }
        Ok(vec![concat_along(&parts, a)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, DType, Tensor};

    #[test]
    fn concat_v2_and_v1() {
        let a = iota(&[2, 2]);
        let b = i(&[2, 1], &[9, 8]);
        let y = run1(
            "ConcatV2",
            &[],
            vec![a.clone(), b.clone(), Tensor::scalar(1i32)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![0, 1, 9, 2, 3, 8]));
        let y = run1(
            "ConcatV2",
            &[],
            vec![a.clone(), b.clone(), Tensor::scalar(-1i64)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![0, 1, 9, 2, 3, 8]));
        let y = run1(
            "Concat",
            &[],
            vec![Tensor::scalar(0i32), a.clone(), a.clone()],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![4, 2], vec![0, 1, 2, 3, 0, 1, 2, 3]));
        let (code, msg) = run_err(
            "ConcatV2",
            &[],
            vec![a.clone(), b.clone(), Tensor::scalar(0i32)],
        );
        assert_eq!(code, Code::InvalidArgument);
        assert!(
            msg.contains("shape[0] = [2,2] vs. shape[1] = [2,1]"),
            "{msg}"
        );
        let (_, msg) = run_err("ConcatV2", &[], vec![a.clone(), b, Tensor::scalar(2i32)]);
        assert_eq!(
            msg,
            "ConcatOp : Expected concatenating dimensions in the range [-2, 2), but got 2"
        );
        let s = Tensor::scalar(1.0f32);
        assert!(run("ConcatV2", &[], vec![s.clone(), s, Tensor::scalar(0i32)]).is_err());
        assert!(run(
            "ConcatV2",
            &[],
            vec![a, f(&[2, 2], &[0.0; 4]), Tensor::scalar(0i32)]
        )
        .is_err());
    }

    #[test]
    fn concat_of_empty() {
        let e = Tensor::zeros(DType::F32, &[0, 3]).unwrap();
        let x = f(&[1, 3], &[1.0, 2.0, 3.0]);
        let y = run1(
            "ConcatV2",
            &[],
            vec![e.clone(), x.clone(), e.clone(), Tensor::scalar(0i32)],
        )
        .unwrap();
        assert_eq!(floats(&y), (vec![1, 3], vec![1.0, 2.0, 3.0]));
        let y = run1("ConcatV2", &[], vec![e.clone(), e, Tensor::scalar(1i32)]).unwrap();
        assert_eq!(y.dims(), &[0, 6]);
    }

    #[test]
    fn big_concat_matches_rows() {
        let a = iota(&[300, 200]);
        let b = iota(&[300, 100]);
        let y = run1("ConcatV2", &[], vec![a, b, Tensor::scalar(1i32)]).unwrap();
        let (dims, v) = ints(&y);
        assert_eq!(dims, vec![300, 300]);
        assert_eq!(v[299 * 300 + 199], 299 * 200 + 199);
        assert_eq!(v[299 * 300 + 200], 299 * 100);
    }

    #[test]
    fn concat_offset() {
        let out = run(
            "ConcatOffset",
            &[],
            vec![
                Tensor::scalar(1i32),
                i(&[3], &[2, 2, 7]),
                i(&[3], &[2, 3, 7]),
                i(&[3], &[2, 5, 7]),
            ],
        )
        .unwrap();
        let got: Vec<_> = out.iter().map(|t| ints(t).1).collect();
        assert_eq!(got, vec![vec![0, 0, 0], vec![0, 2, 0], vec![0, 5, 0]]);
        assert!(run(
            "ConcatOffset",
            &[],
            vec![Tensor::scalar(1i32), i(&[2], &[2, 2]), i(&[2], &[3, 3])]
        )
        .is_err());
    }

    #[test]
    fn pack() {
        let a = i(&[2], &[1, 2]);
        let b = i(&[2], &[3, 4]);
        let y = run1("Pack", &[], vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(ints(&y), (vec![2, 2], vec![1, 2, 3, 4]));
        let y = run1(
            "Pack",
            &[("axis", (-1i64).into())],
            vec![a.clone(), b.clone()],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 2], vec![1, 3, 2, 4]));
        let y = run1(
            "Pack",
            &[],
            vec![Tensor::scalar(5i32), Tensor::scalar(6i32)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2], vec![5, 6]));
        let (_, msg) = run_err("Pack", &[("axis", 2i64.into())], vec![a.clone(), b]);
        assert_eq!(msg, "axis = 2 not in [-2, 2)");
        let (_, msg) = run_err("Pack", &[], vec![a, i(&[3], &[1, 2, 3])]);
        assert_eq!(
            msg,
            "Shapes of all inputs must match: values[0].shape = [2] != values[1].shape = [3]"
        );
    }
}
