//! `Softmax`, `LogSoftmax` (over the last axis), `SoftmaxCrossEntropyWithLogits` (dense
//! labels, broadcast against the logits) and `SparseSoftmaxCrossEntropyWithLogits` (int32 or
//! int64 class indices).
//!
//! Every row is shifted by its maximum before exponentiating (numerically stable), the way
//! TensorFlow's functors compute it: softmax = exp(x - max) / sum, log-softmax =
//! x - max - log(sum), loss = sum(labels * (log(sum) - (x - max))), backprop = softmax -
//! labels. Rows run in parallel.
//!
//! Invariants: logits of rank >= 1 (softmax) or exactly 2 (losses); a sparse label outside
//! `[0, classes)` is InvalidArgument; f16/bf16 are computed in f32.

use rill_graph::{DType, Error, Result, Tensor};

use crate::cpu::math::broadcast::{alloc, broadcast_dims, broadcast_to};
use crate::cpu::math::num::{is_half, max_nan, via_f32, Float};
use crate::cpu::math::par::for_rows;
use crate::cpu::math::reduce::fold_lanes;
use crate::cpu::math::util::{match_float, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

/// Writes `exp(x - max)` into `out` and returns (max, sum of those), with lane-parallel
/// folds so the row loops vectorise.
#[inline]
fn shifted_exp<T: Float>(x: &[T], out: &mut [T]) -> (T, T) {
    let max = fold_lanes(x, T::NEG_INFINITY, &max_nan);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
    }
    (max, fold_lanes(out, T::ZERO, &|a, b| a + b))
}

fn softmax<T: Float>(x: &[T], n: usize, log: bool) -> Result<Vec<T>> {
    let mut out = alloc(x.len(), T::ZERO)?;
    for_rows(&mut out, n, n * 8, |r0, rows| {
        for (i, row) in rows.chunks_mut(n).enumerate() {
            let src = &x[(r0 + i) * n..(r0 + i + 1) * n];
            let (max, sum) = shifted_exp(src, row);
            if log {
                let lse = sum.ln();
                for (o, &v) in row.iter_mut().zip(src) {
                    *o = v - max - lse;
                }
            } else {
                for o in row.iter_mut() {
                    *o = *o / sum;
                }
            }
        }
    });
    Ok(out)
}

struct Softmax {
    log: bool,
    name: &'static str,
}

impl Softmax {
    fn run<T: Float>(&self, x: &Tensor) -> Result<Tensor> {
        let n = *x
            .dims()
            .last()
            .ok_or_else(|| Error::invalid_argument("logits must have >= 1 dimension, got []"))?;
        Tensor::new(x.dims(), softmax::<T>(x.as_slice()?, n, self.log)?)
    }
}

impl Kernel for Softmax {
    fn memory_traits(&self) -> crate::MemoryTraits {
        crate::MemoryTraits::READS
    }

    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x] = take(self.name, inputs)?;
        let dt = x.dtype();
        let out = match_float!(dt, T => self.run::<T>(&x)?, d => {
            if !is_half(d) {
                return Err(unsupported_dtype(self.name, d));
            }
            via_f32(d, vec![x], |v| Ok(vec![self.run::<f32>(&v[0])?]))?.remove(0)
        });
        Ok(vec![out])
    }
}

/// Loss and backprop rows of a dense cross entropy: `labels` has the logits' shape.
fn xent<T: Float>(x: &[T], labels: &[T], n: usize) -> Result<(Vec<T>, Vec<T>)> {
    let rows = x.len().checked_div(n).unwrap_or(0);
    let mut back = alloc(x.len(), T::ZERO)?;
    let mut loss = alloc(rows, T::ZERO)?;
    if n == 0 {
        return Ok((loss, back));
    }
    // Rows of (backprop..., loss) so one parallel pass fills both.
    let mut both = alloc(rows * (n + 1), T::ZERO)?;
    for_rows(&mut both, n + 1, n * 8, |r0, chunk| {
        for (i, row) in chunk.chunks_mut(n + 1).enumerate() {
            let r = r0 + i;
            let (src, lab) = (&x[r * n..(r + 1) * n], &labels[r * n..(r + 1) * n]);
            let (b, l) = row.split_at_mut(n);
            let (max, sum) = shifted_exp(src, b);
            let lse = sum.ln();
            l[0] = src
                .iter()
                .zip(lab)
                .fold(T::ZERO, |acc, (&v, &y)| acc + y * (lse - (v - max)));
            for (o, &y) in b.iter_mut().zip(lab) {
                *o = *o / sum - y;
            }
        }
    });
    for (r, row) in both.chunks(n + 1).enumerate() {
        back[r * n..(r + 1) * n].copy_from_slice(&row[..n]);
        loss[r] = row[n];
    }
    Ok((loss, back))
}

struct SoftmaxXent;

impl SoftmaxXent {
    fn run<T: Float>(x: &Tensor, labels: &Tensor) -> Result<Vec<Tensor>> {
        let dims = broadcast_dims(&[x.dims(), labels.dims()])?;
        if dims.len() != 2 {
            return Err(Error::invalid_argument(format!(
                "logits and labels must be either 2-dimensional, or broadcasted to be 2-dimensional: logits {} labels {}",
                x.shape(),
                labels.shape()
            )));
        }
        let x = if x.dims() == dims.as_slice() {
            x.clone()
        } else {
            broadcast_to::<T>(x, &dims)?
        };
        let l = if labels.dims() == dims.as_slice() {
            labels.clone()
        } else {
            broadcast_to::<T>(labels, &dims)?
        };
        let (loss, back) = xent::<T>(x.as_slice()?, l.as_slice()?, dims[1])?;
        Ok(vec![
            Tensor::new(&dims[..1], loss)?,
            Tensor::new(&dims, back)?,
        ])
    }
}

impl Kernel for SoftmaxXent {
    fn memory_traits(&self) -> crate::MemoryTraits {
        crate::MemoryTraits::READS
    }

    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x, labels] = take("SoftmaxCrossEntropyWithLogits", inputs)?;
        if x.dtype() != labels.dtype() {
            return Err(Error::invalid_argument(
                "logits and labels must have the same dtype",
            ));
        }
        let dt = x.dtype();
        match_float!(dt, T => Self::run::<T>(&x, &labels), d => {
            if !is_half(d) {
                return Err(unsupported_dtype("SoftmaxCrossEntropyWithLogits", d));
            }
            via_f32(d, vec![x, labels], |v| Self::run::<f32>(&v[0], &v[1]))
        })
    }
}

struct SparseXent;

impl SparseXent {
    fn run<T: Float>(x: &Tensor, labels: &[i64]) -> Result<Vec<Tensor>> {
        let (b, n) = (x.dims()[0], x.dims()[1]);
        let mut dense = alloc(b * n, T::ZERO)?;
        for (r, &l) in labels.iter().enumerate() {
            dense[r * n + l as usize] = T::ONE;
        }
        let (loss, back) = xent::<T>(x.as_slice()?, &dense, n)?;
        Ok(vec![Tensor::new(&[b], loss)?, Tensor::new(&[b, n], back)?])
    }
}

impl Kernel for SparseXent {
    fn memory_traits(&self) -> crate::MemoryTraits {
        crate::MemoryTraits::READS
    }

    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x, labels] = take("SparseSoftmaxCrossEntropyWithLogits", inputs)?;
        if x.rank() != 2 {
            return Err(Error::invalid_argument(format!(
                "logits must be 2-D, but got shape {}",
                x.shape()
            )));
        }
        if labels.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "labels must be 1-D, but got shape {}",
                labels.shape()
            )));
        }
        if !matches!(labels.dtype(), DType::I32 | DType::I64) {
            return Err(unsupported_dtype(
                "SparseSoftmaxCrossEntropyWithLogits",
                labels.dtype(),
            ));
        }
        if labels.dims()[0] != x.dims()[0] {
            return Err(Error::invalid_argument(format!(
                "logits and labels must have the same first dimension, got logits shape {} and labels shape {}",
                x.shape(),
                labels.shape()
            )));
        }
        let n = x.dims()[1] as i64;
        let l = labels.to_i64_vec()?;
        if let Some(bad) = l.iter().find(|&&v| v < 0 || v >= n) {
            let all: Vec<String> = l.iter().map(|v| v.to_string()).collect();
            return Err(Error::invalid_argument(format!(
                "Received a label value of {bad} which is outside the valid range of [0, {n}).  Label values: {}",
                all.join(" ")
            )));
        }
        let dt = x.dtype();
        match_float!(dt, T => Self::run::<T>(&x, &l), d => {
            if !is_half(d) {
                return Err(unsupported_dtype("SparseSoftmaxCrossEntropyWithLogits", d));
            }
            via_f32(d, vec![x], |v| Self::run::<f32>(&v[0], &l))
        })
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("Softmax", |_| {
        Ok(Box::new(Softmax {
            log: false,
            name: "Softmax",
        }))
    });
    r.cpu("LogSoftmax", |_| {
        Ok(Box::new(Softmax {
            log: true,
            name: "LogSoftmax",
        }))
    });
    r.cpu("SoftmaxCrossEntropyWithLogits", |_| {
        Ok(Box::new(SoftmaxXent))
    });
    r.cpu("SparseSoftmaxCrossEntropyWithLogits", |_| {
        Ok(Box::new(SparseXent))
    });
}

#[cfg(test)]
mod tests {
    use crate::cpu::math::test_util::{assert_close, f32s, i32s, run, run1};
    use rill_graph::{Code, Tensor};

    #[test]
    fn softmax_is_stable_and_normalised() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0]);
        let s = run1("Softmax", &[], vec![x.clone()]);
        assert_close(
            &s,
            &[2, 3],
            &[
                0.09003057,
                0.24472847,
                0.66524096,
                1.0 / 3.0,
                1.0 / 3.0,
                1.0 / 3.0,
            ],
            1e-6,
        );
        let l = run1("LogSoftmax", &[], vec![x]);
        assert_close(
            &l,
            &[2, 3],
            &[
                -2.407606, -1.407606, -0.407606, -1.098612, -1.098612, -1.098612,
            ],
            1e-6,
        );
        assert!(run("Softmax", &[], vec![f32s(&[], &[1.0])]).is_err());
        assert_eq!(
            run1("Softmax", &[], vec![f32s(&[2, 0], &[])]).dims(),
            &[2, 0]
        );
    }

    #[test]
    fn dense_cross_entropy_broadcasts_labels() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let labels = f32s(&[3], &[0.0, 0.0, 1.0]);
        let out = run("SoftmaxCrossEntropyWithLogits", &[], vec![x, labels]).unwrap();
        assert_close(&out[0], &[2], &[0.407606, 0.407606], 1e-6);
        assert_close(
            &out[1],
            &[2, 3],
            &[
                0.09003057,
                0.24472847,
                -0.33475904,
                0.09003057,
                0.24472847,
                -0.33475904,
            ],
            1e-6,
        );
    }

    #[test]
    fn sparse_cross_entropy_checks_labels() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let out = run(
            "SparseSoftmaxCrossEntropyWithLogits",
            &[],
            vec![x.clone(), i32s(&[2], &[2, 0])],
        )
        .unwrap();
        assert_close(&out[0], &[2], &[0.407606, 2.407606], 1e-6);
        assert_close(
            &out[1],
            &[2, 3],
            &[
                0.09003057,
                0.24472847,
                -0.33475904,
                -0.90996943,
                0.24472847,
                0.66524096,
            ],
            1e-6,
        );
        let e = run(
            "SparseSoftmaxCrossEntropyWithLogits",
            &[],
            vec![x.clone(), i32s(&[2], &[3, 0])],
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e
            .message
            .starts_with("Received a label value of 3 which is outside the valid range of [0, 3)"));
        let e = run(
            "SparseSoftmaxCrossEntropyWithLogits",
            &[],
            vec![x, Tensor::vector(vec![-1i64, 0])],
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
    }
}
