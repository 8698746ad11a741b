//! `Where` with one input: the int64 coordinates of the true (non-zero) elements.
//!
//! Invariants: the output is `[num_true, rank]` int64 in row-major order of the input;
//! "true" is `x != 0` for numbers (NaN counts, as in TensorFlow) and `x` for bool; string
//! inputs are Unimplemented.

use rill_graph::{DType, Node, Result, Tensor};

use super::cast::cast_tensor;
use super::util::{kernel, row_strides, take};
use crate::{unsupported_dtype, Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Where", where_kernel);
}

fn where_kernel(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        if x.dtype() == DType::String {
            return Err(unsupported_dtype("Where", x.dtype()));
        }
        let truth = cast_tensor(&x, DType::Bool, false)?;
        let truth = truth.as_slice::<bool>()?;
        let rank = x.rank();
        let strides = row_strides(x.dims());
        let mut coords = Vec::new();
        for (flat, _) in truth.iter().enumerate().filter(|(_, &t)| t) {
            let mut rem = flat;
            for &s in &strides {
                coords.push((rem / s) as i64);
                rem %= s;
            }
        }
        let num_true = truth.iter().filter(|&&t| t).count();
        Ok(vec![Tensor::new(&[num_true, rank], coords)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, Tensor};

    #[test]
    fn coordinates_of_true_values() {
        let x = Tensor::new(&[2, 2], vec![true, false, false, true]).unwrap();
        assert_eq!(
            longs(&run1("Where", &[], vec![x]).unwrap()),
            (vec![2, 2], vec![0, 0, 1, 1])
        );
        let x = f(&[4], &[0.0, f32::NAN, -0.0, 2.0]);
        assert_eq!(
            longs(&run1("Where", &[], vec![x]).unwrap()),
            (vec![2, 1], vec![1, 3])
        );
        let y = run1("Where", &[], vec![i(&[2, 3], &[0; 6])]).unwrap();
        assert_eq!(y.dims(), &[0, 2]);
        let y = run1("Where", &[], vec![Tensor::scalar(true)]).unwrap();
        assert_eq!(y.dims(), &[1, 0]);
        let s = Tensor::vector(vec![b"a".to_vec()]);
        assert_eq!(run_err("Where", &[], vec![s]).0, Code::Unimplemented);
    }
}
