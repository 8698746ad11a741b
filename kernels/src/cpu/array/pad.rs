//! `Pad`, `PadV2`, `MirrorPad` (`REFLECT` / `SYMMETRIC`) and its gradient `MirrorPadGrad`.
//!
//! Constant padding fills the output with the pad value and scatters the input into the
//! interior view; mirror padding maps every output coordinate of each dim to an input
//! coordinate (`REFLECT` excludes the edge, `SYMMETRIC` repeats it) and gathers;
//! `MirrorPadGrad` walks the same maps and adds each gradient element into the input
//! element it was copied from.
//!
//! Invariants: `paddings` is checked as TensorFlow does (a `[rank, 2]` matrix of
//! non-negative values; mirror pads no wider than the dim allows) before anything is
//! allocated; zero padding forwards the input's buffer. `MirrorPadGrad` takes every
//! numeric dtype (TensorFlow's CPU registration).

use rill_graph::{Element, Error, Node, Result, Tensor};

use super::strided::{scatter, signed_strides};
use super::util::{
    attr_string, filled, kernel, row_strides, shape_str, take, with_dtype, with_numeric,
};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Pad", |_| pad(false));
    r.cpu("PadV2", |_| pad(true));
    r.cpu("MirrorPad", |n| mirror_pad(n, false));
    r.cpu("MirrorPadGrad", |n| mirror_pad(n, true));
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

/// Calls `f(offset)` for every element of an `out_dims` tensor in row-major order, with
/// the source offset `maps[0][i0] + .. + maps[k][ik]` of its coordinates (the maps are
/// already scaled by the source strides).
fn walk_maps(out_dims: &[usize], maps: &[Vec<usize>], mut f: impl FnMut(usize)) {
    if out_dims.contains(&0) {
        return;
    }
    let r = out_dims.len();
    if r == 0 {
        f(0);
        return;
    }
    let mut idx = vec![0usize; r];
    let mut base: usize = maps[..r - 1].iter().map(|m| m[0]).sum();
    loop {
        maps[r - 1].iter().for_each(|&o| f(base + o));
        let mut d = r - 1;
        loop {
            if d == 0 {
                return;
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

/// `out[i0, .., ik] = src[maps[0][i0] + .. + maps[k][ik]]`.
fn gather_maps<T: Element>(src: &[T], out_dims: &[usize], maps: &[Vec<usize>]) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(rill_graph::element_count(out_dims)?);
    walk_maps(out_dims, maps, |o| out.push(src[o].clone()));
    Ok(out)
}

/// The transpose of [`gather_maps`]: `dst[maps[0][i0] + ..] += grad[i0, .., ik]`, into
/// zeros of `n` elements.
fn scatter_add_maps<T: Element + Copy + Default + std::ops::AddAssign>(
    grad: &[T],
    grad_dims: &[usize],
    maps: &[Vec<usize>],
    n: usize,
) -> Result<Vec<T>> {
    let mut dst = filled(n, T::default())?;
    let mut values = grad.iter();
    walk_maps(grad_dims, maps, |o| {
        if let Some(&v) = values.next() {
            dst[o] += v;
        }
    });
    Ok(dst)
}

/// Per dim of an unpadded tensor of `dims`, the source offset of each padded coordinate.
fn mirror_maps(dims: &[usize], pads: &[(usize, usize)], reflect: bool) -> Vec<Vec<usize>> {
    let in_strides = row_strides(dims);
    (0..dims.len())
        .map(|k| {
            let (d, (b, a)) = (dims[k] as i64, pads[k]);
            (0..d + (b + a) as i64)
                .map(|o| {
                    let p = o - b as i64;
                    let src = match (p < 0, p >= d, reflect) {
                        (true, _, true) => -p,
                        (true, _, false) => -p - 1,
                        (_, true, true) => 2 * d - 2 - p,
                        (_, true, false) => 2 * d - 1 - p,
                        _ => p,
                    };
                    src as usize * in_strides[k]
                })
                .collect()
        })
        .collect()
}

/// Checks mirror `pads` against the unpadded `dims`: below each dim for REFLECT, at most it
/// for SYMMETRIC.
fn check_mirror(dims: &[usize], pads: &[(usize, usize)], reflect: bool) -> Result<()> {
    for (&d, &(b, a)) in dims.iter().zip(pads) {
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
    Ok(())
}

/// `MirrorPad`, or with `grad` `MirrorPadGrad` (input: the padded gradient).
fn mirror_pad(node: &Node, grad: bool) -> Result<Box<dyn Kernel>> {
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
        if grad {
            let dims = x
                .dims()
                .iter()
                .zip(&pads)
                .map(|(&d, &(b, a))| {
                    d.checked_sub(b)
                        .and_then(|r| r.checked_sub(a))
                        .ok_or_else(|| {
                            Error::invalid_argument(format!(
                                "paddings {b} and {a} exceed the gradient's dimension {d}"
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            check_mirror(&dims, &pads, reflect)?;
            if pads.iter().all(|&p| p == (0, 0)) {
                return Ok(vec![x]);
            }
            let maps = mirror_maps(&dims, &pads, reflect);
            let n = rill_graph::element_count(&dims)?;
            let out = with_numeric!(x.dtype(), "MirrorPadGrad", T => Tensor::new(
                &dims,
                scatter_add_maps(x.as_slice::<T>()?, x.dims(), &maps, n)?,
            ))?;
            return Ok(vec![out]);
        }
        check_mirror(x.dims(), &pads, reflect)?;
        if pads.iter().all(|&p| p == (0, 0)) {
            return Ok(vec![x]);
        }
        let dims = padded_dims(&x, &pads)?;
        let maps = mirror_maps(x.dims(), &pads, reflect);
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

    #[test]
    fn mirror_pad_grad() {
        let reflect = [("mode", AttrValue::from("REFLECT"))];
        let symmetric = [("mode", AttrValue::from("SYMMETRIC"))];
        // [1, 2, 3] reflected by (2, 2) is [3, 2, 1, 2, 3, 2, 1].
        let g = i(&[7], &[1; 7]);
        let y = run1("MirrorPadGrad", &reflect, vec![g, i(&[1, 2], &[2, 2])]).unwrap();
        assert_eq!(ints(&y), (vec![3], vec![2, 3, 2]));
        // Symmetric (2, 3): [2, 1, 1, 2, 3, 3, 2, 1].
        let g = i(&[8], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let y = run1("MirrorPadGrad", &symmetric, vec![g, l(&[1, 2], &[2, 3])]).unwrap();
        assert_eq!(ints(&y), (vec![3], vec![10, 9, 9]));
        // 2-D: the transpose of the forward gather.
        let g = i(&[4, 5], &[1; 20]);
        let y = run1(
            "MirrorPadGrad",
            &reflect,
            vec![g, i(&[2, 2], &[1, 1, 2, 0])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![2, 3], vec![2, 4, 4, 2, 4, 4]));
        let g = Tensor::new(&[4], vec![1.5f32, 2.0, 0.5, 1.0]).unwrap();
        let y = run1("MirrorPadGrad", &symmetric, vec![g, i(&[1, 2], &[1, 1])]).unwrap();
        assert_eq!(floats(&y), (vec![2], vec![3.5, 1.5]));
        let (_, msg) = run_err(
            "MirrorPadGrad",
            &reflect,
            vec![i(&[3], &[0; 3]), i(&[1, 2], &[2, 2])],
        );
        assert!(msg.contains("exceed"), "{msg}");
        assert!(run(
            "MirrorPadGrad",
            &reflect,
            vec![i(&[5], &[0; 5]), i(&[1, 2], &[2, 2])]
        )
        .is_err());
        assert!(run(
            "MirrorPadGrad",
            &symmetric,
            vec![i(&[5], &[0; 5]), i(&[1, 2], &[2, 2])]
        )
        .is_err());
        assert!(run(
            "MirrorPadGrad",
            &symmetric,
            vec![i(&[6], &[0; 6]), i(&[1, 2], &[2, 2])]
        )
        .is_ok());
    }
}
