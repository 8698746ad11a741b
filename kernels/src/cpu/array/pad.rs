//! `Pad`, `PadV2` and `MirrorPad` (`REFLECT` / `SYMMETRIC`).
//!
//! Constant padding fills the output with the pad value and scatters the input into the
//! interior view; mirror padding maps every output coordinate of each dim to an input
//! coordinate (`REFLECT` excludes the edge, `SYMMETRIC` repeats it) and gathers.
//!
//! Invariants: `paddings` is checked as TensorFlow does (a `[rank, 2]` matrix of
//! non-negative values; mirror pads no wider than the dim allows) before anything is
//! allocated; zero padding forwards the input's buffer.

use rill_graph::{Element, Error, Node, Result, Tensor};

use super::strided::{scatter, signed_strides};
use super::util::{attr_string, filled, kernel, row_strides, shape_str, take, with_dtype};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Pad", |_| pad(false));
    r.cpu("PadV2", |_| pad(true));
    r.cpu("MirrorPad", mirror_pad);
}

/// The `(before, after)` pairs of a paddings tensor for an input of rank `rank`.
fn read_paddings(paddings: &Tensor, x: &Tensor) -> Result<Vec<(usize, usize)>> {
    if paddings.rank() != 2 || paddings.dims()[1] != 2 {
        return Err(Error::invalid_argument(format!(
            "paddings must be a matrix with 2 columns: {}",
            shape_str(paddings.dims())
        )));
    }
    if paddings.dims()[0] != x.rank() {
        return Err(Error::invalid_argument(format!(
            "The first dimension of paddings must be the rank of inputs{} {}",
            shape_str(paddings.dims()),
            shape_str(x.dims())
        )));
    }
    let v = paddings.to_i64_vec()?;
    v.chunks(2)
        .map(|p| {
            if p[0] < 0 || p[1] < 0 {
                return Err(Error::invalid_argument(format!(
                    "Paddings must be non-negative: {} {}",
                    p[0], p[1]
                )));
            }
            Ok((p[0] as usize, p[1] as usize))
        })
        .collect()
}

fn padded_dims(x: &Tensor, pads: &[(usize, usize)]) -> Result<Vec<usize>> {
    let dims = x
        .dims()
        .iter()
        .zip(pads)
        .map(|(&d, &(b, a))| {
            d.checked_add(b)
                .and_then(|s| s.checked_add(a))
                .ok_or_else(|| Error::invalid_argument("padded dimension overflows"))
        })
        .collect::<Result<Vec<_>>>()?;
    rill_graph::element_count(&dims)?;
    Ok(dims)
}

fn pad_constant<T: Element>(
    x: &Tensor,
    dims: &[usize],
    pads: &[(usize, usize)],
    value: T,
) -> Result<Tensor> {
    let n = rill_graph::element_count(dims)?;
    let mut out = filled(n, value)?;
    let strides = signed_strides(dims);
    let offset: usize = pads
        .iter()
        .zip(&strides)
        .map(|(&(b, _), &s)| b * s as usize)
        .sum();
    scatter(&mut out, offset, x.dims(), &strides, x.as_slice::<T>()?);
    Tensor::new(dims, out)
}

fn pad(with_value: bool) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| {
        let (x, paddings, value) = if with_value {
            let [x, p, v] = take(inputs)?;
            if v.rank() != 0 {
                return Err(Error::invalid_argument(format!(
                    "constant_values must be a scalar. Found: {}",
                    shape_str(v.dims())
                )));
            }
            (x, p, Some(v))
        } else {
            let [x, p] = take(inputs)?;
            (x, p, None)
        };
        let pads = read_paddings(&paddings, &x)?;
        if pads.iter().all(|&p| p == (0, 0)) {
            return Ok(vec![x]);
        }
        let dims = padded_dims(&x, &pads)?;
        let out = with_dtype!(x.dtype(), T => {
            let v = match &value {
                Some(v) => v.scalar_value::<T>()?,
                None => <T>::default(),
            };
            pad_constant::<T>(&x, &dims, &pads, v)
        })?;
        Ok(vec![out])
    })
}

/// Reads `src` at the coordinates given per dim by `maps` (already scaled by the source
/// strides): `out[i0, .., ik] = src[maps[0][i0] + .. + maps[k][ik]]`.
fn gather_maps<T: Element>(src: &[T], out_dims: &[usize], maps: &[Vec<usize>]) -> Result<Vec<T>> {
    let n = rill_graph::element_count(out_dims)?;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let r = out_dims.len();
    if r == 0 {
        return Ok(src.to_vec());
    }
    let mut idx = vec![0usize; r];
    let mut base: usize = maps[..r - 1].iter().map(|m| m[0]).sum();
    loop {
        out.extend(maps[r - 1].iter().map(|&o| src[base + o].clone()));
        let mut d = r - 1;
        loop {
            if d == 0 {
                return Ok(out);
            }
            d -= 1;
            base -= maps[d][idx[d]];
            idx[d] += 1;
            if idx[d] < out_dims[d] {
                base += maps[d][idx[d]];
                break;
            }
            idx[d] = 0;
            base += maps[d][0];
        }
    }
}

fn mirror_pad(node: &Node) -> Result<Box<dyn Kernel>> {
    let mode = attr_string(node, "mode", "")?;
    let reflect = match mode.as_str() {
        "REFLECT" => true,
        "SYMMETRIC" => false,
        other => {
            return Err(Error::invalid_argument(format!(
                "mode must be either REFLECT or SYMMETRIC, not '{other}'"
            )))
        }
    };
    kernel(move |inputs| {
        let [x, paddings] = take(inputs)?;
        let pads = read_paddings(&paddings, &x)?;
        for (&d, &(b, a)) in x.dims().iter().zip(&pads) {
            if reflect && (b >= d || a >= d) {
                return Err(Error::invalid_argument(format!(
                    "paddings must be less than the dimension size: {b}, {a} not less than {d}"
                )));
            }
            if !reflect && (b > d || a > d) {
                return Err(Error::invalid_argument(format!(
                    "paddings must be no greater than the dimension size: {b}, {a} greater than {d}"
                )));
            }
        }
        if pads.iter().all(|&p| p == (0, 0)) {
            return Ok(vec![x]);
        }
        let dims = padded_dims(&x, &pads)?;
        let in_strides = row_strides(x.dims());
        let maps: Vec<Vec<usize>> = (0..x.rank())
            .map(|k| {
                let (d, b) = (x.dims()[k] as i64, pads[k].0 as i64);
                (0..dims[k] as i64)
                    .map(|o| {
                        let p = o - b;
                        let src = if p < 0 {
                            if reflect {
                                -p
                            } else {
                                -p - 1
                            }
                        } else if p >= d {
                            if reflect {
                                2 * d - 2 - p
                            } else {
                                2 * d - 1 - p
                            }
                        } else {
                            p
                        };
                        src as usize * in_strides[k]
                    })
                    .collect()
            })
            .collect();
        let out = with_dtype!(x.dtype(), T => Tensor::new(&dims, gather_maps(x.as_slice::<T>()?, &dims, &maps)?))?;
        Ok(vec![out])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{AttrValue, Code, DType, Tensor};

    #[test]
    fn pad_with_zeros_and_constant() {
        let x = i(&[2, 2], &[1, 2, 3, 4]);
        let y = run1("Pad", &[], vec![x.clone(), i(&[2, 2], &[1, 0, 0, 2])]).unwrap();
        assert_eq!(
            ints(&y),
            (vec![3, 4], vec![0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0])
        );
        let y = run1(
            "PadV2",
            &[],
            vec![x.clone(), l(&[2, 2], &[0, 1, 1, 0]), Tensor::scalar(9i32)],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![3, 3], vec![9, 1, 2, 9, 3, 4, 9, 9, 9]));
        let same = run1("Pad", &[], vec![x.clone(), i(&[2, 2], &[0, 0, 0, 0])]).unwrap();
        assert!(std::ptr::eq(same.buffer(), x.buffer()));
        let y = run1("Pad", &[], vec![Tensor::scalar(5i32), i(&[0, 2], &[])]).unwrap();
        assert_eq!(ints(&y), (vec![], vec![5]));
        let e = Tensor::zeros(DType::F32, &[0, 2]).unwrap();
        let y = run1("Pad", &[], vec![e, i(&[2, 2], &[1, 1, 0, 0])]).unwrap();
        assert_eq!(floats(&y), (vec![2, 2], vec![0.0; 4]));
    }

    #[test]
    fn bad_paddings() {
        let x = iota(&[2, 3]);
        let (code, msg) = run_err("Pad", &[], vec![x.clone(), i(&[2, 2], &[0, -1, 0, 0])]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "Paddings must be non-negative: 0 -1");
        let (_, msg) = run_err("Pad", &[], vec![x.clone(), i(&[3, 2], &[0; 6])]);
        assert_eq!(
            msg,
            "The first dimension of paddings must be the rank of inputs[3,2] [2,3]"
        );
        let (_, msg) = run_err("Pad", &[], vec![x.clone(), i(&[2], &[0, 0])]);
        assert_eq!(msg, "paddings must be a matrix with 2 columns: [2]");
        assert!(run("PadV2", &[], vec![x, i(&[2, 2], &[0; 4]), i(&[1], &[0])]).is_err());
    }

    #[test]
    fn mirror_pad() {
        let x = i(&[3], &[1, 2, 3]);
        let reflect = [("mode", AttrValue::from("REFLECT"))];
        let symmetric = [("mode", AttrValue::from("SYMMETRIC"))];
        let y = run1("MirrorPad", &reflect, vec![x.clone(), i(&[1, 2], &[2, 2])]).unwrap();
        assert_eq!(ints(&y), (vec![7], vec![3, 2, 1, 2, 3, 2, 1]));
        let y = run1(
            "MirrorPad",
            &symmetric,
            vec![x.clone(), i(&[1, 2], &[2, 3])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![8], vec![2, 1, 1, 2, 3, 3, 2, 1]));
        let m = iota(&[2, 3]);
        let y = run1(
            "MirrorPad",
            &reflect,
            vec![m.clone(), i(&[2, 2], &[1, 1, 2, 0])],
        )
        .unwrap();
        assert_eq!(
            ints(&y),
            (
                vec![4, 5],
                vec![5, 4, 3, 4, 5, 2, 1, 0, 1, 2, 5, 4, 3, 4, 5, 2, 1, 0, 1, 2]
            )
        );
        let (_, msg) = run_err("MirrorPad", &reflect, vec![x.clone(), i(&[1, 2], &[3, 0])]);
        assert_eq!(
            msg,
            "paddings must be less than the dimension size: 3, 0 not less than 3"
        );
        assert!(run(
            "MirrorPad",
            &symmetric,
            vec![x.clone(), i(&[1, 2], &[3, 0])]
        )
        .is_ok());
        assert!(run(
            "MirrorPad",
            &symmetric,
            vec![x.clone(), i(&[1, 2], &[4, 0])]
        )
        .is_err());
        assert!(run(
            "MirrorPad",
            &[("mode", AttrValue::from("EDGE"))],
            vec![x, i(&[1, 2], &[0, 0])]
        )
        .is_err());
    }
}
