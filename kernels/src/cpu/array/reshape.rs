//! `Reshape`, `Squeeze` and `ExpandDims`: new dims over the same values.
//!
//! Invariant: the output always shares the input's buffer (no element is copied); the
//! checks and messages are TensorFlow's (one `-1` inferred, zero-sized dims handled as
//! `ReshapeOp` does).

use std::collections::BTreeSet;

use rill_graph::{Error, Node, Result, Tensor};

use super::util::{attr_ints, int_vector, kernel, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Reshape", reshape);
    r.cpu("Squeeze", squeeze);
    r.cpu("ExpandDims", expand_dims);
}

/// The dims `sizes` asks of `input`, TensorFlow's `ReshapeOp::ValidateSizes` and inference.
pub(super) fn resolve_reshape(input: &Tensor, sizes: &[i64]) -> Result<Vec<usize>> {
    let mut unknown: Option<usize> = None;
    let mut product: usize = 1;
    let mut sizes_have_zero = false;
    let mut dims = Vec::with_capacity(sizes.len());
    for (d, &size) in sizes.iter().enumerate() {
        if size == -1 {
            if let Some(u) = unknown {
                return Err(Error::invalid_argument(format!(
                    "Only one input size may be -1, not both {u} and {d}"
                )));
            }
            unknown = Some(d);
            dims.push(1);
        } else if size < 0 {
            return Err(Error::invalid_argument(format!(
                "Size {d} must be non-negative, not {size}"
            )));
        } else if size == 0 {
            sizes_have_zero = true;
            dims.push(0);
        } else {
            let s = size as usize;
            product = product.checked_mul(s).ok_or_else(|| {
                Error::invalid_argument(format!("shape {sizes:?} has too many elements"))
            })?;
            dims.push(s);
        }
    }
    let n = input.num_elements();
    if let Some(u) = unknown {
        let mut input_count: usize = 1;
        for &d in input.dims() {
            if d > 0 || !sizes_have_zero {
                input_count = input_count.checked_mul(d).ok_or_else(|| {
                    Error::invalid_argument(
                        "Reshape cannot infer the missing size: too many elements",
                    )
                })?;
            }
        }
        let missing = input_count / product;
        if missing * product != input_count {
            return Err(Error::invalid_argument(format!(
                "Input to reshape is a tensor with {n} values, but the requested shape requires a multiple of {product}"
            )));
        }
        dims[u] = missing;
    }
    let requested = rill_graph::element_count(&dims)?;
    if requested != n {
        return Err(Error::invalid_argument(format!(
            "Input to reshape is a tensor with {n} values, but the requested shape has {requested}"
        )));
    }
    Ok(dims)
}

fn reshape(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, shape] = take(inputs)?;
        let sizes = int_vector(&shape, "sizes input")?;
        let dims = resolve_reshape(&x, &sizes)?;
        Ok(vec![x.reshape(&dims)?])
    })
}

fn squeeze(node: &Node) -> Result<Box<dyn Kernel>> {
    let axes = attr_ints(node, "squeeze_dims")?;
    kernel(move |inputs| {
        let [x] = take(inputs)?;
        let rank = x.rank() as i64;
        let mut wrapped = BTreeSet::new();
        for &a in &axes {
            if a < -rank || a >= rank {
                return Err(Error::invalid_argument(format!(
                    "Tried to squeeze dim index {a} for tensor with {rank} dimensions."
                )));
            }
            wrapped.insert(if a < 0 { a + rank } else { a } as usize);
        }
        let mut dims = Vec::with_capacity(x.rank());
        for (i, &d) in x.dims().iter().enumerate() {
            if wrapped.is_empty() {
                if d != 1 {
                    dims.push(d);
                }
            } else if wrapped.contains(&i) {
                if d != 1 {
                    return Err(Error::invalid_argument(format!(
                        "Can not squeeze dim[{i}], expected a dimension of 1, got {d}"
                    )));
                }
            } else {
                dims.push(d);
            }
        }
        Ok(vec![x.reshape(&dims)?])
    })
}

fn expand_dims(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, dim] = take(inputs)?;
        if dim.num_elements() != 1 {
            return Err(Error::invalid_argument(format!(
                "'dim' must be a tensor with a single value, got shape {}",
                shape_str(dim.dims())
            )));
        }
        let d = dim.to_i64_vec()?[0];
        let rank = x.rank() as i64;
        if d < -1 - rank || d > rank {
            return Err(Error::invalid_argument(format!(
                "Tried to expand dim index {d} for tensor with {rank} dimensions."
            )));
        }
        let at = if d < 0 { d + rank + 1 } else { d } as usize;
        let mut dims = x.dims().to_vec();
        dims.insert(at, 1);
        Ok(vec![x.reshape(&dims)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{AttrValue, Code, DType, Tensor};

    #[test]
    fn reshape_infers_and_shares() {
        let x = iota(&[2, 3]);
        let y = run1("Reshape", &[], vec![x.clone(), i(&[2], &[-1, 2])]).unwrap();
        assert_eq!(ints(&y), (vec![3, 2], vec![0, 1, 2, 3, 4, 5]));
        assert!(
            std::ptr::eq(x.buffer(), y.buffer()),
            "reshape shares the buffer"
        );
        let y = run1("Reshape", &[], vec![x.clone(), l(&[3], &[1, -1, 1])]).unwrap();
        assert_eq!(y.dims(), &[1, 6, 1]);
        let s = run1("Reshape", &[], vec![i(&[1], &[7]), i(&[0], &[])]).unwrap();
        assert_eq!(s.dims(), &[] as &[usize]);
        let (code, msg) = run_err("Reshape", &[], vec![x.clone(), i(&[2], &[4, -1])]);
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.contains("requires a multiple of 4"), "{msg}");
        let (_, msg) = run_err("Reshape", &[], vec![x.clone(), i(&[2], &[4, 2])]);
        assert_eq!(
            msg,
            "Input to reshape is a tensor with 6 values, but the requested shape has 8"
        );
        let (_, msg) = run_err("Reshape", &[], vec![x.clone(), i(&[2], &[-1, -1])]);
        assert_eq!(msg, "Only one input size may be -1, not both 0 and 1");
        assert!(run("Reshape", &[], vec![x, i(&[2], &[-2, 3])]).is_err());
    }

    #[test]
    fn reshape_empty_tensors() {
        let e = Tensor::zeros(DType::F32, &[0, 4]).unwrap();
        let y = run1("Reshape", &[], vec![e.clone(), i(&[3], &[0, -1, 2])]).unwrap();
        assert_eq!(y.dims(), &[0, 2, 2]);
        let y = run1("Reshape", &[], vec![e, i(&[2], &[-1, 8])]).unwrap();
        assert_eq!(y.dims(), &[0, 8]);
    }

    #[test]
    fn squeeze_dims() {
        let x = Tensor::zeros(DType::F32, &[1, 2, 1, 3, 1]).unwrap();
        assert_eq!(
            run1("Squeeze", &[], vec![x.clone()]).unwrap().dims(),
            &[2, 3]
        );
        let a = [("squeeze_dims", AttrValue::IntList(vec![0, -1]))];
        assert_eq!(
            run1("Squeeze", &a, vec![x.clone()]).unwrap().dims(),
            &[2, 1, 3]
        );
        let (_, msg) = run_err(
            "Squeeze",
            &[("squeeze_dims", AttrValue::IntList(vec![1]))],
            vec![x.clone()],
        );
        assert_eq!(
            msg,
            "Can not squeeze dim[1], expected a dimension of 1, got 2"
        );
        let (_, msg) = run_err(
            "Squeeze",
            &[("squeeze_dims", AttrValue::IntList(vec![5]))],
            vec![x],
        );
        assert_eq!(
            msg,
            "Tried to squeeze dim index 5 for tensor with 5 dimensions."
        );
    }

    #[test]
    fn expand_dims() {
        let x = iota(&[2, 3]);
        assert_eq!(
            run1("ExpandDims", &[], vec![x.clone(), Tensor::scalar(0i32)])
                .unwrap()
                .dims(),
            &[1, 2, 3]
        );
        assert_eq!(
            run1("ExpandDims", &[], vec![x.clone(), Tensor::scalar(-1i64)])
                .unwrap()
                .dims(),
            &[2, 3, 1]
        );
        assert_eq!(
            run1("ExpandDims", &[], vec![x.clone(), i(&[1], &[2])])
                .unwrap()
                .dims(),
            &[2, 3, 1]
        );
        assert_eq!(
            run1(
                "ExpandDims",
                &[],
                vec![Tensor::scalar(1u8), Tensor::scalar(0i32)]
            )
            .unwrap()
            .dims(),
            &[1]
        );
        let (_, msg) = run_err("ExpandDims", &[], vec![x, Tensor::scalar(-4i32)]);
        assert_eq!(
            msg,
            "Tried to expand dim index -4 for tensor with 2 dimensions."
        );
    }
}
