//! Small nn kernels: `L2Loss` (sum(x^2) / 2), `LRN` and `LRNGrad` (local response
//! normalisation across the last dim), `InTopK` / `InTopKV2` (is each target among the k
//! largest predictions) and `TopK` / `TopKV2` (the k largest values of each last-dim row
//! and their indices).
//!
//! Invariants (TensorFlow's): LRN's `alpha` multiplies the plain windowed sum of squares
//! (no division by the window size); InTopK is false for a target out of range or a row
//! with a non-finite prediction, true when fewer than k predictions are strictly larger;
//! TopK sorts descending with ties broken by the lower index (`sorted = false` returns the
//! same, which TF allows), k < 0 or k > last dim is InvalidArgument; f16/bf16 are computed
//! in f32.

use std::cmp::Ordering;

use rill_graph::{DType, Error, Node, Result, Tensor};

use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::num::{is_half, via_f32, Float};
use crate::cpu::math::par::for_rows;
use crate::cpu::math::util::{attr_float, attr_int, match_float, match_int, scalar_i64, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

/// Runs `f` on f32/f64 natively and on f16/bf16 through f32.
fn float_kernel(
    name: &str,
    inputs: Vec<Tensor>,
    dt: DType,
    f: impl Fn(Vec<Tensor>, DType) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    match dt {
        DType::F32 | DType::F64 => f(inputs, dt),
        d if is_half(d) => via_f32(d, inputs, |v| f(v, DType::F32)),
        d => Err(unsupported_dtype(name, d)),
    }
}

struct L2Loss;

impl Kernel for L2Loss {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let dt = inputs.first().map_or(DType::F32, Tensor::dtype);
        float_kernel("L2Loss", inputs, dt, |v, dt| {
            let [x] = take("L2Loss", v)?;
            fn half_sq<T: Float>(x: &Tensor) -> Result<Tensor> {
                let s = x.as_slice::<T>()?.iter().fold(T::ZERO, |a, &v| a + v * v);
                Ok(Tensor::scalar(s * T::from_f64(0.5)))
            }
            Ok(vec![
                match_float!(dt, T => half_sq::<T>(&x)?, d => return Err(unsupported_dtype("L2Loss", d))),
            ])
        })
    }
}

#[derive(Clone, Copy)]
struct Lrn {
    radius: usize,
    bias: f64,
    alpha: f64,
    beta: f64,
    grad: bool,
}

impl Lrn {
    fn forward<T: Float>(&self, x: &Tensor) -> Result<Tensor> {
        let d = *x.dims().last().unwrap_or(&0);
        let xv = x.as_slice::<T>()?;
        let mut out = alloc(xv.len(), T::ZERO)?;
        let (bias, alpha, beta) = (
            T::from_f64(self.bias),
            T::from_f64(self.alpha),
            T::from_f64(self.beta),
        );
        for_rows(&mut out, d.max(1), d * 4, |r0, rows| {
            for (i, row) in rows.chunks_mut(d.max(1)).enumerate() {
                let src = &xv[(r0 + i) * d..(r0 + i + 1) * d];
                for (j, o) in row.iter_mut().enumerate() {
                    let (lo, hi) = (j.saturating_sub(self.radius), (j + self.radius + 1).min(d));
                    let sq = src[lo..hi].iter().fold(T::ZERO, |a, &v| a + v * v);
                    *o = src[j] / (bias + alpha * sq).powf(beta);
                }
            }
        });
        Tensor::new(x.dims(), out)
    }

    fn backward<T: Float>(&self, grads: &Tensor, x: &Tensor) -> Result<Tensor> {
        let d = *x.dims().last().unwrap_or(&0);
        let (gv, xv) = (grads.as_slice::<T>()?, x.as_slice::<T>()?);
        let mut out = alloc(xv.len(), T::ZERO)?;
        let (bias, alpha, beta) = (
            T::from_f64(self.bias),
            T::from_f64(self.alpha),
            T::from_f64(self.beta),
        );
        let two = T::from_f64(2.0);
        for_rows(&mut out, d.max(1), d * 8, |r0, rows| {
            for (i, row) in rows.chunks_mut(d.max(1)).enumerate() {
                let base = (r0 + i) * d;
                let (src, g) = (&xv[base..base + d], &gv[base..base + d]);
                for j in 0..d {
                    let (lo, hi) = (j.saturating_sub(self.radius), (j + self.radius + 1).min(d));
                    let norm = src[lo..hi].iter().fold(T::ZERO, |a, &v| a + v * v) * alpha + bias;
                    let pow = norm.powf(-beta);
                    let act = src[j] * pow;
                    for k in lo..hi {
                        let mut dyi = -two * alpha * beta * src[k] * act / norm;
                        if k == j {
                            dyi += pow;
                        }
                        row[k] += dyi * g[j];
                    }
                }
            }
        });
        Tensor::new(x.dims(), out)
    }
}

impl Kernel for Lrn {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let name = if self.grad { "LRNGrad" } else { "LRN" };
        let dt = inputs.first().map_or(DType::F32, Tensor::dtype);
        float_kernel(name, inputs, dt, |v, dt| {
            let out = if self.grad {
                let [g, x, y] = take(name, v)?;
                if g.rank() != 4 || g.dims() != x.dims() || x.dims() != y.dims() {
                    return Err(Error::invalid_argument(
                        "LRNGrad inputs must be 4-D with the same shape",
                    ));
                }
                match_float!(dt, T => self.backward::<T>(&g, &x)?, d => return Err(unsupported_dtype(name, d)))
            } else {
                let [x] = take(name, v)?;
                if x.rank() != 4 {
                    return Err(Error::invalid_argument(format!(
                        "in must be 4-dimensional, got {}",
                        x.shape()
                    )));
                }
                match_float!(dt, T => self.forward::<T>(&x)?, d => return Err(unsupported_dtype(name, d)))
            };
            Ok(vec![out])
        })
    }
}

fn lrn_factory(n: &Node, grad: bool) -> Result<Box<dyn Kernel>> {
    let radius = attr_int(n, "depth_radius", 5)?;
    if radius < 0 {
        return Err(Error::invalid_argument(format!(
            "depth_radius must be non-negative, got {radius}"
        )));
    }
    Ok(Box::new(Lrn {
        radius: radius as usize,
        bias: attr_float(n, "bias", 1.0)? as f64,
        alpha: attr_float(n, "alpha", 1.0)? as f64,
        beta: attr_float(n, "beta", 0.5)? as f64,
        grad,
    }))
}

/// `InTopK` (k attr) / `InTopKV2` (k input).
struct InTopK {
    k_attr: Option<i64>,
}

impl Kernel for InTopK {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let (pred, targets, k) = match self.k_attr {
            Some(k) => {
                let [p, t] = take("InTopK", inputs)?;
                (p, t, k)
            }
            None => {
                let [p, t, k] = take("InTopKV2", inputs)?;
                let k = scalar_i64(&k, "k")?;
                (p, t, k)
            }
        };
        if pred.rank() != 2 || targets.rank() != 1 || targets.dims()[0] != pred.dims()[0] {
            return Err(Error::invalid_argument(format!(
                "predictions must be 2-dimensional and targets 1-dimensional with the same batch size, got {} and {}",
                pred.shape(),
                targets.shape()
            )));
        }
        let pred = match pred.dtype() {
            DType::F32 => pred,
            d if is_half(d) => crate::cpu::math::num::widen(pred)?,
            d => return Err(unsupported_dtype("InTopK", d)),
        };
        let (p, c) = (pred.as_slice::<f32>()?, pred.dims()[1]);
        let out: Vec<bool> = targets
            .to_i64_vec()?
            .iter()
            .enumerate()
            .map(|(b, &t)| {
                let row = &p[b * c..(b + 1) * c];
                if t < 0
                    || t as usize >= c
                    || !row[t as usize].is_finite()
                    || row.iter().any(|v| !v.is_finite())
                {
                    return false;
                }
                let target = row[t as usize];
                (row.iter().filter(|&&v| v > target).count() as i64) < k
            })
            .collect();
        Ok(vec![Tensor::vector(out)])
    }
}

/// An element TopK can rank: NaN ranks above everything (so it is never silently lost).
trait Rank: Copy + PartialOrd + rill_graph::Element {
    fn nan(self) -> bool;
}
impl Rank for f32 {
    fn nan(self) -> bool {
        self.is_nan()
    }
}
impl Rank for f64 {
    fn nan(self) -> bool {
        self.is_nan()
    }
}
macro_rules! rank_int { ($($t:ty),*) => {$(impl Rank for $t { fn nan(self) -> bool { false } })*}; }
rank_int!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Descending by value, then ascending by index.
fn desc<T: Rank>((a, i): (T, usize), (b, j): (T, usize)) -> Ordering {
    match (a.nan(), b.nan()) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal).then(i.cmp(&j)),
    }
}

struct TopK {
    k_attr: Option<i64>,
    index: DType,
}

impl TopK {
    fn run<T: Rank>(&self, x: &Tensor, k: usize) -> Result<Vec<Tensor>> {
        let n = *x.dims().last().unwrap_or(&0);
        let rows: usize = x.dims()[..x.rank() - 1].iter().product();
        let xv = x.as_slice::<T>()?;
        let mut best = alloc(rows * k, (T::default(), 0usize))?;
        for_rows(&mut best, k, n * 4, |r0, out_rows| {
            let mut idx: Vec<(T, usize)> = Vec::with_capacity(n);
            for (i, out) in out_rows.chunks_mut(k.max(1)).enumerate() {
                let row = &xv[(r0 + i) * n..(r0 + i + 1) * n];
                idx.clear();
                idx.extend(row.iter().copied().zip(0..n));
                if k < n {
                    idx.select_nth_unstable_by(k, |&a, &b| desc(a, b));
                }
                idx[..k].sort_unstable_by(|&a, &b| desc(a, b));
                out.copy_from_slice(&idx[..k]);
            }
        });
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = k;
        }
        let values = Tensor::new(&dims, best.iter().map(|p| p.0).collect::<Vec<T>>())?;
        let indices = match self.index {
            DType::I16 => Tensor::new(&dims, best.iter().map(|p| p.1 as i16).collect::<Vec<_>>())?,
            DType::I64 => Tensor::new(&dims, best.iter().map(|p| p.1 as i64).collect::<Vec<_>>())?,
            _ => Tensor::new(&dims, best.iter().map(|p| p.1 as i32).collect::<Vec<_>>())?,
        };
        Ok(vec![values, indices])
    }
}

impl Kernel for TopK {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let (x, k) = match self.k_attr {
            Some(k) => {
                let [x] = take("TopK", inputs)?;
                (x, k)
            }
            None => {
                let [x, k] = take("TopKV2", inputs)?;
                let k = scalar_i64(&k, "k")?;
                (x, k)
            }
        };
        if k < 0 {
            return Err(Error::invalid_argument(format!("Need k >= 0, got {k}")));
        }
        let n = *x
            .dims()
            .last()
            .ok_or_else(|| Error::invalid_argument("input must be >= 1-D, got shape []"))?;
        if (n as i64) < k {
            return Err(Error::invalid_argument(format!(
                "input must have at least k columns. Had {n}, needed {k}"
            )));
        }
        let k = k as usize;
        let dt = x.dtype();
        match dt {
            DType::F32 => self.run::<f32>(&x, k),
            DType::F64 => self.run::<f64>(&x, k),
            d if is_half(d) => {
                let mut out = self.run::<f32>(&crate::cpu::math::num::widen(x)?, k)?;
                out[0] = crate::cpu::math::num::narrow(out[0].clone(), d)?;
                Ok(out)
            }
            d => match_int!(d, T => self.run::<T>(&x, k), d => Err(unsupported_dtype("TopKV2", d))),
        }
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("L2Loss", |_| Ok(Box::new(L2Loss)));
    r.cpu("LRN", |n| lrn_factory(n, false));
    r.cpu("LRNGrad", |n| lrn_factory(n, true));
    r.cpu("InTopK", |n| {
        Ok(Box::new(InTopK {
            k_attr: Some(attr_int(n, "k", 1)?),
        }))
    });
    r.cpu("InTopKV2", |_| Ok(Box::new(InTopK { k_attr: None })));
    r.cpu("TopK", |n| {
        Ok(Box::new(TopK {
            k_attr: Some(attr_int(n, "k", 1)?),
            index: DType::I32,
        }))
    });
    r.cpu("TopKV2", |n| {
        let index = crate::cpu::math::util::attr_type(n, "index_type", DType::I32)?;
        if !matches!(index, DType::I16 | DType::I32 | DType::I64) {
            return Err(unsupported_dtype("TopKV2 index_type", index));
        }
        Ok(Box::new(TopK {
            k_attr: None,
            index,
        }))
    });
}
