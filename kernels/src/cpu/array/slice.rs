//! `Slice`: a box of `size` elements starting at `begin` (`size[i] = -1`: to the end).
//!
//! Invariants: TensorFlow's `SharedSliceValidation` checks and messages; a slice covering
//! the whole input shares its buffer; anything else is copied by the strided engine.

use rill_graph::{Error, Node, Result};

use super::strided::{gather_tensor, signed_strides};
use super::util::{kernel, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Slice", slice);
}

fn slice(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, begin, size] = take(inputs)?;
        let rank = x.rank();
        if begin.rank() != 1
            || size.rank() != 1
            || begin.num_elements() != rank
            || size.num_elements() != rank
        {
            return Err(Error::invalid_argument(format!(
                "Expected begin and size arguments to be 1-D tensors of size {rank}, but got shapes {} and {} instead.",
                shape_str(begin.dims()),
                shape_str(size.dims())
            )));
        }
        let begin = begin.to_i64_vec()?;
        let size = size.to_i64_vec()?;
        let mut dims = Vec::with_capacity(rank);
        let mut offset = 0usize;
        let strides = signed_strides(x.dims());
        for i in 0..rank {
            let d = x.dims()[i] as i64;
            let b = begin[i];
            let s = if size[i] == -1 { d - b } else { size[i] };
            if d == 0 {
                if b != 0 || (size[i] != 0 && size[i] != -1) {
                    return Err(Error::invalid_argument(format!(
                        "Expected begin[{i}] == 0 (got {b}) and size[{i}] == 0 (got {}) when input.dim_size({i}) == 0",
                        size[i]
                    )));
                }
            } else {
                if !(0 <= b && b <= d) {
                    return Err(Error::invalid_argument(format!(
                        "Expected begin[{i}] in [0, {d}], but got {b}"
                    )));
                }
                if !(0 <= s && b + s <= d) {
                    return Err(Error::invalid_argument(format!(
                        "Expected size[{i}] in [0, {}], but got {s}",
                        d - b
                    )));
                }
            }
            dims.push(s.max(0) as usize);
            offset += b.max(0) as usize * strides[i].max(0) as usize;
        }
        if dims == x.dims() {
            return Ok(vec![x]);
        }
        Ok(vec![gather_tensor(&x, offset, &dims, &strides)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, DType, Tensor};

    #[test]
    fn slices() {
        let x = iota(&[3, 4]);
        let y = run1(
            "Slice",
            &[],
            vec![x.clone(), i(&[2], &[1, 1]), i(&[2], &[2, -1])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![5, 6, 7, 9, 10, 11]));
        let y = run1(
            "Slice",
            &[],
            vec![x.clone(), l(&[2], &[0, 3]), l(&[2], &[3, 1])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![3, 1], vec![3, 7, 11]));
        let y = run1(
            "Slice",
            &[],
            vec![x.clone(), i(&[2], &[2, 0]), i(&[2], &[0, 4])],
        )
        .unwrap();
        assert_eq!(y.dims(), &[0, 4]);
        let all = run1(
            "Slice",
            &[],
            vec![x.clone(), i(&[2], &[0, 0]), i(&[2], &[-1, -1])],
        )
        .unwrap();
        assert!(std::ptr::eq(all.buffer(), x.buffer()));
        let s = run1(
            "Slice",
            &[],
            vec![Tensor::scalar(4i32), i(&[0], &[]), i(&[0], &[])],
        )
        .unwrap();
        assert_eq!(ints(&s), (vec![], vec![4]));
        let e = Tensor::zeros(DType::F32, &[0, 2]).unwrap();
        let y = run1("Slice", &[], vec![e, i(&[2], &[0, 1]), i(&[2], &[-1, 1])]).unwrap();
        assert_eq!(y.dims(), &[0, 1]);
    }

    #[test]
    fn bad_slices() {
        let x = iota(&[3, 4]);
        let (code, msg) = run_err(
            "Slice",
            &[],
            vec![x.clone(), i(&[2], &[1, 1]), i(&[2], &[3, 1])],
        );
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "Expected size[0] in [0, 2], but got 3");
        let (_, msg) = run_err(
            "Slice",
            &[],
            vec![x.clone(), i(&[2], &[4, 1]), i(&[2], &[0, 1])],
        );
        assert_eq!(msg, "Expected begin[0] in [0, 3], but got 4");
        let (_, msg) = run_err("Slice", &[], vec![x, i(&[1], &[0]), i(&[2], &[1, 1])]);
        assert_eq!(msg, "Expected begin and size arguments to be 1-D tensors of size 2, but got shapes [1] and [2] instead.");
    }
}
