//! Reductions `Sum`, `Mean`, `Prod`, `Max`, `Min`, `EuclideanNorm`, `All`, `Any` over the
//! axes given by the second input (int32/int64, scalar or vector, negative axes allowed,
//! a dim named twice is InvalidArgument as in TensorFlow), with `keep_dims`.
//!
//! The input shape is collapsed into alternating runs of kept and reduced dims (size-1
//! dims dropped); each reduced run is folded in one pass over an (outer, reduce, inner)
//! view, innermost contiguous runs with eight independent accumulators (vectorisable),
//! strided runs row by row into the output. Large passes split across cores.
//!
//! Invariants (TensorFlow's): no axes returns the input unchanged; an empty reduction gives
//! the identity (0, 1, lowest for Max, highest for Min, true for All, false for Any, NaN
//! for a float Mean, 0 for an integer Mean); integer Sum/Prod wrap and integer Mean
//! divides the wrapped sum by the count, truncating; f16/bf16 are computed in f32.

use std::borrow::Cow;

use rayon::prelude::*;
use rill_graph::{DType, Error, Node, Result, Tensor};

use super::broadcast::alloc;
use super::num::{is_half, max_nan, min_nan, via_f32, Float, Int};
use super::par::{for_rows, worth_splitting};
use super::util::{attr_bool, match_float, match_int, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sum,
    Mean,
    Prod,
    Max,
    Min,
    EuclideanNorm,
    All,
    Any,
}

/// Folds `s` with `f` from `init` using eight independent accumulators.
#[inline]
pub(crate) fn fold_lanes<T: Copy>(s: &[T], init: T, f: &impl Fn(T, T) -> T) -> T {
    let mut acc = [init; 8];
    let chunks = s.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    let mut r = acc[0];
    for &a in &acc[1..] {
        r = f(r, a);
    }
    rest.iter().fold(r, |r, &v| f(r, v))
}

/// Reduces the middle dim of `x` viewed as `[outer, r, inner]`.
fn reduce3<T: Copy + Send + Sync>(
    x: &[T],
    (outer, r, inner): (usize, usize, usize),
    init: T,
    f: &(impl Fn(T, T) -> T + Sync),
) -> Result<Vec<T>> {
    let mut out = alloc(outer * inner, init)?;
    if r == 0 {
        return Ok(out);
    }
    if inner == 1 {
        if outer < rayon::current_num_threads() && worth_splitting(outer * r) {
            let chunk = r.div_ceil(rayon::current_num_threads() * 4).max(4096);
            for (o, v) in out.iter_mut().enumerate() {
                *v = x[o * r..(o + 1) * r]
                    .par_chunks(chunk)
                    .map(|c| fold_lanes(c, init, f))
                    .reduce(|| init, f);
            }
        } else {
            for_rows(&mut out, 1, r, |start, chunk| {
                for (i, v) in chunk.iter_mut().enumerate() {
                    let o = start + i;
                    *v = fold_lanes(&x[o * r..(o + 1) * r], init, f);
                }
            });
        }
        return Ok(out);
    }
    const TILE: usize = 1024;
    for_rows(&mut out, 1, r, |start, chunk| {
        let end = start + chunk.len();
        let mut pos = start;
        while pos < end {
            let (o, c0) = (pos / inner, pos % inner);
            let len = (inner - c0).min(end - pos);
            let seg = &mut chunk[pos - start..pos - start + len];
            for (t, tile) in seg.chunks_mut(TILE).enumerate() {
                let c = c0 + t * TILE;
                for j in 0..r {
                    let row = &x[(o * r + j) * inner + c..][..tile.len()];
                    for (s, &v) in tile.iter_mut().zip(row) {
                        *s = f(*s, v);
                    }
                }
            }
            pos += len;
        }
    });
    Ok(out)
}

/// Folds every reduced run of `groups` (size, reduced), last first.
fn reduce_groups<T: Copy + Send + Sync>(
    x: &[T],
    groups: &[(usize, bool)],
    init: T,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<Vec<T>> {
    let mut groups = groups.to_vec();
    let mut cur: Cow<[T]> = Cow::Borrowed(x);
    while let Some(g) = groups.iter().rposition(|&(_, red)| red) {
        let outer = groups[..g].iter().map(|g| g.0).product();
        let inner = groups[g + 1..].iter().map(|g| g.0).product();
        cur = Cow::Owned(reduce3(&cur, (outer, groups[g].0, inner), init, &f)?);
        groups.remove(g);
    }
    Ok(cur.into_owned())
}

fn reduce_float<T: Float>(
    kind: Kind,
    x: &[T],
    groups: &[(usize, bool)],
    count: usize,
) -> Result<Vec<T>> {
    Ok(match kind {
        Kind::Sum => reduce_groups(x, groups, T::ZERO, |a, b| a + b)?,
        Kind::Mean => {
            let mut v = reduce_groups(x, groups, T::ZERO, |a, b| a + b)?;
            let n = T::from_f64(count as f64);
            v.iter_mut().for_each(|s| *s = *s / n);
            v
        }
        Kind::Prod => reduce_groups(x, groups, T::ONE, |a, b| a * b)?,
        Kind::Max => reduce_groups(x, groups, T::NEG_INFINITY, max_nan)?,
        Kind::Min => reduce_groups(x, groups, T::INFINITY, min_nan)?,
        Kind::EuclideanNorm => {
            let sq: Vec<T> = x.iter().map(|&v| v * v).collect();
            let mut v = reduce_groups(&sq, groups, T::ZERO, |a, b| a + b)?;
            v.iter_mut().for_each(|s| *s = s.sqrt());
            v
        }
        Kind::All | Kind::Any => return Err(Error::internal("logical reduction on floats")),
    })
}

fn reduce_int<T: Int + Send + Sync>(
    kind: Kind,
    x: &[T],
    groups: &[(usize, bool)],
    count: usize,
) -> Result<Vec<T>> {
    Ok(match kind {
        Kind::Sum => reduce_groups(x, groups, T::ZERO, T::wrapping_add)?,
        // TensorFlow sums integer means in int64 (uint64 for unsigned types), wrapping,
        // then divides and casts back.
        Kind::Mean if T::MIN < T::ZERO => {
            let wide: Vec<i64> = x.iter().map(|v| v.to_i128() as i64).collect();
            let s = reduce_groups(&wide, groups, 0i64, i64::wrapping_add)?;
            let n = count.max(1) as i64;
            s.into_iter()
                .map(|v| T::from_i128((v / n) as i128))
                .collect()
        }
        Kind::Mean => {
            let wide: Vec<u64> = x.iter().map(|v| v.to_i128() as u64).collect();
            let s = reduce_groups(&wide, groups, 0u64, u64::wrapping_add)?;
            let n = count.max(1) as u64;
            s.into_iter()
                .map(|v| T::from_i128((v / n) as i128))
                .collect()
        }
        Kind::Prod => reduce_groups(x, groups, T::ONE, T::wrapping_mul)?,
        Kind::Max => reduce_groups(x, groups, T::MIN, Ord::max)?,
        Kind::Min => reduce_groups(x, groups, T::MAX, Ord::min)?,
        _ => return Err(unsupported_dtype(&format!("{kind:?}"), T::DTYPE)),
    })
}

/// The reduced dims as runs, the output dims, and the number of reduced elements.
type Layout = (Vec<(usize, bool)>, Vec<usize>, usize);

/// Collapses `dims` reduced along `axes` (TensorFlow's axis rules).
fn layout(dims: &[usize], axes: &Tensor, keep_dims: bool) -> Result<Layout> {
    if axes.rank() > 1 {
        return Err(Error::invalid_argument(format!(
            "reduction indices must be a scalar or vector, got shape {}",
            axes.shape()
        )));
    }
    let rank = dims.len() as i64;
    let mut reduced = vec![false; dims.len()];
    for a in axes.to_i64_vec()? {
        if a < -rank || a >= rank {
            return Err(Error::invalid_argument(format!(
                "Invalid reduction dimension ({a} for input with {rank} dimension(s)"
            )));
        }
        let i = (if a < 0 { a + rank } else { a }) as usize;
        if std::mem::replace(&mut reduced[i], true) {
            return Err(Error::invalid_argument(format!(
                "Invalid reduction arguments: Axes contains duplicate dimension: {i}"
            )));
        }
    }
    let mut groups: Vec<(usize, bool)> = vec![];
    let (mut out, mut count) = (vec![], 1usize);
    for (&d, &red) in dims.iter().zip(&reduced) {
        if red {
            count *= d;
            if keep_dims {
                out.push(1);
            }
        } else {
            out.push(d);
        }
        if d == 1 {
            continue;
        }
        match groups.last_mut() {
            Some(g) if g.1 == red => g.0 *= d,
            _ => groups.push((d, red)),
        }
    }
    Ok((groups, out, count))
}

struct Reduce {
    kind: Kind,
    name: &'static str,
    keep_dims: bool,
}

impl Reduce {
    fn run(&self, x: Tensor, axes: &Tensor) -> Result<Tensor> {
        let (groups, out_dims, count) = layout(x.dims(), axes, self.keep_dims)?;
        if !groups.iter().any(|g| g.1) && self.kind != Kind::EuclideanNorm {
            return x.reshape(&out_dims);
        }
        let dt = x.dtype();
        let logical = matches!(self.kind, Kind::All | Kind::Any);
        if logical != (dt == DType::Bool) {
            return Err(unsupported_dtype(self.name, dt));
        }
        let data = match_float!(dt, T => Tensor::new(&out_dims, reduce_float::<T>(self.kind, x.as_slice()?, &groups, count)?)?, d => {
            if is_half(d) {
                let kind = self.kind;
                via_f32(d, vec![x], |v| {
                    let [x] = take("reduce", v)?;
                    Ok(vec![Tensor::new(&out_dims, reduce_float::<f32>(kind, x.as_slice()?, &groups, count)?)?])
                })?
                .remove(0)
            } else if d == DType::Bool {
                let v = x.as_slice::<bool>()?;
                let r = if self.kind == Kind::All {
                    reduce_groups(v, &groups, true, |a, b| a && b)?
                } else {
                    reduce_groups(v, &groups, false, |a, b| a || b)?
                };
                Tensor::new(&out_dims, r)?
            } else {
                match_int!(d, T => Tensor::new(&out_dims, reduce_int::<T>(self.kind, x.as_slice()?, &groups, count)?)?,
                    d => return Err(unsupported_dtype(self.name, d)))
            }
        });
        Ok(data)
    }
}

impl Kernel for Reduce {
    fn memory_traits(&self) -> crate::MemoryTraits {
        crate::MemoryTraits::READS
    }

    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x, axes] = take(self.name, inputs)?;
        Ok(vec![self.run(x, &axes)?])
    }
}

/// `Sum` of `x` over `axes` (not kept): for kernels that reduce, e.g. `BiasAddGrad`.
pub(crate) fn sum_over(x: Tensor, axes: &[i64]) -> Result<Tensor> {
    Reduce {
        kind: Kind::Sum,
        name: "Sum",
        keep_dims: false,
    }
    .run(x, &Tensor::vector(axes.to_vec()))
}

fn factory(node: &Node, kind: Kind, name: &'static str) -> Result<Box<dyn Kernel>> {
    if let Some(d) = KernelRegistry::kernel_dtype(node) {
        let logical = matches!(kind, Kind::All | Kind::Any);
        let ok = if logical {
            d == DType::Bool
        } else {
            d.is_float() || (d.is_integer() && kind != Kind::EuclideanNorm)
        };
        if !ok {
            return Err(unsupported_dtype(name, d));
        }
    }
    Ok(Box::new(Reduce {
        kind,
        name,
        keep_dims: attr_bool(node, "keep_dims", false)?,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("Sum", |n| factory(n, Kind::Sum, "Sum"));
    r.cpu("Mean", |n| factory(n, Kind::Mean, "Mean"));
    r.cpu("Prod", |n| factory(n, Kind::Prod, "Prod"));
    r.cpu("Max", |n| factory(n, Kind::Max, "Max"));
    r.cpu("Min", |n| factory(n, Kind::Min, "Min"));
    r.cpu("EuclideanNorm", |n| {
        factory(n, Kind::EuclideanNorm, "EuclideanNorm")
    });
    r.cpu("All", |n| factory(n, Kind::All, "All"));
    r.cpu("Any", |n| factory(n, Kind::Any, "Any"));
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, random, run, run1};
    use rill_graph::{AttrValue, Tensor};

    fn keep() -> [(&'static str, AttrValue); 1] {
        [("keep_dims", AttrValue::Bool(true))]
    }

    /// [2,3,4] with values 0..24.
    fn cube() -> Tensor {
        f32s(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>())
    }

    #[test]
    fn axes_negative_multiple_and_keep_dims() {
        let s = run1("Sum", &[], vec![cube(), i32s(&[1], &[1])]);
        assert_close(
            &s,
            &[2, 4],
            &[12.0, 15.0, 18.0, 21.0, 48.0, 51.0, 54.0, 57.0],
            0.0,
        );
        let s = run1("Sum", &keep(), vec![cube(), i32s(&[2], &[0, -1])]);
        assert_close(&s, &[1, 3, 1], &[60.0, 92.0, 124.0], 0.0);
        let s = run1("Sum", &[], vec![cube(), Tensor::vector(vec![2i64, 0, 1])]);
        assert_close(&s, &[], &[276.0], 0.0);
        let m = run1("Mean", &[], vec![cube(), i32s(&[], &[-1])]);
        assert_close(&m, &[2, 3], &[1.5, 5.5, 9.5, 13.5, 17.5, 21.5], 0.0);
        let p = run1(
            "Prod",
            &[],
            vec![f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), i32s(&[1], &[0])],
        );
        assert_close(&p, &[2], &[3.0, 8.0], 0.0);
        let mx = run1(
            "Max",
            &[],
            vec![f32s(&[2, 2], &[1.0, f32::NAN, 3.0, 4.0]), i32s(&[1], &[1])],
        );
        assert_close(&mx, &[2], &[f32::NAN, 4.0], 0.0);
        assert!(run("Sum", &[], vec![cube(), i32s(&[1], &[3])]).is_err());
        assert!(run("Sum", &[], vec![cube(), i32s(&[1], &[-4])]).is_err());
    }

    #[test]
    fn empty_axes_and_empty_tensors() {
        let same = run1("Sum", &[], vec![cube(), i32s(&[0], &[])]);
        assert_eq!(same, cube());
        // A dim named twice (here 0 and -3) is InvalidArgument, as in TensorFlow.
        let dup = run("Sum", &[], vec![cube(), i32s(&[2], &[0, -3])]).unwrap_err();
        assert_eq!(dup.code, rill_graph::Code::InvalidArgument);
        let e = f32s(&[0, 3], &[]);
        assert_close(
            &run1("Sum", &[], vec![e.clone(), i32s(&[1], &[0])]),
            &[3],
            &[0.0; 3],
            0.0,
        );
        assert_close(
            &run1("Prod", &[], vec![e.clone(), i32s(&[1], &[0])]),
            &[3],
            &[1.0; 3],
            0.0,
        );
        assert_close(
            &run1("Max", &[], vec![e.clone(), i32s(&[1], &[0])]),
            &[3],
            &[f32::NEG_INFINITY; 3],
            0.0,
        );
        assert_close(
            &run1("Min", &[], vec![e.clone(), i32s(&[1], &[0])]),
            &[3],
            &[f32::INFINITY; 3],
            0.0,
        );
        assert_close(
            &run1("Mean", &[], vec![e.clone(), i32s(&[1], &[0])]),
            &[3],
            &[f32::NAN; 3],
            0.0,
        );
        assert_eq!(run1("Sum", &[], vec![e, i32s(&[1], &[1])]).dims(), &[0]);
        let ie = run1("Max", &[], vec![i32s(&[0], &[]), i32s(&[], &[0])]);
        assert_eq!(ie.as_slice::<i32>().unwrap(), &[i32::MIN]);
        let im = run1("Mean", &[], vec![i32s(&[0], &[]), i32s(&[], &[0])]);
        assert_eq!(im.as_slice::<i32>().unwrap(), &[0]);
        let b = run1(
            "All",
            &[],
            vec![
                Tensor::new(&[0], Vec::<bool>::new()).unwrap(),
                i32s(&[], &[0]),
            ],
        );
        assert_eq!(b.as_slice::<bool>().unwrap(), &[true]);
        let sc = run1("Sum", &[], vec![f32s(&[], &[5.0]), i32s(&[0], &[])]);
        assert_close(&sc, &[], &[5.0], 0.0);
    }

    #[test]
    fn integer_reductions_wrap_and_truncate() {
        let x = i32s(&[4], &[i32::MAX, 1, 0, 0]);
        assert_eq!(
            run1("Sum", &[], vec![x, i32s(&[], &[0])])
                .as_slice::<i32>()
                .unwrap(),
            &[i32::MIN]
        );
        let m = run1(
            "Mean",
            &[],
            vec![i32s(&[2, 2], &[1, 2, -3, -4]), i32s(&[], &[1])],
        );
        assert_eq!(m.as_slice::<i32>().unwrap(), &[1, -3]);
        // Means accumulate in 64 bits, as in TensorFlow.
        let m = run1(
            "Mean",
            &[],
            vec![i32s(&[2], &[i32::MAX, 1]), i32s(&[], &[0])],
        );
        assert_eq!(m.as_slice::<i32>().unwrap(), &[1 << 30]);
        let m = run1(
            "Mean",
            &[],
            vec![Tensor::vector(vec![1i8; 300]), i32s(&[], &[0])],
        );
        assert_eq!(m.as_slice::<i8>().unwrap(), &[1]);
        let m = run1(
            "Mean",
            &[],
            vec![Tensor::vector(vec![200u8, 100]), i32s(&[], &[0])],
        );
        assert_eq!(m.as_slice::<u8>().unwrap(), &[150]);
        let b = Tensor::new(&[2, 2], vec![true, false, true, true]).unwrap();
        assert_eq!(
            run1("Any", &[], vec![b.clone(), i32s(&[], &[0])])
                .as_slice::<bool>()
                .unwrap(),
            &[true, true]
        );
        assert_eq!(
            run1("All", &[], vec![b, i32s(&[], &[1])])
                .as_slice::<bool>()
                .unwrap(),
            &[false, true]
        );
    }

    #[test]
    fn large_reductions_match_naive_sums() {
        let (a, b, c) = (37, 1100, 19);
        let v = random(a * b * c, 7);
        let x = f32s(&[a, b, c], &v);
        let naive = |keep: &dyn Fn(usize, usize, usize) -> usize, n: usize| {
            let mut out = vec![0f64; n];
            for i in 0..a {
                for j in 0..b {
                    for k in 0..c {
                        out[keep(i, j, k)] += v[(i * b + j) * c + k] as f64;
                    }
                }
            }
            out.into_iter().map(|x| x as f32).collect::<Vec<_>>()
        };
        let s1 = run1("Sum", &[], vec![x.clone(), i32s(&[], &[1])]);
        assert_close(&s1, &[a, c], &naive(&|i, _, k| i * c + k, a * c), 1e-4);
        let s02 = run1("Sum", &[], vec![x.clone(), i32s(&[2], &[0, 2])]);
        assert_close(&s02, &[b], &naive(&|_, j, _| j, b), 1e-4);
        let all = run1("Sum", &[], vec![x, i32s(&[3], &[0, 1, 2])]);
        assert_close(&all, &[], &naive(&|_, _, _| 0, 1), 1e-3);
    }
}
