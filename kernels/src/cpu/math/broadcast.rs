//! NumPy/TensorFlow broadcasting and the elementwise drivers every elementwise kernel uses.
//!
//! A [`Plan`] right-aligns the input shapes, drops size-1 output dims and merges adjacent
//! dims that every input treats alike (all broadcast or all not), so `[2,1,3] + [4,1]`
//! becomes three dims and `[8,1024] + [1024]` two. Each input gets a stride per collapsed
//! dim (0 where it is broadcast); the innermost stride is therefore 0 or 1, which the
//! drivers specialise into tight, vectorisable loops (same shape, scalar operand, row
//! broadcast). Large outputs are split across cores by contiguous chunks.
//!
//! Invariants: a plan's output dims are TensorFlow's broadcast shape (incompatible shapes
//! are InvalidArgument "Incompatible shapes: [..] vs. [..]"); the drivers write every output
//! element exactly once; [`binary_same`] and [`unary_same`] reuse an input's buffer when the
//! output has its shape (`as_mut_slice` copies first only if the buffer is shared).

use rayon::prelude::*;
use smallvec::SmallVec;

use rill_graph::{Dims, Element, Error, Result, Tensor};

use crate::KernelContext;

use super::par::{worth_splitting, PAR_MIN};

type Small = SmallVec<[usize; 6]>;

fn fmt_dims(d: &[usize]) -> String {
    let parts: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// `n` copies of `v`, ResourceExhausted instead of an abort when memory is short.
pub(crate) fn alloc<T: Clone>(n: usize, v: T) -> Result<Vec<T>> {
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| {
        Error::resource_exhausted(format!(
            "cannot allocate {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    out.resize(n, v);
    Ok(out)
}

/// The broadcast shape of `shapes` (right-aligned; each dim 1 or the common size).
pub(crate) fn broadcast_dims(shapes: &[&[usize]]) -> Result<Dims> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Dims::from_elem(1, rank);
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                let all: Vec<String> = shapes.iter().map(|s| fmt_dims(s)).collect();
                return Err(Error::invalid_argument(format!(
                    "Incompatible shapes: {}",
                    all.join(" vs. ")
                )));
            }
        }
    }
    Ok(out)
}

/// How `N` inputs map onto their broadcast output.
pub(crate) struct Plan<const N: usize> {
    /// The output dims (uncollapsed).
    pub out: Dims,
    /// Collapsed output dims (at least one).
    dims: Small,
    /// Per input, its stride along each collapsed dim (0 where broadcast).
    strides: [Small; N],
}

impl<const N: usize> Plan<N> {
    pub fn new(shapes: [&[usize]; N]) -> Result<Plan<N>> {
        let out = broadcast_dims(&shapes)?;
        rill_graph::element_count(&out)?;
        let rank = out.len();
        let mut dims = Small::new();
        let mut flags: Vec<[bool; N]> = vec![];
        for d in 0..rank {
            if out[d] == 1 {
                continue;
            }
            let mut f = [false; N];
            for (i, s) in shapes.iter().enumerate() {
                let pad = rank - s.len();
                f[i] = d < pad || s[d - pad] == 1;
            }
            match flags.last() {
                Some(last) if *last == f => {
                    if let Some(x) = dims.last_mut() {
                        *x *= out[d];
                    }
                }
                _ => {
                    dims.push(out[d]);
                    flags.push(f);
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
            flags.push([true; N]);
        }
        let strides = std::array::from_fn(|i| {
            let mut st = Small::from_elem(0, dims.len());
            let mut acc = 1;
            for d in (0..dims.len()).rev() {
                if !flags[d][i] {
                    st[d] = acc;
                    acc *= dims[d];
                }
            }
            st
        });
        Ok(Plan { out, dims, strides })
    }

    /// Number of output elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Each input's stride along the innermost collapsed dim (0 or 1).
    pub fn inner_strides(&self) -> [usize; N] {
        std::array::from_fn(|i| *self.strides[i].last().unwrap_or(&0))
    }

    /// Calls `f(start, len, offsets)` for each run of output positions in `[begin, end)`
    /// that lies within one innermost row; `offsets` are the inputs' positions of `start`.
    fn segments(&self, begin: usize, end: usize, mut f: impl FnMut(usize, usize, [usize; N])) {
        if begin >= end {
            return;
        }
        let last = self.dims.len() - 1;
        let inner = self.dims[last];
        let mut coord = Small::from_elem(0, last);
        let mut row = begin / inner;
        for d in (0..last).rev() {
            coord[d] = row % self.dims[d];
            row /= self.dims[d];
        }
        let mut col = begin % inner;
        let mut base: [usize; N] =
            std::array::from_fn(|i| (0..last).map(|d| coord[d] * self.strides[i][d]).sum());
        let mut pos = begin;
        while pos < end {
            let len = (inner - col).min(end - pos);
            f(
                pos,
                len,
                std::array::from_fn(|i| base[i] + col * self.strides[i][last]),
            );
            pos += len;
            col = 0;
            for d in (0..last).rev() {
                coord[d] += 1;
                for (b, s) in base.iter_mut().zip(&self.strides) {
                    *b += s[d];
                }
                if coord[d] < self.dims[d] {
                    break;
                }
                for (b, s) in base.iter_mut().zip(&self.strides) {
                    *b -= s[d] * self.dims[d];
                }
                coord[d] = 0;
            }
        }
    }

    /// Calls `body(segment, offsets)` over all of `out` (which has [`Plan::len`]
    /// elements), splitting across cores when large.
    pub fn drive<O: Send>(&self, out: &mut [O], body: impl Fn(&mut [O], [usize; N]) + Sync) {
        let n = out.len();
        if !worth_splitting(n) {
            self.segments(0, n, |pos, len, offs| body(&mut out[pos..pos + len], offs));
            return;
        }
        let tasks = rayon::current_num_threads() * 4;
        let chunk = n.div_ceil(tasks).max(PAR_MIN / 2);
        out.par_chunks_mut(chunk).enumerate().for_each(|(c, part)| {
            let start = c * chunk;
            self.segments(start, start + part.len(), |pos, len, offs| {
                body(&mut part[pos - start..pos - start + len], offs)
            });
        });
    }
}

/// One segment of a binary op: `seg[j] = f(a[oa + j*sa], b[ob + j*sb])`, `sa, sb` in {0, 1}.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn binary_segment<A: Copy, B: Copy, O>(
    seg: &mut [O],
    a: &[A],
    oa: usize,
    sa: usize,
    b: &[B],
    ob: usize,
    sb: usize,
    f: &impl Fn(A, B) -> O,
) {
    let n = seg.len();
    match (sa, sb) {
        (1, 1) => {
            for ((o, &x), &y) in seg.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                *o = f(x, y);
            }
        }
        (1, _) => {
            let y = b[ob];
            for (o, &x) in seg.iter_mut().zip(&a[oa..oa + n]) {
                *o = f(x, y);
            }
        }
        (_, 1) => {
            let x = a[oa];
            for (o, &y) in seg.iter_mut().zip(&b[ob..ob + n]) {
                *o = f(x, y);
            }
        }
        _ => {
            let x = a[oa];
            let y = b[ob];
            for o in seg.iter_mut() {
                *o = f(x, y);
            }
        }
    }
}

/// `f(a, b)` elementwise with broadcasting, into a new tensor.
pub(crate) fn binary<A, B, O>(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Tensor>
where
    A: Element + Copy,
    B: Element + Copy,
    O: Element + Copy,
{
    let plan = Plan::new([a.dims(), b.dims()])?;
    let (xa, xb) = (a.as_slice::<A>()?, b.as_slice::<B>()?);
    let mut out = alloc(plan.len(), O::default())?;
    let [sa, sb] = plan.inner_strides();
    plan.drive(&mut out, |seg, [oa, ob]| {
        binary_segment(seg, xa, oa, sa, xb, ob, sb, &f)
    });
    Tensor::new(&plan.out, out)
}

/// A tensor for output 0 of `dims`: the memory plan's range through `cx`, else the heap.
fn fresh<T: Element>(cx: Option<&KernelContext>, dims: &[usize]) -> Result<Tensor> {
    match cx {
        Some(cx) => cx.alloc_output::<T>(0, dims),
        None => Tensor::zeros(T::DTYPE, dims),
    }
}

/// `f(a, b)` elementwise with broadcasting, written over `a` or `b` when the output has
/// that input's shape.
pub(crate) fn binary_same<T: Element + Copy>(
    a: Tensor,
    b: Tensor,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<Tensor> {
    binary_same_in(None, a, b, f)
}

/// [`binary_same`] for a kernel with a context: an input is overwritten only when the
/// kernel holds it alone; otherwise the output goes where the memory plan says.
pub(crate) fn binary_same_in<T: Element + Copy>(
    cx: Option<&KernelContext>,
    mut a: Tensor,
    mut b: Tensor,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<Tensor> {
    let plan = Plan::new([a.dims(), b.dims()])?;
    let [sa, sb] = plan.inner_strides();
    let a_free = cx.is_none_or(|c| a.is_exclusive() && c.may_overwrite_input(0, 0, &a));
    let b_free = cx.is_none_or(|c| b.is_exclusive() && c.may_overwrite_input(0, 1, &b));
    if plan.out.as_slice() == a.dims() && a_free {
        let mut a = a;
        let xb = b.as_slice::<T>()?;
        plan.drive(a.as_mut_slice::<T>()?, |seg, [_, ob]| {
            if sb == 1 {
                let n = seg.len();
                for (o, &y) in seg.iter_mut().zip(&xb[ob..ob + n]) {
                    *o = f(*o, y);
                }
            } else {
                let y = xb[ob];
                for o in seg.iter_mut() {
                    *o = f(*o, y);
                }
            }
        });
        return Ok(a);
    }
    if plan.out.as_slice() == b.dims() && b_free {
        let mut b = b;
        let xa = a.as_slice::<T>()?;
        plan.drive(b.as_mut_slice::<T>()?, |seg, [oa, _]| {
            if sa == 1 {
                let n = seg.len();
                for (o, &x) in seg.iter_mut().zip(&xa[oa..oa + n]) {
                    *o = f(x, *o);
                }
            } else {
                let x = xa[oa];
                for o in seg.iter_mut() {
                    *o = f(x, *o);
                }
            }
        });
        return Ok(b);
    }
    if cx.is_some() {
        let mut out = fresh::<T>(cx, &plan.out)?;
        let (xa, xb) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
        plan.drive(out.as_mut_slice::<T>()?, |seg, [oa, ob]| {
            binary_segment(seg, xa, oa, sa, xb, ob, sb, &f)
        });
        return Ok(out);
    }
    binary(&a, &b, f)
}

/// `t` broadcast to `dims` (which must be `t`'s broadcast with itself).
pub(crate) fn broadcast_to<T: Element + Copy>(t: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let plan = Plan::new([t.dims(), dims])?;
    if plan.out.as_slice() != dims {
        return Err(Error::invalid_argument(format!(
            "cannot broadcast shape {} to {}",
            fmt_dims(t.dims()),
            fmt_dims(dims)
        )));
    }
    let x = t.as_slice::<T>()?;
    let [sa, _] = plan.inner_strides();
    let mut out = alloc(plan.len(), T::default())?;
    plan.drive(&mut out, |seg, [oa, _]| {
        if sa == 1 {
            seg.copy_from_slice(&x[oa..oa + seg.len()]);
        } else {
            seg.fill(x[oa]);
        }
    });
    Tensor::new(dims, out)
}

/// `f(&a, &b, &c)` elementwise with broadcasting (any element types, strings included).
pub(crate) fn ternary<A, B, C, O>(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    f: impl Fn(&A, &B, &C) -> O + Sync,
) -> Result<Tensor>
where
    A: Element,
    B: Element,
    C: Element,
    O: Element,
{
    let plan = Plan::new([a.dims(), b.dims(), c.dims()])?;
    let (xa, xb, xc) = (a.as_slice::<A>()?, b.as_slice::<B>()?, c.as_slice::<C>()?);
    let mut out = alloc(plan.len(), O::default())?;
    let [sa, sb, sc] = plan.inner_strides();
    plan.drive(&mut out, |seg, [oa, ob, oc]| {
        for (j, o) in seg.iter_mut().enumerate() {
            *o = f(&xa[oa + j * sa], &xb[ob + j * sb], &xc[oc + j * sc]);
        }
    });
    Tensor::new(&plan.out, out)
}

/// `f(&a, &b)` elementwise with broadcasting for element types that are not `Copy`.
pub(crate) fn binary_ref<A, B, O>(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(&A, &B) -> O + Sync,
) -> Result<Tensor>
where
    A: Element,
    B: Element,
    O: Element,
{
    let plan = Plan::new([a.dims(), b.dims()])?;
    let (xa, xb) = (a.as_slice::<A>()?, b.as_slice::<B>()?);
    let mut out = alloc(plan.len(), O::default())?;
    let [sa, sb] = plan.inner_strides();
    plan.drive(&mut out, |seg, [oa, ob]| {
        for (j, o) in seg.iter_mut().enumerate() {
            *o = f(&xa[oa + j * sa], &xb[ob + j * sb]);
        }
    });
    Tensor::new(&plan.out, out)
}

/// `f(x)` elementwise, in place over `x`'s buffer.
pub(crate) fn unary_same<T: Element + Copy>(
    x: Tensor,
    f: impl Fn(T) -> T + Sync,
) -> Result<Tensor> {
    unary_same_in(None, x, f)
}

/// [`unary_same`] for a kernel with a context: in place when the kernel holds `x` alone,
/// otherwise into the output the memory plan gives.
pub(crate) fn unary_same_in<T: Element + Copy>(
    cx: Option<&KernelContext>,
    mut x: Tensor,
    f: impl Fn(T) -> T + Sync,
) -> Result<Tensor> {
    if cx.is_some_and(|c| !(x.is_exclusive() && c.may_overwrite_input(0, 0, &x))) {
        let mut out = fresh::<T>(cx, x.dims())?;
        let src = x.as_slice::<T>()?;
        let dst = out.as_mut_slice::<T>()?;
        if worth_splitting(src.len()) {
            let chunk = src
                .len()
                .div_ceil(rayon::current_num_threads() * 4)
                .max(PAR_MIN / 2);
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &i)| *o = f(i)));
        } else {
            dst.iter_mut().zip(src).for_each(|(o, &i)| *o = f(i));
        }
        return Ok(out);
    }
    let v = x.as_mut_slice::<T>()?;
    if worth_splitting(v.len()) {
        let chunk = v
            .len()
            .div_ceil(rayon::current_num_threads() * 4)
            .max(PAR_MIN / 2);
        v.par_chunks_mut(chunk)
            .for_each(|c| c.iter_mut().for_each(|o| *o = f(*o)));
    } else {
        v.iter_mut().for_each(|o| *o = f(*o));
    }
    Ok(x)
}

/// `f(x)` elementwise into a new tensor (for ops whose output dtype differs).
pub(crate) fn unary<A: Element + Copy, O: Element + Copy>(
    x: &Tensor,
    f: impl Fn(A) -> O + Sync + Send,
) -> Result<Tensor> {
    let v = x.as_slice::<A>()?;
    let out: Vec<O> = if worth_splitting(v.len()) {
        v.par_iter().map(|&a| f(a)).collect()
    } else {
        v.iter().map(|&a| f(a)).collect()
    };
    Tensor::new(x.dims(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: Tensor, b: Tensor) -> Tensor {
        binary_same::<i32>(a, b, |x, y| x.wrapping_add(y)).unwrap()
    }

    #[test]
    fn shapes_broadcast() {
        assert_eq!(
            broadcast_dims(&[&[2, 1, 3], &[4, 1]]).unwrap().as_slice(),
            &[2, 4, 3]
        );
        assert_eq!(broadcast_dims(&[&[], &[0, 3]]).unwrap().as_slice(), &[0, 3]);
        assert_eq!(
            broadcast_dims(&[&[1, 0], &[5, 1]]).unwrap().as_slice(),
            &[5, 0]
        );
        let e = broadcast_dims(&[&[2, 3], &[4]]).unwrap_err();
        assert_eq!(e.message, "Incompatible shapes: [2,3] vs. [4]");
        assert!(broadcast_dims(&[&[0], &[3]]).is_err());
    }

    #[test]
    fn corner_cases_match_a_naive_loop() {
        // [2,1,3] + [4,1] -> [2,4,3]
        let a = Tensor::new(&[2, 1, 3], (0..6).collect::<Vec<i32>>()).unwrap();
        let b = Tensor::new(&[4, 1], vec![100, 200, 300, 400]).unwrap();
        let out = add(a, b);
        assert_eq!(out.dims(), &[2, 4, 3]);
        let mut want = vec![];
        for i in 0..2 {
            for j in 0..4 {
                for k in 0..3 {
                    want.push((i * 3 + k) + (j + 1) * 100);
                }
            }
        }
        assert_eq!(out.as_slice::<i32>().unwrap(), want.as_slice());
        // scalar vs tensor, both ways
        let t = Tensor::new(&[2, 2], vec![1, 2, 3, 4]).unwrap();
        assert_eq!(
            add(Tensor::scalar(10), t.clone())
                .as_slice::<i32>()
                .unwrap(),
            &[11, 12, 13, 14]
        );
        assert_eq!(
            add(t.clone(), Tensor::scalar(10))
                .as_slice::<i32>()
                .unwrap(),
            &[11, 12, 13, 14]
        );
        // [1,1,2] vs [2]: same data order, rank from the larger
        let r = add(
            Tensor::new(&[1, 1, 2], vec![1, 2]).unwrap(),
            Tensor::vector(vec![3, 4]),
        );
        assert_eq!(
            (r.dims(), r.as_slice::<i32>().unwrap()),
            (&[1usize, 1, 2][..], &[4, 6][..])
        );
        // zero-size dims
        let z = add(
            Tensor::new(&[0, 3], Vec::<i32>::new()).unwrap(),
            Tensor::vector(vec![1, 2, 3]),
        );
        assert_eq!(z.dims(), &[0, 3]);
        let z = add(
            Tensor::new(&[2, 0], Vec::<i32>::new()).unwrap(),
            Tensor::new(&[2, 1], vec![1, 2]).unwrap(),
        );
        assert_eq!(z.dims(), &[2, 0]);
        // scalars
        assert_eq!(
            add(Tensor::scalar(1), Tensor::scalar(2))
                .as_slice::<i32>()
                .unwrap(),
            &[3]
        );
        // column broadcast [3,1] + [1,4] and a wrapping sum
        let c = add(
            Tensor::new(&[3, 1], vec![0, 10, i32::MAX]).unwrap(),
            Tensor::new(&[1, 4], vec![0, 1, 2, 3]).unwrap(),
        );
        assert_eq!(
            c.as_slice::<i32>().unwrap()[8..],
            [i32::MAX, i32::MIN, i32::MIN + 1, i32::MIN + 2]
        );
    }

    #[test]
    fn large_broadcasts_split_across_threads_correctly() {
        let (r, c) = (300, 257);
        let a = Tensor::new(&[r, 1, c], (0..(r * c) as i64).collect::<Vec<_>>()).unwrap();
        let b = Tensor::new(&[3, 1], vec![0i64, 1_000_000, 2_000_000]).unwrap();
        let out = binary::<i64, i64, i64>(&a, &b, |x, y| x + y).unwrap();
        assert_eq!(out.dims(), &[r, 3, c]);
        let v = out.as_slice::<i64>().unwrap();
        for i in (0..r).step_by(7) {
            for j in 0..3 {
                for k in (0..c).step_by(5) {
                    assert_eq!(
                        v[(i * 3 + j) * c + k],
                        (i * c + k) as i64 + j as i64 * 1_000_000
                    );
                }
            }
        }
    }

    #[test]
    fn reuses_a_uniquely_owned_buffer() {
        let a = Tensor::vector(vec![1.0f32; 4]);
        let ptr = a.as_slice::<f32>().unwrap().as_ptr();
        let out = binary_same::<f32>(a, Tensor::scalar(2.0f32), |x, y| x * y).unwrap();
        assert_eq!(out.as_slice::<f32>().unwrap().as_ptr(), ptr);
        let shared = Tensor::vector(vec![1.0f32; 4]);
        let out = unary_same::<f32>(shared.clone(), |x| -x).unwrap();
        assert_eq!(shared.as_slice::<f32>().unwrap(), &[1.0; 4]);
        assert_eq!(out.as_slice::<f32>().unwrap(), &[-1.0; 4]);
    }
}
