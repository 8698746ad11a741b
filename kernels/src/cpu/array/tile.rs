//! `Tile` and `BroadcastTo`: replicating a tensor's values.
//!
//! Both are one pass of the strided engine with zero strides: `BroadcastTo` reads a
//! broadcast dim with stride 0; `Tile` views the output `[m0*d0, m1*d1, ...]` as
//! `[m0, d0, m1, d1, ...]` and reads each multiple with stride 0.
//!
//! Invariants: TensorFlow's checks and messages; an output equal to the input shares its
//! buffer; output sizes are overflow-checked before allocation.

use rill_graph::{Error, Node, Result};

use super::strided::{gather_tensor, signed_strides};
use super::util::{dims_from, int_vector, kernel, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Tile", tile);
    r.cpu("BroadcastTo", broadcast_to);
}

fn tile(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, multiples] = take(inputs)?;
        if multiples.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "Expected multiples argument to be a vector of length {} but got shape {}",
                x.rank(),
                shape_str(multiples.dims())
            )));
        }
        let m = multiples.to_i64_vec()?;
        if m.len() != x.rank() {
            return Err(Error::invalid_argument(format!(
                "Expected multiples argument to be a vector of length {} but got length {}",
                x.rank(),
                m.len()
            )));
        }
        if let Some((i, v)) = m.iter().enumerate().find(|(_, &v)| v < 0) {
            return Err(Error::invalid_argument(format!(
                "Expected multiples[{i}] >= 0, but got {v}"
            )));
        }
        let in_strides = signed_strides(x.dims());
        let mut view_dims = Vec::with_capacity(2 * x.rank());
        let mut view_strides = Vec::with_capacity(2 * x.rank());
        let mut out_dims = Vec::with_capacity(x.rank());
        for (i, &d) in x.dims().iter().enumerate() {
            let mi = m[i] as usize;
            view_dims.extend([mi, d]);
            view_strides.extend([0, in_strides[i]]);
            out_dims.push(d.checked_mul(mi).ok_or_else(|| {
                Error::invalid_argument(format!("Tile output dimension {i} overflows"))
            })?);
        }
        if m.iter().all(|&v| v == 1) {
            return Ok(vec![x]);
        }
        rill_graph::element_count(&out_dims)?;
        let out = gather_tensor(&x, 0, &view_dims, &view_strides)?;
        Ok(vec![out.reshape(&out_dims)?])
    })
}

fn broadcast_to(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, shape] = take(inputs)?;
        let out_dims = dims_from(&int_vector(&shape, "shape")?, "BroadcastTo")?;
        if out_dims == x.dims() {
            return Ok(vec![x]);
        }
        let incompatible = || {
            Error::invalid_argument(format!(
                "Unable to broadcast tensor of shape {} to tensor of shape {}",
                shape_str(x.dims()),
                shape_str(&out_dims)
            ))
        };
        if x.rank() > out_dims.len() {
            return Err(incompatible());
        }
        let lead = out_dims.len() - x.rank();
        let in_strides = signed_strides(x.dims());
        let mut strides = vec![0isize; out_dims.len()];
        for (i, &d) in x.dims().iter().enumerate() {
            let o = out_dims[lead + i];
            if d == o {
                strides[lead + i] = in_strides[i];
            } else if d != 1 {
                return Err(incompatible());
            }
        }
        Ok(vec![gather_tensor(&x, 0, &out_dims, &strides)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, DType, Tensor};

    #[test]
    fn tile() {
        let x = i(&[2, 2], &[1, 2, 3, 4]);
        let y = run1("Tile", &[], vec![x.clone(), i(&[2], &[2, 3])]).unwrap();
        let (dims, v) = ints(&y);
        assert_eq!(dims, vec![4, 6]);
        assert_eq!(&v[..12], &[1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4]);
        assert_eq!(&v[12..18], &[1, 2, 1, 2, 1, 2]);
        let y = run1("Tile", &[], vec![x.clone(), l(&[2], &[1, 0])]).unwrap();
        assert_eq!(y.dims(), &[2, 0]);
        let y = run1("Tile", &[], vec![Tensor::scalar(1.5f32), i(&[0], &[])]).unwrap();
        assert_eq!(floats(&y), (vec![], vec![1.5]));
        let s = Tensor::vector(vec![b"ab".to_vec()]);
        let y = run1("Tile", &[], vec![s, i(&[1], &[3])]).unwrap();
        assert_eq!(y.as_slice::<Vec<u8>>().unwrap().len(), 3);
        let (code, msg) = run_err("Tile", &[], vec![x.clone(), i(&[3], &[1, 1, 1])]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(
            msg,
            "Expected multiples argument to be a vector of length 2 but got length 3"
        );
        let (_, msg) = run_err("Tile", &[], vec![x, i(&[2], &[1, -1])]);
        assert_eq!(msg, "Expected multiples[1] >= 0, but got -1");
    }

    #[test]
    fn broadcast_to() {
        let x = i(&[3], &[1, 2, 3]);
        let y = run1("BroadcastTo", &[], vec![x.clone(), i(&[2], &[2, 3])]).unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![1, 2, 3, 1, 2, 3]));
        let c = i(&[2, 1], &[7, 8]);
        let y = run1("BroadcastTo", &[], vec![c, l(&[3], &[1, 2, 2])]).unwrap();
        assert_eq!(ints(&y), (vec![1, 2, 2], vec![7, 7, 8, 8]));
        let y = run1(
            "BroadcastTo",
            &[],
            vec![Tensor::scalar(true), i(&[1], &[0])],
        )
        .unwrap();
        assert_eq!(y.dims(), &[0]);
        let y = run1(
            "BroadcastTo",
            &[],
            vec![
                Tensor::zeros(DType::F32, &[1, 3]).unwrap(),
                i(&[2], &[0, 3]),
            ],
        )
        .unwrap();
        assert_eq!(y.dims(), &[0, 3]);
        let (_, msg) = run_err("BroadcastTo", &[], vec![x.clone(), i(&[2], &[2, 4])]);
        assert_eq!(
            msg,
            "Unable to broadcast tensor of shape [3] to tensor of shape [2,4]"
        );
        assert!(run("BroadcastTo", &[], vec![x, i(&[0], &[])]).is_err());
    }
}
