//! Index reductions and scans along one axis: `ArgMax`/`ArgMin` (`output_type` int32 or
//! int64) and `Cumsum`/`Cumprod` (`exclusive`, `reverse`).
//!
//! All four view the input as `[outer, r, inner]` around the axis and walk the axis with
//! a whole inner row at a time (contiguous, vectorisable), parallel over `outer`.
//!
//! Invariants (TensorFlow's): the axis is a scalar in `[-rank, rank)`; ArgMax/ArgMin of an
//! empty axis is InvalidArgument, ties give the first index, NaNs are skipped (index 0 when
//! all are NaN); scans keep the input shape,
//! integers wrap, f16/bf16 are computed in f32.

use rill_graph::{DType, Element, Error, Result, Tensor};

use super::broadcast::alloc;
use super::num::{is_half, via_f32, Float, Int};
use super::par::for_rows;
use super::util::{
    attr_bool, attr_type, match_float, match_int, match_real, norm_axis, scalar_i64, take,
};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

/// `(outer, r, inner)` around `axis` of `dims`.
pub(crate) fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product();
    (outer, dims[axis], inner)
}

struct ArgMinMax {
    max: bool,
    out: DType,
    name: &'static str,
}

fn arg_best<T: Element + Copy + PartialOrd>(
    x: &[T],
    (outer, r, inner): (usize, usize, usize),
    max: bool,
) -> Result<Vec<i64>> {
    let mut idx = alloc(outer * inner, 0i64)?;
    for_rows(&mut idx, inner, r, |o0, rows| {
        let mut best: Vec<T> = Vec::with_capacity(inner);
        for (k, row) in rows.chunks_mut(inner).enumerate() {
            let base = (o0 + k) * r * inner;
            best.clear();
            best.extend_from_slice(&x[base..base + inner]);
            for j in 1..r {
                let xs = &x[base + j * inner..base + (j + 1) * inner];
                for ((b, i), &v) in best.iter_mut().zip(row.iter_mut()).zip(xs) {
                    // NaN never wins (TensorFlow starts from the lowest/highest value and
                    // only takes a strictly better one), so a NaN best gives way to any number.
                    #[allow(clippy::eq_op)]
                    let nan_best = *b != *b && v == v;
                    if (max && v > *b) || (!max && v < *b) || nan_best {
                        *b = v;
                        *i = j as i64;
                    }
                }
            }
        }
    });
    Ok(idx)
}

impl Kernel for ArgMinMax {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x, dim] = take(self.name, inputs)?;
        let axis = norm_axis(scalar_i64(&dim, "dimension")?, x.rank(), "dimension")?;
        let (outer, r, inner) = split_at_axis(x.dims(), axis);
        if r == 0 && outer * inner > 0 {
            return Err(Error::invalid_argument(format!(
                "Reduction axis {axis} is empty in shape {}",
                x.shape()
            )));
        }
        let dt = x.dtype();
        let shape = (outer, r, inner);
        let idx = match_real!(dt, T => arg_best::<T>(x.as_slice()?, shape, self.max)?, d => match d {
            DType::Bool => arg_best::<bool>(x.as_slice()?, shape, self.max)?,
            d => return Err(unsupported_dtype(self.name, d)),
        });
        let mut dims = x.dims().to_vec();
        dims.remove(axis);
        let out = match self.out {
            DType::I32 => {
                Tensor::new(&dims, idx.into_iter().map(|v| v as i32).collect::<Vec<_>>())?
            }
            DType::I64 => Tensor::new(&dims, idx)?,
            d => return Err(unsupported_dtype(self.name, d)),
        };
        Ok(vec![out])
    }
}

struct Cumulative {
    prod: bool,
    exclusive: bool,
    reverse: bool,
    name: &'static str,
}

impl Cumulative {
    fn scan<T: Element + Copy>(
        &self,
        x: &[T],
        (_, r, inner): (usize, usize, usize),
        init: T,
        f: impl Fn(T, T) -> T + Sync,
    ) -> Result<Vec<T>> {
        let mut out = alloc(x.len(), init)?;
        let (exclusive, reverse) = (self.exclusive, self.reverse);
        for_rows(&mut out, r * inner, r * inner, |o0, rows| {
            let mut acc = vec![init; inner];
            for (k, block) in rows.chunks_mut(r * inner).enumerate() {
                let base = (o0 + k) * r * inner;
                acc.iter_mut().for_each(|a| *a = init);
                for step in 0..r {
                    let j = if reverse { r - 1 - step } else { step };
                    let xs = &x[base + j * inner..base + (j + 1) * inner];
                    let os = &mut block[j * inner..(j + 1) * inner];
                    for ((o, a), &v) in os.iter_mut().zip(acc.iter_mut()).zip(xs) {
                        if exclusive {
                            *o = *a;
                            *a = f(*a, v);
                        } else {
                            *a = f(*a, v);
                            *o = *a;
                        }
                    }
                }
            }
        });
        Ok(out)
    }

    fn float<T: Float>(&self, x: &Tensor, shape: (usize, usize, usize)) -> Result<Tensor> {
        let v = if self.prod {
            self.scan(x.as_slice::<T>()?, shape, T::ONE, |a, b| a * b)?
        } else {
            self.scan(x.as_slice::<T>()?, shape, T::ZERO, |a, b| a + b)?
        };
        Tensor::new(x.dims(), v)
    }

    fn int<T: Int>(&self, x: &Tensor, shape: (usize, usize, usize)) -> Result<Tensor> {
        let v = if self.prod {
            self.scan(x.as_slice::<T>()?, shape, T::ONE, T::wrapping_mul)?
        } else {
            self.scan(x.as_slice::<T>()?, shape, T::ZERO, T::wrapping_add)?
        };
        Tensor::new(x.dims(), v)
    }
}

impl Kernel for Cumulative {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x, axis] = take(self.name, inputs)?;
        let axis = norm_axis(scalar_i64(&axis, "axis")?, x.rank(), "axis")?;
        let shape = split_at_axis(x.dims(), axis);
        let dt = x.dtype();
        let out = match_float!(dt, T => self.float::<T>(&x, shape)?, d => {
            if is_half(d) {
                via_f32(d, vec![x], |v| {
                    let [x] = take(self.name, v)?;
                    Ok(vec![self.float::<f32>(&x, shape)?])
                })?
                .remove(0)
            } else {
                match_int!(d, T => self.int::<T>(&x, shape)?, d => return Err(unsupported_dtype(self.name, d)))
            }
        });
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("ArgMax", |n| {
        Ok(Box::new(ArgMinMax {
            max: true,
            out: attr_type(n, "output_type", DType::I64)?,
            name: "ArgMax",
        }))
    });
    r.cpu("ArgMin", |n| {
        Ok(Box::new(ArgMinMax {
            max: false,
            out: attr_type(n, "output_type", DType::I64)?,
            name: "ArgMin",
        }))
    });
    fn cum(n: &rill_graph::Node, prod: bool, name: &'static str) -> Result<Box<dyn Kernel>> {
        Ok(Box::new(Cumulative {
            prod,
            exclusive: attr_bool(n, "exclusive", false)?,
            reverse: attr_bool(n, "reverse", false)?,
            name,
        }))
    }
    r.cpu("Cumsum", |n| cum(n, false, "Cumsum"));
    r.cpu("Cumprod", |n| cum(n, true, "Cumprod"));
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, run, run1};
    use rill_graph::{AttrValue, DType, Tensor};

    #[test]
    fn argmax_argmin() {
        let x = f32s(&[2, 3], &[1.0, 5.0, 5.0, 7.0, -1.0, 2.0]);
        let a = run1("ArgMax", &[], vec![x.clone(), i32s(&[], &[1])]);
        assert_eq!(
            (a.dtype(), a.as_slice::<i64>().unwrap()),
            (DType::I64, &[1i64, 0][..])
        );
        let a = run1(
            "ArgMin",
            &[("output_type", AttrValue::Type(DType::I32))],
            vec![x.clone(), i32s(&[], &[0])],
        );
        assert_eq!(a.as_slice::<i32>().unwrap(), &[0, 1, 1]);
        let b = run1(
            "ArgMax",
            &[],
            vec![Tensor::vector(vec![false, true, true]), i32s(&[], &[0])],
        );
        assert_eq!(b.as_slice::<i64>().unwrap(), &[1]);
        let n = run1(
            "ArgMax",
            &[],
            vec![f32s(&[3], &[1.0, f32::NAN, 3.0]), i32s(&[], &[0])],
        );
        assert_eq!(n.as_slice::<i64>().unwrap(), &[2]);
        // A leading NaN is skipped too (TensorFlow: [nan, 0, 0] -> 1), all-NaN gives 0.
        let n = run1(
            "ArgMax",
            &[],
            vec![
                f32s(&[2, 3], &[f32::NAN, 0.0, 0.0, f32::NAN, f32::NAN, f32::NAN]),
                i32s(&[], &[1]),
            ],
        );
        assert_eq!(n.as_slice::<i64>().unwrap(), &[1, 0]);
        let n = run1(
            "ArgMin",
            &[],
            vec![f32s(&[3], &[f32::NAN, 2.0, 1.0]), i32s(&[], &[0])],
        );
        assert_eq!(n.as_slice::<i64>().unwrap(), &[2]);
        let a = run1("ArgMax", &[], vec![x.clone(), i32s(&[], &[-2])]);
        assert_eq!(a.as_slice::<i64>().unwrap(), &[1, 0, 0]);
        assert!(run("ArgMax", &[], vec![f32s(&[2, 0], &[]), i32s(&[], &[1])]).is_err());
        assert!(run("ArgMax", &[], vec![x, i32s(&[], &[2])]).is_err());
        assert!(run("ArgMax", &[], vec![f32s(&[0, 3], &[]), i32s(&[], &[0])]).is_err());
        let e = run1("ArgMax", &[], vec![f32s(&[0, 3], &[]), i32s(&[], &[1])]);
        assert_eq!(e.dims(), &[0]);
    }

    #[test]
    fn cumsum_cumprod_flags() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let ax = || i32s(&[], &[1]);
        assert_close(
            &run1("Cumsum", &[], vec![x.clone(), ax()]),
            &[2, 3],
            &[1.0, 3.0, 6.0, 4.0, 9.0, 15.0],
            0.0,
        );
        let ex = [("exclusive", AttrValue::Bool(true))];
        assert_close(
            &run1("Cumsum", &ex, vec![x.clone(), ax()]),
            &[2, 3],
            &[0.0, 1.0, 3.0, 0.0, 4.0, 9.0],
            0.0,
        );
        let rev = [("reverse", AttrValue::Bool(true))];
        assert_close(
            &run1("Cumsum", &rev, vec![x.clone(), ax()]),
            &[2, 3],
            &[6.0, 5.0, 3.0, 15.0, 11.0, 6.0],
            0.0,
        );
        let both = [
            ("reverse", AttrValue::Bool(true)),
            ("exclusive", AttrValue::Bool(true)),
        ];
        assert_close(
            &run1("Cumprod", &both, vec![x.clone(), ax()]),
            &[2, 3],
            &[6.0, 3.0, 1.0, 30.0, 6.0, 1.0],
            0.0,
        );
        assert_close(
            &run1("Cumsum", &[], vec![x, i32s(&[], &[0])]),
            &[2, 3],
            &[1.0, 2.0, 3.0, 5.0, 7.0, 9.0],
            0.0,
        );
        let i = run1(
            "Cumsum",
            &[],
            vec![i32s(&[2], &[i32::MAX, 1]), i32s(&[], &[0])],
        );
        assert_eq!(i.as_slice::<i32>().unwrap(), &[i32::MAX, i32::MIN]);
    }
}
