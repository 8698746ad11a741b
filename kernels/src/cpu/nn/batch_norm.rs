//! Fused batch normalisation: `FusedBatchNorm`, `FusedBatchNormV2`, `FusedBatchNormV3`
//! (inference with the given statistics, or training with batch statistics and the
//! exponential running average) and their gradients `FusedBatchNormGrad{,V2,V3}`.
//!
//! The input (4-D or 5-D, NHWC/NDHWC or NCHW/NCDHW) is viewed as `[outer, C, inner]`
//! (inner = 1 channels-last) and never transposed. Per-channel sums accumulate in f64,
//! split across cores.
//!
//! Invariants (TensorFlow's CPU kernels): y = (x - mean) * (scale * rsqrt(var + eps)) +
//! offset; in training the normalisation uses the biased batch variance, `batch_variance`
//! is the Bessel-corrected one (blended as `(1 - f) * old + f * new` when
//! `exponential_avg_factor` f != 1), `reserve_space_1/2` are the batch mean and biased
//! variance, V3's `reserve_space_3` is a scalar 0; an empty input gives NaN statistics.
//! `T` may be f16/bf16 (computed in f32) with `U` = f32; outputs other than y are `U`.

use rayon::prelude::*;
use rill_graph::{DType, Error, Node, Result, Tensor};

use super::window::Format;
use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::num::{is_half, narrow, widen, Float};
use crate::cpu::math::par::{for_rows, worth_splitting};
use crate::cpu::math::util::{attr_bool, attr_float};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

/// `[outer, C, inner]` of an activation tensor.
#[derive(Clone, Copy)]
struct Layout {
    outer: usize,
    c: usize,
    inner: usize,
}

impl Layout {
    fn of(x: &Tensor, format: Format) -> Result<Layout> {
        let d = x.dims();
        if d.len() != 4 && d.len() != 5 {
            return Err(Error::invalid_argument(format!(
                "input must be 4 or 5-dimensional, got {}",
                x.shape()
            )));
        }
        Ok(match format {
            Format::Nhwc => Layout {
                outer: d[..d.len() - 1].iter().product(),
                c: d[d.len() - 1],
                inner: 1,
            },
            Format::Nchw => Layout {
                outer: d[0],
                c: d[1],
                inner: d[2..].iter().product(),
            },
        })
    }
    fn count(&self) -> usize {
        self.outer * self.inner
    }
}

/// Per channel, the sum of `f(channel, x)` over the batch and spatial positions.
fn channel_sums<U: Float>(x: &[U], l: Layout, f: impl Fn(usize, U) -> f64 + Sync) -> Vec<f64> {
    let (c, inner) = (l.c, l.inner);
    if c == 0 {
        return vec![];
    }
    if inner == 1 {
        let rows = l.outer;
        let per = if worth_splitting(x.len()) {
            rows.div_ceil(rayon::current_num_threads() * 4).max(1)
        } else {
            rows.max(1)
        };
        let add = |mut a: Vec<f64>, b: Vec<f64>| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        };
        x.par_chunks(per * c)
            .map(|chunk| {
                let mut s = vec![0f64; c];
                for row in chunk.chunks(c) {
                    for (ch, (a, &v)) in s.iter_mut().zip(row).enumerate() {
                        *a += f(ch, v);
                    }
                }
                s
            })
            .reduce(|| vec![0f64; c], add)
    } else {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                (0..l.outer)
                    .map(|o| {
                        x[(o * c + ch) * inner..][..inner]
                            .iter()
                            .map(|&v| f(ch, v))
                            .sum::<f64>()
                    })
                    .sum()
            })
            .collect()
    }
}

/// `out = g(channel, x, extra)` elementwise over the layout, in parallel.
fn per_channel<U: Float>(
    x: &[U],
    extra: Option<&[U]>,
    l: Layout,
    g: impl Fn(usize, U, U) -> U + Sync,
) -> Result<Vec<U>> {
    let mut out = alloc(x.len(), U::ZERO)?;
    let row = l.c * l.inner;
    for_rows(&mut out, row, row, |r0, rows| {
        for (i, o) in rows.iter_mut().enumerate() {
            let p = r0 * row + i;
            let ch = (p / l.inner) % l.c;
            *o = g(ch, x[p], extra.map_or(U::ZERO, |e| e[p]));
        }
    });
    Ok(out)
}

fn vec_u<U: Float>(t: &Tensor, c: usize, what: &str) -> Result<Vec<U>> {
    if t.rank() != 1 || t.dims()[0] != c {
        return Err(Error::invalid_argument(format!(
            "{what} must be 1-dimensional with as many elements as the channels of x ({c}), got {}",
            t.shape()
        )));
    }
    Ok(t.as_slice::<U>()?.to_vec())
}

fn to_tensor<U: Float>(v: Vec<f64>) -> Result<Tensor> {
    Ok(Tensor::vector(
        v.into_iter().map(U::from_f64).collect::<Vec<U>>(),
    ))
}

struct FusedBatchNorm {
    eps: f64,
    factor: f64,
    format: Format,
    training: bool,
    v3: bool,
    grad: bool,
}

impl FusedBatchNorm {
    fn forward<U: Float>(&self, x: &Tensor, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let l = Layout::of(x, self.format)?;
        let xv = x.as_slice::<U>()?;
        let scale = vec_u::<U>(&inputs[1], l.c, "scale")?;
        let offset = vec_u::<U>(&inputs[2], l.c, "offset")?;
        let need_stats = !self.training || self.factor != 1.0;
        let (old_mean, old_var) = if need_stats {
            (
                vec_u::<U>(&inputs[3], l.c, "mean")?,
                vec_u::<U>(&inputs[4], l.c, "variance")?,
            )
        } else {
            (vec![U::ZERO; l.c], vec![U::ZERO; l.c])
        };
        let n = l.count();
        let (mean, var): (Vec<f64>, Vec<f64>) = if n == 0 {
            (vec![f64::NAN; l.c], vec![f64::NAN; l.c])
        } else if self.training {
            let m: Vec<f64> = channel_sums(xv, l, |_, v| v.to_f64())
                .into_iter()
                .map(|s| s / n as f64)
                .collect();
            let v = channel_sums(xv, l, |ch, v| (v.to_f64() - m[ch]).powi(2))
                .into_iter()
                .map(|s| s / n as f64)
                .collect();
            (m, v)
        } else {
            (
                old_mean.iter().map(|v| v.to_f64()).collect(),
                old_var.iter().map(|v| v.to_f64()).collect(),
            )
        };
        let a: Vec<U> = (0..l.c)
            .map(|c| U::from_f64(1.0 / (var[c] + self.eps).sqrt()) * scale[c])
            .collect();
        let m_u: Vec<U> = mean.iter().map(|&v| U::from_f64(v)).collect();
        let y = per_channel(xv, None, l, |c, v, _| (v - m_u[c]) * a[c] + offset[c])?;
        let y = Tensor::new(x.dims(), y)?;
        let (batch_mean, batch_var) = if !self.training || n == 0 {
            (mean.clone(), var.clone())
        } else {
            let adj = n as f64 / (n.max(2) - 1) as f64;
            let f = self.factor;
            if f == 1.0 {
                (mean.clone(), var.iter().map(|v| v * adj).collect())
            } else {
                (
                    (0..l.c)
                        .map(|c| (1.0 - f) * old_mean[c].to_f64() + f * mean[c])
                        .collect(),
                    (0..l.c)
                        .map(|c| (1.0 - f) * old_var[c].to_f64() + f * adj * var[c])
                        .collect(),
                )
            }
        };
        let mut out = vec![
            y,
            to_tensor::<U>(batch_mean)?,
            to_tensor::<U>(batch_var)?,
            to_tensor::<U>(mean)?,
            to_tensor::<U>(var)?,
        ];
        if self.v3 {
            out.push(Tensor::scalar(U::ZERO));
        }
        Ok(out)
    }

    fn backward<U: Float>(&self, x: &Tensor, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let dy = &inputs[0];
        if dy.dims() != x.dims() {
            return Err(Error::invalid_argument(format!(
                "x and y_backprop must have same shape, but x has shape {} and y_backprop has shape {}",
                x.shape(),
                dy.shape()
            )));
        }
        let l = Layout::of(x, self.format)?;
        let (xv, dyv) = (x.as_slice::<U>()?, dy.as_slice::<U>()?);
        let scale = vec_u::<U>(&inputs[2], l.c, "scale")?;
        let mean: Vec<f64> = vec_u::<U>(&inputs[3], l.c, "reserve_space_1")?
            .iter()
            .map(|v| v.to_f64())
            .collect();
        let var = vec_u::<U>(&inputs[4], l.c, "reserve_space_2")?;
        let inv: Vec<f64> = var
            .iter()
            .map(|v| 1.0 / (v.to_f64() + self.eps).sqrt())
            .collect();
        let n = l.count().max(1) as f64;
        let d_offset = channel_sums(dyv, l, |_, g| g.to_f64());
        // sum(dy * (x - mean)) per channel, pairing dy with x by position.
        let mut d_scale = vec![0f64; l.c];
        if l.c > 0 {
            let prod = per_channel(dyv, Some(xv), l, |c, g, v| {
                U::from_f64(g.to_f64() * (v.to_f64() - mean[c]))
            })?;
            d_scale = channel_sums(&prod, l, |_, p| p.to_f64());
        }
        let dx = if self.training {
            per_channel(dyv, Some(xv), l, |c, g, v| {
                let xhat = (v.to_f64() - mean[c]) * inv[c];
                let k = scale[c].to_f64() * inv[c];
                U::from_f64(k * (g.to_f64() - d_offset[c] / n - xhat * d_scale[c] * inv[c] / n))
            })?
        } else {
            per_channel(dyv, None, l, |c, g, _| {
                U::from_f64(g.to_f64() * scale[c].to_f64() * inv[c])
            })?
        };
        let d_scale: Vec<f64> = d_scale.iter().zip(&inv).map(|(s, i)| s * i).collect();
        let mut out = vec![
            Tensor::new(x.dims(), dx)?,
            to_tensor::<U>(d_scale)?,
            to_tensor::<U>(d_offset)?,
        ];
        out.push(Tensor::new(&[0], Vec::<U>::new())?);
        out.push(Tensor::new(&[0], Vec::<U>::new())?);
        Ok(out)
    }

    fn run<U: Float>(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let xi = usize::from(self.grad);
        let t = inputs[xi].dtype();
        let mut inputs = inputs;
        if is_half(t) {
            if U::DTYPE != DType::F32 {
                return Err(unsupported_dtype("FusedBatchNorm", t));
            }
            inputs[xi] = widen(inputs[xi].clone())?;
            if self.grad {
                inputs[0] = widen(inputs[0].clone())?;
            }
        }
        let x = inputs[xi].clone();
        let mut out = if self.grad {
            self.backward::<U>(&x, &inputs)?
        } else {
            self.forward::<U>(&x, &inputs)?
        };
        out[0] = narrow(out[0].clone(), t)?;
        Ok(out)
    }
}

impl Kernel for FusedBatchNorm {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let want = if self.grad {
            5 + usize::from(self.v3)
        } else {
            5
        };
        if inputs.len() != want {
            return Err(Error::invalid_argument(format!(
                "expected {want} inputs, got {}",
                inputs.len()
            )));
        }
        match inputs[2].dtype() {
            DType::F32 => self.run::<f32>(inputs),
            DType::F64 => self.run::<f64>(inputs),
            d => Err(unsupported_dtype("FusedBatchNorm", d)),
        }
    }
}

fn factory(node: &Node, v3: bool, grad: bool) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(FusedBatchNorm {
        eps: attr_float(node, "epsilon", 1e-4)? as f64,
        factor: attr_float(node, "exponential_avg_factor", 1.0)? as f64,
        format: Format::parse(node)?,
        training: attr_bool(node, "is_training", true)?,
        v3,
        grad,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("FusedBatchNorm", |n| factory(n, false, false));
    r.cpu("FusedBatchNormV2", |n| factory(n, false, false));
    r.cpu("FusedBatchNormV3", |n| factory(n, true, false));
    r.cpu("FusedBatchNormGrad", |n| factory(n, false, true));
    r.cpu("FusedBatchNormGradV2", |n| factory(n, false, true));
    r.cpu("FusedBatchNormGradV3", |n| factory(n, true, true));
}
