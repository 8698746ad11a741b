//! `ReverseV2` (axes as a tensor) and `Reverse` (a bool per dim).
//!
//! Invariants: axes are checked as TensorFlow does (in range, negative ones wrapped, none
//! twice); reversing nothing forwards the input's buffer; otherwise one pass of the strided
//! engine with negative strides.

use rill_graph::{Error, Node, Result, Tensor};

use super::strided::{gather_tensor, signed_strides};
use super::util::{kernel, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("ReverseV2", reverse_v2);
    r.cpu("Reverse", reverse_v1);
}

/// `x` reversed along the dims flagged in `flip`.
pub(super) fn reverse(x: &Tensor, flip: &[bool]) -> Result<Tensor> {
    if !flip.contains(&true) || x.num_elements() == 0 {
        return Ok(x.clone());
    }
    let mut strides = signed_strides(x.dims());
    let mut offset = 0usize;
    for (k, &f) in flip.iter().enumerate() {
        if f {
            offset += (x.dims()[k] - 1) * strides[k] as usize;
            strides[k] = -strides[k];
        }
    }
    gather_tensor(x, offset, x.dims(), &strides)
}

fn reverse_v2(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, axis] = take(inputs)?;
        if axis.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "'axis' must be 1-dimension, not {}",
                shape_str(axis.dims())
            )));
        }
        let rank = x.rank() as i64;
        let mut flip = vec![false; x.rank()];
        for (i, &a) in axis.to_i64_vec()?.iter().enumerate() {
            let c = if a < 0 { a + rank } else { a };
            if !(0 <= c && c < rank) {
                return Err(Error::invalid_argument(format!(
                    "'axis'[{i}] = {a} is out of valid range [0, {}",
                    rank - 1
                )));
            }
            if flip[c as usize] {
                return Err(Error::invalid_argument(format!(
                    "axis {c} specified more than once."
                )));
            }
            flip[c as usize] = true;
        }
        Ok(vec![reverse(&x, &flip)?])
    })
}

fn reverse_v1(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, dims] = take(inputs)?;
        if dims.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "'dims' must be 1-dimension, not {}",
                shape_str(dims.dims())
            )));
        }
        let flip = dims.as_slice::<bool>()?;
        if flip.len() != x.rank() {
            return Err(Error::invalid_argument(format!(
                "'dims' must have the same number of values as 'input' has dimensions. 'input' has {}'dims' has {} values",
                x.rank(),
                flip.len()
            )));
        }
        Ok(vec![reverse(&x, flip)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, Tensor};

    #[test]
    fn reverse_v2() {
        let x = iota(&[2, 3]);
        let y = run1("ReverseV2", &[], vec![x.clone(), i(&[1], &[1])]).unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![2, 1, 0, 5, 4, 3]));
        let y = run1("ReverseV2", &[], vec![x.clone(), l(&[2], &[-1, 0])]).unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![5, 4, 3, 2, 1, 0]));
        let y = run1("ReverseV2", &[], vec![x.clone(), i(&[0], &[])]).unwrap();
        assert!(std::ptr::eq(y.buffer(), x.buffer()));
        let (code, msg) = run_err("ReverseV2", &[], vec![x.clone(), i(&[2], &[1, -1])]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "axis 1 specified more than once.");
        assert!(run("ReverseV2", &[], vec![x, i(&[1], &[2])]).is_err());
        let y = run1("ReverseV2", &[], vec![iota(&[0, 2]), i(&[1], &[1])]).unwrap();
        assert_eq!(y.dims(), &[0, 2]);
    }

    #[test]
    fn reverse_v1() {
        let x = iota(&[2, 2]);
        let y = run1(
            "Reverse",
            &[],
            vec![x.clone(), Tensor::vector(vec![true, false])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 2], vec![2, 3, 0, 1]));
        assert!(run("Reverse", &[], vec![x, Tensor::vector(vec![true])]).is_err());
    }
}
