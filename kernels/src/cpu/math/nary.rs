//! Elementwise kernels over several inputs: `AddN`, `Select` (TF1: a scalar, same-shape or
//! first-dimension condition), `SelectV2` (full broadcasting) and `ClipByValue`.
//!
//! Invariants: `AddN` needs identical shapes and sums into the first input's buffer
//! (wrapping for integers, f16/bf16 through f32); `Select*` works for every dtype with
//! values, strings included; `ClipByValue` bounds are scalars or the input's shape and
//! compute `max(min(t, hi), lo)` like TensorFlow (so NaN stays NaN).

use rill_graph::{DType, Element, Error, Result, Tensor};

use super::broadcast::ternary;
use super::num::{is_half, via_f32, Int};
use super::par::for_rows;
use super::util::{match_float, match_int, match_real, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

/// `AddN`: the sum of N same-shaped tensors.
struct AddN;

fn add_into<T: Element + Copy>(
    inputs: Vec<Tensor>,
    add: impl Fn(T, T) -> T + Sync,
) -> Result<Tensor> {
    let mut it = inputs.into_iter();
    let Some(mut first) = it.next() else {
        return Err(Error::invalid_argument("AddN needs at least one input"));
    };
    let rest: Vec<Tensor> = it.collect();
    let slices = rest
        .iter()
        .map(|t| t.as_slice::<T>())
        .collect::<Result<Vec<_>>>()?;
    let out = first.as_mut_slice::<T>()?;
    for_rows(out, 1, slices.len(), |start, chunk| {
        let n = chunk.len();
        for s in &slices {
            for (o, &x) in chunk.iter_mut().zip(&s[start..start + n]) {
                *o = add(*o, x);
            }
        }
    });
    Ok(first)
}

impl Kernel for AddN {
    fn memory_traits(&self) -> crate::MemoryTraits {
        crate::MemoryTraits::READS
    }

    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid_argument("AddN needs at least one input"));
        };
        let (dt, dims) = (first.dtype(), first.dims().to_vec());
        for (i, t) in inputs.iter().enumerate().skip(1) {
            if t.dims() != dims.as_slice() || t.dtype() != dt {
                return Err(Error::invalid_argument(format!(
                    "Inputs to operation AddN must have the same size and shape.  Input 0: {} != input {i}: {}",
                    first.shape(),
                    t.shape()
                )));
            }
        }
        if inputs.len() == 1 {
            return Ok(inputs);
        }
        let out = match_float!(dt, T => add_into::<T>(inputs, |a, b| a + b)?, d => {
            if is_half(d) {
                via_f32(d, inputs, |v| Ok(vec![add_into::<f32>(v, |a, b| a + b)?]))?.remove(0)
            } else {
                match_int!(d, T => add_into::<T>(inputs, <T as Int>::wrapping_add)?,
                    d => return Err(unsupported_dtype("AddN", d)))
            }
        });
        Ok(vec![out])
    }
}

fn select_typed<T: Element>(c: &Tensor, t: &Tensor, e: &Tensor) -> Result<Tensor> {
    ternary::<bool, T, T, T>(c, t, e, |&c, t, e| if c { t.clone() } else { e.clone() })
}

/// `cond ? t : e` elementwise with broadcasting, for any dtype.
fn select(c: &Tensor, t: &Tensor, e: &Tensor) -> Result<Tensor> {
    if c.dtype() != DType::Bool {
        return Err(Error::invalid_argument(format!(
            "condition must be bool, got {}",
            c.dtype()
        )));
    }
    if t.dtype() != e.dtype() {
        return Err(Error::invalid_argument(format!(
            "'then' and 'else' have different dtypes {} and {}",
            t.dtype(),
            e.dtype()
        )));
    }
    let dt = t.dtype();
    match_real!(dt, T => select_typed::<T>(c, t, e), d => match d {
        DType::Bool => select_typed::<bool>(c, t, e),
        DType::String => select_typed::<Vec<u8>>(c, t, e),
        d => Err(unsupported_dtype("Select", d)),
    })
}

/// TF1 `Select`: `cond` is a scalar, has `t`'s shape, or is a vector over `t`'s first dim.
struct Select;

impl Kernel for Select {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [c, t, e] = take("Select", inputs)?;
        if t.dims() != e.dims() {
            return Err(Error::invalid_argument(format!(
                "'then' and 'else' must have the same size.  but received: {} vs. {}",
                t.shape(),
                e.shape()
            )));
        }
        let c = if c.rank() == 0 || c.dims() == t.dims() {
            c
        } else if c.rank() == 1 && t.rank() >= 1 && c.dims()[0] == t.dims()[0] {
            let mut dims = vec![1; t.rank()];
            dims[0] = c.dims()[0];
            c.reshape(&dims)?
        } else {
            return Err(Error::invalid_argument(format!(
                "'cond' must be a scalar, a vector of size {} or of shape {}, got {}",
                t.dims().first().copied().unwrap_or(0),
                t.shape(),
                c.shape()
            )));
        };
        Ok(vec![select(&c, &t, &e)?])
    }
}

/// `SelectV2`: `cond ? t : e` with all three broadcast.
struct SelectV2;

impl Kernel for SelectV2 {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [c, t, e] = take("SelectV2", inputs)?;
        Ok(vec![select(&c, &t, &e)?])
    }
}

/// `ClipByValue(t, clip_value_min, clip_value_max)`.
struct ClipByValue;

fn clip<T: Element + Copy + PartialOrd>(t: &Tensor, lo: &Tensor, hi: &Tensor) -> Result<Tensor> {
    ternary::<T, T, T, T>(t, lo, hi, |&x, &lo, &hi| {
        let y = if hi < x { hi } else { x };
        if y < lo {
            lo
        } else {
            y
        }
    })
}

impl Kernel for ClipByValue {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [t, lo, hi] = take("ClipByValue", inputs)?;
        for b in [&lo, &hi] {
            if b.rank() != 0 && b.dims() != t.dims() {
                return Err(Error::invalid_argument(format!(
                    "clip_value_min and clip_value_max must be either scalars or have the same shape as the input, got {} for input {}",
                    b.shape(),
                    t.shape()
                )));
            }
            if b.dtype() != t.dtype() {
                return Err(Error::invalid_argument(
                    "clip bounds must have the input's dtype",
                ));
            }
        }
        let dt = t.dtype();
        let out = match_real!(dt, T => clip::<T>(&t, &lo, &hi)?, d => return Err(unsupported_dtype("ClipByValue", d)));
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("AddN", |_| Ok(Box::new(AddN)));
    // Graph-level accumulation that TensorFlow rewrites to AddN; same values.
    r.cpu("AccumulateNV2", |_| Ok(Box::new(AddN)));
    r.cpu("Select", |_| Ok(Box::new(Select)));
    r.cpu("SelectV2", |_| Ok(Box::new(SelectV2)));
    r.cpu("ClipByValue", |_| Ok(Box::new(ClipByValue)));
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, run, run1};
    use rill_graph::{AttrValue, Tensor};

    #[test]
    fn add_n_sums_and_checks_shapes() {
        let n = [("N", AttrValue::Int(3))];
        let out = run1(
            "AddN",
            &n,
            vec![
                i32s(&[2], &[1, i32::MAX]),
                i32s(&[2], &[2, 1]),
                i32s(&[2], &[3, 0]),
            ],
        );
        assert_eq!(out.as_slice::<i32>().unwrap(), &[6, i32::MIN]);
        let big: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
        let out = run1(
            "AddN",
            &n,
            vec![
                f32s(&[100_000], &big),
                f32s(&[100_000], &big),
                f32s(&[100_000], &big),
            ],
        );
        assert_eq!(out.as_slice::<f32>().unwrap()[99_999], 299_997.0);
        assert!(run("AddN", &n, vec![i32s(&[2], &[1, 2]), i32s(&[1], &[1])]).is_err());
    }

    #[test]
    fn select_variants() {
        let t = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let e = f32s(&[2, 2], &[-1.0, -2.0, -3.0, -4.0]);
        let rows = Tensor::vector(vec![true, false]);
        let out = run1("Select", &[], vec![rows.clone(), t.clone(), e.clone()]);
        assert_close(&out, &[2, 2], &[1.0, 2.0, -3.0, -4.0], 0.0);
        let out = run1(
            "Select",
            &[],
            vec![Tensor::scalar(false), t.clone(), e.clone()],
        );
        assert_close(&out, &[2, 2], &[-1.0, -2.0, -3.0, -4.0], 0.0);
        assert!(run(
            "Select",
            &[],
            vec![
                Tensor::vector(vec![true, false, true]),
                t.clone(),
                e.clone()
            ]
        )
        .is_err());
        // SelectV2 broadcasts the condition along the last dim instead.
        let out = run1("SelectV2", &[], vec![rows, t, f32s(&[], &[0.0])]);
        assert_close(&out, &[2, 2], &[1.0, 0.0, 3.0, 0.0], 0.0);
        let s = run1(
            "SelectV2",
            &[],
            vec![
                Tensor::scalar(true),
                Tensor::scalar(b"y".to_vec()),
                Tensor::scalar(b"n".to_vec()),
            ],
        );
        assert_eq!(s.as_slice::<Vec<u8>>().unwrap(), &[b"y".to_vec()]);
    }

    #[test]
    fn clip_by_value() {
        let t = f32s(&[4], &[-5.0, 0.5, 5.0, f32::NAN]);
        let out = run1(
            "ClipByValue",
            &[],
            vec![t, f32s(&[], &[-1.0]), f32s(&[], &[1.0])],
        );
        assert_close(&out, &[4], &[-1.0, 0.5, 1.0, f32::NAN], 0.0);
        let out = run1(
            "ClipByValue",
            &[],
            vec![
                i32s(&[3], &[1, 5, 9]),
                i32s(&[3], &[2, 2, 2]),
                i32s(&[], &[6]),
            ],
        );
        assert_eq!(out.as_slice::<i32>().unwrap(), &[2, 5, 6]);
        assert!(run(
            "ClipByValue",
            &[],
            vec![i32s(&[3], &[1, 5, 9]), i32s(&[2], &[2, 2]), i32s(&[], &[6])]
        )
        .is_err());
    }
}
