//! `Range`: `start, start + delta, ...` up to (excluding) `limit`, for integer and float
//! `Tidx`.
//!
//! Invariants: TensorFlow's checks (`delta != 0`, the direction of `delta` agrees with
//! `limit - start`) and size rule (integers: `ceil(|limit - start| / |delta|)` computed
//! exactly; floats: `ceil(|(limit - start) / delta|)` in the dtype's own arithmetic); float
//! values accumulate `val += delta` in the dtype (as TensorFlow does, so rounding matches);
//! half types compute each step correctly rounded, as Eigen's half arithmetic does.

use rill_graph::{DType, Element, Error, Node, Result, Tensor};

use super::cast::cast_tensor;
use super::util::{filled, kernel, shape_str, take};
use crate::{unsupported_dtype, Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Range", range);
}

fn scalar_check(t: &Tensor, name: &str) -> Result<()> {
    if t.rank() != 0 {
        return Err(Error::invalid_argument(format!(
            "{name} must be a scalar, not shape {}",
            shape_str(t.dims())
        )));
    }
    Ok(())
}

fn direction_errors<V: PartialOrd + std::fmt::Display + Default>(
    start: V,
    limit: V,
    delta: V,
) -> Result<()> {
    let zero = V::default();
    if delta == zero {
        return Err(Error::invalid_argument(format!(
            "Requires delta != 0: {delta}"
        )));
    }
    if delta > zero && start > limit {
        return Err(Error::invalid_argument(format!(
            "Requires start <= limit when delta > 0: {start}/{limit}"
        )));
    }
    if delta < zero && start < limit {
        return Err(Error::invalid_argument(format!(
            "Requires start >= limit when delta < 0: {start}/{limit}"
        )));
    }
    Ok(())
}

fn int_range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let s = start.to_i64_vec()?[0] as i128;
    let l = limit.to_i64_vec()?[0] as i128;
    let d = delta.to_i64_vec()?[0] as i128;
    direction_errors(s, l, d)?;
    let size = ((l - s).abs() + d.abs() - 1) / d.abs();
    let size = usize::try_from(size)
        .map_err(|_| Error::invalid_argument(format!("Range of {size} elements is too large")))?;
    let mut values = filled(size, 0i64)?;
    let mut v = s;
    for x in values.iter_mut() {
        *x = v as i64;
        v += d;
    }
    cast_tensor(&Tensor::vector(values), start.dtype(), false)
}

/// A float dtype's arithmetic, each result correctly rounded to the dtype.
trait RangeFloat: Element + Copy + PartialOrd + std::fmt::Display {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl RangeFloat for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl RangeFloat for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl RangeFloat for half::f16 {
    fn to_f64(self) -> f64 {
        half::f16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
}
impl RangeFloat for half::bf16 {
    fn to_f64(self) -> f64 {
        half::bf16::to_f64(self)
    }
    fn from_f64(v: f64) -> Self {
        half::bf16::from_f64(v)
    }
}

fn float_range<T: RangeFloat>(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor> {
    let s = start.as_slice::<T>()?[0];
    let l = limit.as_slice::<T>()?[0];
    let d = delta.as_slice::<T>()?[0];
    direction_errors(s, l, d)?;
    let quotient = T::from_f64(T::from_f64(l.to_f64() - s.to_f64()).to_f64() / d.to_f64());
    let size = quotient.to_f64().abs().ceil();
    if size.is_nan() || size > i64::MAX as f64 {
        return Err(Error::invalid_argument(format!(
            "Requires ((limit - start) / delta) <= {}",
            i64::MAX
        )));
    }
    let mut values = filled(size as usize, s)?;
    let mut v = s;
    for x in values.iter_mut() {
        *x = v;
        v = T::from_f64(v.to_f64() + d.to_f64());
    }
    Ok(Tensor::vector(values))
}

fn range(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [start, limit, delta] = take(inputs)?;
        scalar_check(&start, "start")?;
        scalar_check(&limit, "limit")?;
        scalar_check(&delta, "delta")?;
        for t in [&limit, &delta] {
            if t.dtype() != start.dtype() {
                return Err(Error::invalid_argument(format!(
                    "Range inputs must share a dtype, got {} and {}",
                    start.dtype(),
                    t.dtype()
                )));
            }
        }
        let out = match start.dtype() {
            DType::F32 => float_range::<f32>(&start, &limit, &delta),
            DType::F64 => float_range::<f64>(&start, &limit, &delta),
            DType::F16 => float_range::<half::f16>(&start, &limit, &delta),
            DType::BF16 => float_range::<half::bf16>(&start, &limit, &delta),
            d if d.is_integer() && d != DType::U64 => int_range(&start, &limit, &delta),
            d => Err(unsupported_dtype("Range", d)),
        }?;
        Ok(vec![out])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, Tensor};

    fn r(s: Tensor, l: Tensor, d: Tensor) -> rill_graph::Result<Tensor> {
        run1("Range", &[], vec![s, l, d])
    }

    #[test]
    fn int_ranges() {
        let y = r(
            Tensor::scalar(3i32),
            Tensor::scalar(18i32),
            Tensor::scalar(3i32),
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![5], vec![3, 6, 9, 12, 15]));
        let y = r(
            Tensor::scalar(3i64),
            Tensor::scalar(1i64),
            Tensor::scalar(-1i64),
        )
        .unwrap();
        assert_eq!(longs(&y), (vec![2], vec![3, 2]));
        let y = r(
            Tensor::scalar(0i32),
            Tensor::scalar(10i32),
            Tensor::scalar(4i32),
        )
        .unwrap();
        assert_eq!(ints(&y).1, vec![0, 4, 8]);
        let y = r(
            Tensor::scalar(5i32),
            Tensor::scalar(5i32),
            Tensor::scalar(1i32),
        )
        .unwrap();
        assert_eq!(y.dims(), &[0]);
        let y = r(
            Tensor::scalar(i32::MIN),
            Tensor::scalar(i32::MAX),
            Tensor::scalar(i32::MAX),
        )
        .unwrap();
        assert_eq!(ints(&y).1, vec![i32::MIN, -1, i32::MAX - 1]);
    }

    #[test]
    fn float_ranges() {
        let y = r(
            Tensor::scalar(0.0f32),
            Tensor::scalar(1.0f32),
            Tensor::scalar(0.25f32),
        )
        .unwrap();
        assert_eq!(floats(&y), (vec![4], vec![0.0, 0.25, 0.5, 0.75]));
        let y = r(
            Tensor::scalar(1.0f32),
            Tensor::scalar(0.0f32),
            Tensor::scalar(-0.3f32),
        )
        .unwrap();
        assert_eq!(y.dims(), &[4]);
        let y = r(
            Tensor::scalar(0.0f64),
            Tensor::scalar(0.3f64),
            Tensor::scalar(0.1f64),
        )
        .unwrap();
        assert_eq!(y.as_slice::<f64>().unwrap(), &[0.0, 0.1, 0.2]);
        let h = |v: f32| Tensor::scalar(half::f16::from_f32(v));
        assert_eq!(r(h(0.0), h(2.0), h(0.5)).unwrap().dims(), &[4]);
    }

    #[test]
    fn bad_ranges() {
        let (code, msg) = run_err(
            "Range",
            &[],
            vec![
                Tensor::scalar(0i32),
                Tensor::scalar(5i32),
                Tensor::scalar(0i32),
            ],
        );
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "Requires delta != 0: 0");
        let (_, msg) = run_err(
            "Range",
            &[],
            vec![
                Tensor::scalar(5i32),
                Tensor::scalar(1i32),
                Tensor::scalar(1i32),
            ],
        );
        assert_eq!(msg, "Requires start <= limit when delta > 0: 5/1");
        let (_, msg) = run_err(
            "Range",
            &[],
            vec![
                Tensor::scalar(1.5f32),
                Tensor::scalar(2.0f32),
                Tensor::scalar(-1.0f32),
            ],
        );
        assert_eq!(msg, "Requires start >= limit when delta < 0: 1.5/2");
        assert!(r(
            Tensor::scalar(0.0f32),
            Tensor::scalar(f32::INFINITY),
            Tensor::scalar(1.0f32)
        )
        .is_err());
        assert!(r(i(&[1], &[0]), Tensor::scalar(1i32), Tensor::scalar(1i32)).is_err());
    }
}
