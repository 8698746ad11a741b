//! `Fill`, `ZerosLike` and `OnesLike`: tensors of one repeated value.
//!
//! Invariants: sizes are checked (non-negative dims, no overflow) before allocation, which
//! is fallible; zeros are the dtype's default (false, empty string); one is `Cast(true)`,
//! so `OnesLike` works for every numeric dtype and bool but not string.

use rill_graph::{Error, Node, Result, Tensor};

use super::cast::cast_tensor;
use super::util::{filled, kernel, shape_str, take, with_dtype};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Fill", fill_kernel);
    r.cpu("ZerosLike", zeros_like);
    r.cpu("OnesLike", ones_like);
}

/// A tensor of `dims` with every element equal to the scalar `value`.
pub(super) fn fill(value: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let n = rill_graph::element_count(dims)?;
    with_dtype!(value.dtype(), T => Tensor::new(dims, filled(n, value.scalar_value::<T>()?)?))
}

fn fill_kernel(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [dims, value] = take(inputs)?;
        if dims.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "dims must be a vector, got shape {}",
                shape_str(dims.dims())
            )));
        }
        if value.rank() != 0 {
            return Err(Error::invalid_argument(format!(
                "value must be a scalar, got shape {}",
                shape_str(value.dims())
            )));
        }
        let dims = dims
            .to_i64_vec()?
            .into_iter()
            .map(|d| {
                usize::try_from(d)
                    .map_err(|_| Error::invalid_argument(format!("Dimension {d} must be >= 0")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![fill(&value, &dims)?])
    })
}

fn zeros_like(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        Ok(vec![Tensor::zeros(x.dtype(), x.dims())?])
    })
}

fn ones_like(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        let one = cast_tensor(&Tensor::scalar(true), x.dtype(), false)?;
        Ok(vec![fill(&one, x.dims())?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, DType, Tensor};

    #[test]
    fn fill() {
        let y = run1("Fill", &[], vec![i(&[2], &[2, 3]), Tensor::scalar(7i64)]).unwrap();
        assert_eq!(longs(&y), (vec![2, 3], vec![7; 6]));
        let y = run1(
            "Fill",
            &[],
            vec![l(&[0], &[]), Tensor::scalar(b"s".to_vec())],
        )
        .unwrap();
        assert_eq!(y.as_slice::<Vec<u8>>().unwrap(), &[b"s".to_vec()]);
        let y = run1("Fill", &[], vec![i(&[2], &[0, 3]), Tensor::scalar(1.0f32)]).unwrap();
        assert_eq!(y.dims(), &[0, 3]);
        let (code, msg) = run_err("Fill", &[], vec![i(&[1], &[-1]), Tensor::scalar(1.0f32)]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "Dimension -1 must be >= 0");
        let (_, msg) = run_err("Fill", &[], vec![i(&[1], &[2]), f(&[1], &[1.0])]);
        assert_eq!(msg, "value must be a scalar, got shape [1]");
        assert!(run(
            "Fill",
            &[],
            vec![l(&[2], &[1 << 40, 1 << 40]), Tensor::scalar(1u8)]
        )
        .is_err());
    }

    #[test]
    fn zeros_and_ones_like() {
        let x = f(&[2], &[3.0, 4.0]);
        assert_eq!(
            floats(&run1("ZerosLike", &[], vec![x.clone()]).unwrap()),
            (vec![2], vec![0.0, 0.0])
        );
        assert_eq!(
            floats(&run1("OnesLike", &[], vec![x]).unwrap()),
            (vec![2], vec![1.0, 1.0])
        );
        let b = Tensor::vector(vec![false]);
        assert_eq!(
            run1("OnesLike", &[], vec![b])
                .unwrap()
                .as_slice::<bool>()
                .unwrap(),
            &[true]
        );
        let s = Tensor::vector(vec![b"x".to_vec()]);
        assert_eq!(
            run1("ZerosLike", &[], vec![s.clone()])
                .unwrap()
                .as_slice::<Vec<u8>>()
                .unwrap(),
            &[Vec::<u8>::new()]
        );
        assert_eq!(run_err("OnesLike", &[], vec![s]).0, Code::Unimplemented);
        let h = Tensor::zeros(DType::F16, &[1]).unwrap();
        assert_eq!(
            run1("OnesLike", &[], vec![h])
                .unwrap()
                .as_slice::<half::f16>()
                .unwrap(),
            &[half::f16::ONE]
        );
    }
}
