//! `DynamicStitch` and `ParallelDynamicStitch`: interleave `data[i]` slices into the rows
//! named by `indices[i]`.
//!
//! The output is `[max(indices) + 1] + data[0].shape[indices[0].rank:]`; for a duplicated
//! index the value from the later input (and later position) wins, and rows no index names
//! are zero (TensorFlow leaves them uninitialised).
//!
//! Invariants: TensorFlow's shape checks; every index is checked before anything is
//! written; inputs are `N` index tensors followed by `N` data tensors.

use rill_graph::{Error, Node, Result, Tensor};

use super::gather::copy_rows_tensor;
use super::util::{filled, kernel, product, shape_str};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("DynamicStitch", stitch);
    r.cpu("ParallelDynamicStitch", stitch);
}

fn stitch(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|mut inputs| {
        if inputs.is_empty() || inputs.len() % 2 != 0 {
            return Err(Error::invalid_argument(format!(
                "DynamicStitch needs N indices and N data tensors, got {} inputs",
                inputs.len()
            )));
        }
        let data = inputs.split_off(inputs.len() / 2);
        let indices = inputs;
        let (i0, d0) = (&indices[0], &data[0]);
        if !d0.dims().starts_with(i0.dims()) {
            return Err(Error::invalid_argument(format!(
                "data[0].shape = {} does not start with indices[0].shape = {}",
                shape_str(d0.dims()),
                shape_str(i0.dims())
            )));
        }
        let extra = &d0.dims()[i0.rank()..];
        let inner = product(extra);
        let mut max_index: i64 = -1;
        let mut values = Vec::with_capacity(indices.len());
        for (k, (ind, d)) in indices.iter().zip(&data).enumerate() {
            if !d.dims().starts_with(ind.dims()) {
                return Err(Error::invalid_argument(format!(
                    "data[{k}].shape = {} does not start with indices[{k}].shape = {}",
                    shape_str(d.dims()),
                    shape_str(ind.dims())
                )));
            }
            if &d.dims()[ind.rank()..] != extra {
                return Err(Error::invalid_argument(format!(
                    "Need data[0].shape[{}:] = data[{k}].shape[{}:], got data[0].shape = {}, data[{k}].shape = {}, indices[0].shape = {}, indices[{k}].shape = {}",
                    i0.rank(),
                    ind.rank(),
                    shape_str(d0.dims()),
                    shape_str(d.dims()),
                    shape_str(i0.dims()),
                    shape_str(ind.dims())
                )));
            }
            if d.dtype() != d0.dtype() {
                return Err(Error::invalid_argument(format!(
                    "data[{k}] has dtype {}, expected {}",
                    d.dtype(),
                    d0.dtype()
                )));
            }
            let v = ind.to_i64_vec()?;
            if let Some(&bad) = v.iter().find(|&&x| x < 0) {
                return Err(Error::invalid_argument(format!(
                    "indices[{k}] = {bad} is out of range"
                )));
            }
            max_index = v.iter().copied().fold(max_index, i64::max);
            values.push(v);
        }
        let rows = (max_index + 1) as usize;
        let mut dims = vec![rows];
        dims.extend_from_slice(extra);
        rill_graph::element_count(&dims)?;
        // Source row of each output row, over the data tensors concatenated (one extra
        // zero row at the end for rows no index names).
        let total: usize = values.iter().map(Vec::len).sum();
        let mut source = filled(rows, total)?;
        let mut base = 0;
        for v in &values {
            for (j, &x) in v.iter().enumerate() {
                source[x as usize] = base + j;
            }
            base += v.len();
        }
        let mut flat: Vec<Tensor> = data
            .iter()
            .zip(&values)
            .map(|(d, v)| d.reshape(&[v.len(), inner]))
            .collect::<Result<_>>()?;
        flat.push(Tensor::zeros(d0.dtype(), &[1, inner])?);
        let all = super::concat::concat_along(&flat, 0)?;
        Ok(vec![copy_rows_tensor(&all, &source, inner, &dims)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::Tensor;

    #[test]
    fn stitches_in_order() {
        // TensorFlow's doc example: indices [6], [4,1], [[5,2],[0,3]].
        let y = run1(
            "DynamicStitch",
            &[],
            vec![
                Tensor::scalar(6i32),
                i(&[2], &[4, 1]),
                i(&[2, 2], &[5, 2, 0, 3]),
                f(&[2], &[61.0, 62.0]),
                f(&[2, 2], &[41.0, 42.0, 11.0, 12.0]),
                f(&[2, 2, 2], &[51.0, 52.0, 21.0, 22.0, 1.0, 2.0, 31.0, 32.0]),
            ],
        )
        .unwrap();
        let (dims, v) = floats(&y);
        assert_eq!(dims, vec![7, 2]);
        assert_eq!(
            v,
            vec![1.0, 2.0, 11.0, 12.0, 21.0, 22.0, 31.0, 32.0, 41.0, 42.0, 51.0, 52.0, 61.0, 62.0]
        );
    }

    #[test]
    fn later_inputs_win_and_gaps_are_zero() {
        let y = run1(
            "DynamicStitch",
            &[],
            vec![
                i(&[2], &[0, 2]),
                i(&[1], &[0]),
                i(&[2], &[1, 2]),
                i(&[1], &[9]),
            ],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![3], vec![9, 0, 2]));
        let y = run1(
            "ParallelDynamicStitch",
            &[],
            vec![i(&[0], &[]), f(&[0, 3], &[])],
        )
        .unwrap();
        assert_eq!(y.dims(), &[0, 3]);
        assert!(run("DynamicStitch", &[], vec![i(&[1], &[-1]), i(&[1], &[1])]).is_err());
        assert!(run(
            "DynamicStitch",
            &[],
            vec![i(&[2], &[0, 1]), i(&[3], &[1, 2, 3])]
        )
        .is_err());
    }
}
