//! `OneHot`: `on_value` where an index equals the position along the new `axis`,
//! `off_value` elsewhere.
//!
//! Invariants: the output is `indices.shape` with `depth` inserted at `axis` (`-1`: last);
//! indices outside `[0, depth)`, negative ones included, produce a row of `off_value` (as
//! in TensorFlow, never an error); `on_value`/`off_value` may be of any dtype.

use rill_graph::{Element, Error, Node, Result, Tensor};

use super::util::{attr_int, filled, int_scalar, kernel, product, shape_str, take, with_dtype};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("OneHot", one_hot);
}

fn fill_one_hot<T: Element>(
    idx: &[i64],
    depth: usize,
    suffix: usize,
    on: &Tensor,
    off: &Tensor,
) -> Result<Vec<T>> {
    let on = on.as_slice::<T>()?[0].clone();
    let off = off.as_slice::<T>()?[0].clone();
    let prefix = idx.len().checked_div(suffix).unwrap_or(0);
    let mut out = filled(prefix * depth * suffix, off)?;
    for p in 0..prefix {
        for s in 0..suffix {
            let v = idx[p * suffix + s];
            if 0 <= v && (v as usize) < depth {
                out[(p * depth + v as usize) * suffix + s] = on.clone();
            }
        }
    }
    Ok(out)
}

fn one_hot(node: &Node) -> Result<Box<dyn Kernel>> {
    let axis = attr_int(node, "axis", Some(-1))?;
    kernel(move |inputs| {
        let [indices, depth, on, off] = take(inputs)?;
        let out_rank = indices.rank() as i64 + 1;
        if !(axis == -1 || (0 <= axis && axis < out_rank)) {
            return Err(Error::invalid_argument(format!(
                "Expected axis to be -1 or between [0, {out_rank}).  But received: {axis}"
            )));
        }
        if depth.rank() != 0 {
            return Err(Error::invalid_argument(format!(
                "depth must be a scalar, but got: {}",
                shape_str(depth.dims())
            )));
        }
        for (name, t) in [("on_value", &on), ("off_value", &off)] {
            if t.rank() != 0 {
                return Err(Error::invalid_argument(format!(
                    "{name} must be a scalar, but got: {}",
                    shape_str(t.dims())
                )));
            }
        }
        if on.dtype() != off.dtype() {
            return Err(Error::invalid_argument(format!(
                "on_value ({}) and off_value ({}) must have the same dtype",
                on.dtype(),
                off.dtype()
            )));
        }
        let d = int_scalar(&depth, "depth")?;
        if d < 0 {
            return Err(Error::invalid_argument(format!(
                "depth must be non-negative, got: {d}"
            )));
        }
        let d = d as usize;
        let at = if axis == -1 {
            indices.rank()
        } else {
            axis as usize
        };
        let mut dims = indices.dims().to_vec();
        dims.insert(at, d);
        rill_graph::element_count(&dims)?;
        let suffix = product(&indices.dims()[at..]);
        let idx = indices.to_i64_vec()?;
        let out = with_dtype!(on.dtype(), T => Tensor::new(&dims, fill_one_hot::<T>(&idx, d, suffix, &on, &off)?))?;
        Ok(vec![out])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::Tensor;

    #[test]
    fn one_hot_last_axis() {
        let y = run1(
            "OneHot",
            &[],
            vec![
                i(&[3], &[0, 2, -1]),
                Tensor::scalar(3i32),
                Tensor::scalar(5.0f32),
                Tensor::scalar(0.0f32),
            ],
        )
        .unwrap();
        assert_eq!(
            floats(&y),
            (
                vec![3, 3],
                vec![5.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]
            )
        );
    }

    #[test]
    fn one_hot_axis_zero_and_batches() {
        let a = [("axis", 0i64.into())];
        let y = run1(
            "OneHot",
            &a,
            vec![
                l(&[2], &[1, 3]),
                Tensor::scalar(3i32),
                Tensor::scalar(1i32),
                Tensor::scalar(0i32),
            ],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![3, 2], vec![0, 0, 1, 0, 0, 0]));
        let a = [("axis", 1i64.into())];
        let y = run1(
            "OneHot",
            &a,
            vec![
                i(&[2, 2], &[0, 1, 1, 0]),
                Tensor::scalar(2i32),
                Tensor::scalar(true),
                Tensor::scalar(false),
            ],
        )
        .unwrap();
        assert_eq!(y.dims(), &[2, 2, 2]);
        assert_eq!(
            y.as_slice::<bool>().unwrap(),
            &[true, false, false, true, false, true, true, false]
        );
        let y = run1(
            "OneHot",
            &[],
            vec![
                Tensor::scalar(1u8),
                Tensor::scalar(2i32),
                Tensor::scalar(1i32),
                Tensor::scalar(0i32),
            ],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2], vec![0, 1]));
    }

    #[test]
    fn bad_one_hot() {
        let on = Tensor::scalar(1i32);
        let off = Tensor::scalar(0i32);
        assert!(run(
            "OneHot",
            &[],
            vec![
                i(&[1], &[0]),
                Tensor::scalar(-1i32),
                on.clone(),
                off.clone()
            ]
        )
        .is_err());
        let (_, msg) = run_err(
            "OneHot",
            &[("axis", 3i64.into())],
            vec![i(&[1], &[0]), Tensor::scalar(2i32), on.clone(), off.clone()],
        );
        assert_eq!(
            msg,
            "Expected axis to be -1 or between [0, 2).  But received: 3"
        );
        assert!(run(
            "OneHot",
            &[],
            vec![i(&[1], &[0]), Tensor::scalar(2i32), i(&[1], &[1]), off]
        )
        .is_err());
    }
}
