//! Matrix products: `MatMul` (`transpose_a`/`transpose_b`) and `BatchMatMul`,
//! `BatchMatMulV2`, `BatchMatMulV3` (`adj_x`/`adj_y`; V2/V3 broadcast the batch dims), and
//! [`gemm_into`], the strided GEMM every kernel that multiplies matrices (conv) goes
//! through.
//!
//! f32, f64 and f16 run on the `gemm` crate (transposes are strides, never copies; rayon
//! parallelism for large products, none for tiny ones); bf16 runs through f32; integers use
//! a plain wrapping triple loop. Batched products of small matrices are split across cores
//! by batch instead.
//!
//! Invariants: shapes are checked with TensorFlow's messages ("Matrix size-incompatible",
//! "In[0] is not a matrix"); every strided view is bounds-checked before `gemm` reads it,
//! so the unsafe call never touches memory outside the slices; `k == 0` gives zeros.
//! Outputs come from the step's memory plan (`KernelContext::alloc_output`) for the
//! dtypes computed natively.

use half::f16;
use rayon::prelude::*;
use rill_graph::{DType, Element, Error, Result, Tensor};

use super::broadcast::{alloc, broadcast_dims};
use super::num::{is_half, via_f32, Int};
use super::par::for_rows;
use super::util::{attr_bool, match_int, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// A strided read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<T> Mat<'_, T> {
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// An element type with a matrix product.
pub(crate) trait MatElem: Element + Copy + Send + Sync {
    /// `out (+)= a * b` with `out[i * out_rs + j]`; bounds already checked.
    #[allow(clippy::too_many_arguments)]
    fn product(
        m: usize,
        n: usize,
        k: usize,
        a: Mat<Self>,
        b: Mat<Self>,
        out: &mut [Self],
        out_rs: usize,
        accumulate: bool,
        parallel: bool,
    );
}

macro_rules! gemm_elem {
    ($($t:ty: $one:expr),*) => {$(
        impl MatElem for $t {
            fn product(m: usize, n: usize, k: usize, a: Mat<Self>, b: Mat<Self>, out: &mut [Self], out_rs: usize, accumulate: bool, parallel: bool) {
                let par = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
                // SAFETY: `gemm_into` checked that every index the views and `out` can reach
                // lies inside their slices, and `out` does not alias `a` or `b` (it is a
                // distinct `&mut`).
                unsafe {
                    gemm::gemm(
                        m, n, k,
                        out.as_mut_ptr(), 1, out_rs as isize, accumulate,
                        a.data.as_ptr(), a.cs as isize, a.rs as isize,
                        b.data.as_ptr(), b.cs as isize, b.rs as isize,
                        $one, $one, false, false, false, par,
                    )
                }
            }
        }
    )*};
}
gemm_elem!(f32: 1.0f32, f64: 1.0f64, f16: f16::ONE);

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl MatElem for $t {
            fn product(m: usize, n: usize, k: usize, a: Mat<Self>, b: Mat<Self>, out: &mut [Self], out_rs: usize, accumulate: bool, _parallel: bool) {
                let row = |i: usize, o: &mut [Self]| {
                    if !accumulate {
                        o[..n].iter_mut().for_each(|v| *v = 0);
                    }
                    for kk in 0..k {
                        let x = a.data[i * a.rs + kk * a.cs];
                        for (j, v) in o[..n].iter_mut().enumerate() {
                            *v = Int::wrapping_add(*v, Int::wrapping_mul(x, b.data[kk * b.rs + j * b.cs]));
                        }
                    }
                };
                if out_rs == n {
                    for_rows(&mut out[..m * n], n, n * k, |r0, rows| {
                        for (r, o) in rows.chunks_mut(n).enumerate() {
                            row(r0 + r, o);
                        }
                    });
                } else {
                    for i in 0..m {
                        row(i, &mut out[i * out_rs..]);
                    }
                }
            }
        }
    )*};
}
int_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

/// `out[m x n] (+)= a[m x k] * b[k x n]`, `out` row-major with row stride `out_rs`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into<T: MatElem>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    out: &mut [T],
    out_rs: usize,
    accumulate: bool,
) -> Result<()> {
    gemm_checked(m, n, k, a, b, out, out_rs, accumulate, true)
}

/// [`gemm_into`], on several threads only when `may_split` and the product is large.
#[allow(clippy::too_many_arguments)]
fn gemm_checked<T: MatElem>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    out: &mut [T],
    out_rs: usize,
    accumulate: bool,
    may_split: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let out_ok = (m - 1) * out_rs + n <= out.len() && out_rs >= n;
    if !a.fits(m, k) || !b.fits(k, n) || !out_ok {
        return Err(Error::internal(format!(
            "gemm views out of bounds: m={m} n={n} k={k} a.len={} b.len={} out.len={}",
            a.data.len(),
            b.data.len(),
            out.len()
        )));
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                out[i * out_rs..i * out_rs + n]
                    .iter_mut()
                    .for_each(|v| *v = T::default());
            }
        }
        return Ok(());
    }
    let parallel = may_split
        && m.saturating_mul(n).saturating_mul(k) >= 48 * 48 * 48
        && rayon::current_num_threads() > 1;
    T::product(m, n, k, a, b, out, out_rs, accumulate, parallel);
    Ok(())
}

/// [`gemm_into`] on the calling thread only (for callers that split work themselves).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into_serial<T: MatElem>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<T>,
    b: Mat<T>,
    out: &mut [T],
    out_rs: usize,
) -> Result<()> {
    gemm_checked(m, n, k, a, b, out, out_rs, false, false)
}

/// One operand of a (batched) product: its matrices' geometry.
struct Operand {
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl Operand {
    fn new(dims: &[usize], transposed: bool) -> Operand {
        let r = dims.len();
        let (a, b) = (dims[r - 2], dims[r - 1]);
        if transposed {
            Operand {
                rows: b,
                cols: a,
                transposed,
            }
        } else {
            Operand {
                rows: a,
                cols: b,
                transposed,
            }
        }
    }

    fn view<'a, T>(&self, data: &'a [T]) -> Mat<'a, T> {
        if self.transposed {
            Mat {
                data,
                rs: 1,
                cs: self.rows,
            }
        } else {
            Mat {
                data,
                rs: self.cols,
                cs: 1,
            }
        }
    }
}

/// The batched product of `x` and `y` (rank >= 2) with broadcast batch dims; the output
/// comes from `cx`'s memory plan when given.
fn batch_product<T: MatElem>(
    x: &Tensor,
    y: &Tensor,
    adj_x: bool,
    adj_y: bool,
    cx: Option<&KernelContext>,
) -> Result<Tensor> {
    let (rx, ry) = (x.rank(), y.rank());
    let (a, b) = (Operand::new(x.dims(), adj_x), Operand::new(y.dims(), adj_y));
    if a.cols != b.rows {
        return Err(Error::invalid_argument(format!(
            "Matrix size-incompatible: In[0]: {}, In[1]: {}",
            x.shape(),
            y.shape()
        )));
    }
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let (bx, by) = (&x.dims()[..rx - 2], &y.dims()[..ry - 2]);
    let batch = broadcast_dims(&[bx, by])?;
    let mut out_dims = batch.to_vec();
    out_dims.extend([m, n]);
    rill_graph::element_count(&out_dims)?;
    let nb: usize = batch.iter().product();
    // Each output batch's matrix offsets in x and y (0 stride where broadcast).
    let offsets = |dims: &[usize], mat: usize| -> Vec<usize> {
        let pad = batch.len() - dims.len();
        let mut strides = vec![0; batch.len()];
        let mut acc = mat;
        for d in (0..dims.len()).rev() {
            if dims[d] != 1 {
                strides[pad + d] = acc;
            }
            acc *= dims[d];
        }
        (0..nb)
            .map(|mut i| {
                let mut off = 0;
                for d in (0..batch.len()).rev() {
                    off += (i % batch[d]) * strides[d];
                    i /= batch[d];
                }
                off
            })
            .collect()
    };
    let (ox, oy) = (offsets(bx, m * k), offsets(by, k * n));
    let (dx, dy) = (x.as_slice::<T>()?, y.as_slice::<T>()?);
    let mut out_t = match cx {
        Some(cx) => cx.alloc_output::<T>(0, &out_dims)?,
        None => Tensor::new(&out_dims, alloc(nb * m * n, T::default())?)?,
    };
    if m * n == 0 {
        return Ok(out_t);
    }
    let out = out_t.as_mut_slice::<T>()?;
    let one = |i: usize, o: &mut [T]| {
        let av = a.view(&dx[ox[i]..ox[i] + m * k]);
        let bv = b.view(&dy[oy[i]..oy[i] + k * n]);
        gemm_into(m, n, k, av, bv, o, n, false)
    };
    if nb > 1 && m * n * k < 128 * 128 * 128 {
        out.par_chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(i, o)| one(i, o))?;
    } else {
        out.chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(i, o)| one(i, o))?;
    }
    Ok(out_t)
}

fn dispatch(
    cx: &KernelContext,
    name: &str,
    x: Tensor,
    y: Tensor,
    adj_x: bool,
    adj_y: bool,
) -> Result<Tensor> {
    if x.dtype() != y.dtype() {
        return Err(Error::invalid_argument(format!(
            "{name}: operands have different dtypes {} and {}",
            x.dtype(),
            y.dtype()
        )));
    }
    match x.dtype() {
        DType::F32 => batch_product::<f32>(&x, &y, adj_x, adj_y, Some(cx)),
        DType::F64 => batch_product::<f64>(&x, &y, adj_x, adj_y, Some(cx)),
        DType::F16 => batch_product::<f16>(&x, &y, adj_x, adj_y, Some(cx)),
        d if is_half(d) => Ok(via_f32(d, vec![x, y], |v| {
            let [x, y] = take(name, v)?;
            Ok(vec![batch_product::<f32>(&x, &y, adj_x, adj_y, None)?])
        })?
        .remove(0)),
        d => {
            match_int!(d, T => batch_product::<T>(&x, &y, adj_x, adj_y, Some(cx)), d => Err(unsupported_dtype(name, d)))
        }
    }
}

struct MatMul {
    ta: bool,
    tb: bool,
}

impl Kernel for MatMul {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [a, b] = take("MatMul", inputs)?;
        for (i, t) in [&a, &b].into_iter().enumerate() {
            if t.rank() != 2 {
                return Err(Error::invalid_argument(format!(
                    "In[{i}] is not a matrix. Instead it has shape {}",
                    t.shape()
                )));
            }
        }
        Ok(vec![dispatch(cx, "MatMul", a, b, self.ta, self.tb)?])
    }

    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::PLANNED
    }
}

struct BatchMatMul {
    adj_x: bool,
    adj_y: bool,
    broadcast: bool,
    /// V3's `Tout` when it differs from an input's dtype.
    tout: Option<DType>,
    name: &'static str,
}

/// `t` converted to `to` for V3's mixed types: integers to a wider integer (wrapping like a C
/// cast), f16/bf16 to f32.
fn cast_to(t: Tensor, to: DType) -> Result<Tensor> {
    let from = t.dtype();
    if from == to {
        return Ok(t);
    }
    if from.is_integer() && to.is_integer() {
        let v = t.to_i64_vec()?;
        return match_int!(to, T => Tensor::new(t.dims(), v.into_iter().map(<T as Int>::from_i64).collect::<Vec<T>>()),
            d => Err(unsupported_dtype("BatchMatMulV3", d)));
    }
    if is_half(from) && to == DType::F32 {
        return super::num::widen(t);
    }
    Err(Error::unimplemented(format!(
        "BatchMatMulV3 from {from} to {to}"
    )))
}

impl Kernel for BatchMatMul {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [mut x, mut y] = take(self.name, inputs)?;
        for (i, t) in [&x, &y].into_iter().enumerate() {
            if t.rank() < 2 {
                return Err(Error::invalid_argument(format!(
                    "In[{i}] ndims must be >= 2: {}",
                    t.rank()
                )));
            }
        }
        let (rx, ry) = (x.rank(), y.rank());
        if !self.broadcast && (rx != ry || x.dims()[..rx - 2] != y.dims()[..ry - 2]) {
            return Err(Error::invalid_argument(format!(
                "In[0] and In[1] must have compatible batch dimensions: {} vs. {}",
                x.shape(),
                y.shape()
            )));
        }
        if let Some(to) = self.tout {
            x = cast_to(x, to)?;
            y = cast_to(y, to)?;
        }
        Ok(vec![dispatch(cx, self.name, x, y, self.adj_x, self.adj_y)?])
    }

    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::PLANNED
    }
}

fn batch_factory(
    n: &rill_graph::Node,
    broadcast: bool,
    name: &'static str,
) -> Result<Box<dyn Kernel>> {
    let mut tout = None;
    if name == "BatchMatMulV3" {
        let ta = super::util::attr_type(n, "Ta", DType::F32)?;
        let tb = super::util::attr_type(n, "Tb", ta)?;
        let to = super::util::attr_type(n, "Tout", ta)?;
        let ints = ta.is_integer() && tb.is_integer() && to.is_integer();
        let halves = (ta == to || is_half(ta)) && (tb == to || is_half(tb)) && to == DType::F32;
        if ta != to || tb != to {
            if !ints && !halves {
                return Err(Error::unimplemented(format!(
                    "BatchMatMulV3 with Ta={ta}, Tb={tb}, Tout={to}"
                )));
            }
            tout = Some(to);
        }
    }
    Ok(Box::new(BatchMatMul {
        adj_x: attr_bool(n, "adj_x", false)?,
        adj_y: attr_bool(n, "adj_y", false)?,
        broadcast,
        tout,
        name,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("MatMul", |n| {
        Ok(Box::new(MatMul {
            ta: attr_bool(n, "transpose_a", false)?,
            tb: attr_bool(n, "transpose_b", false)?,
        }))
    });
    r.cpu("BatchMatMul", |n| batch_factory(n, false, "BatchMatMul"));
    r.cpu("BatchMatMulV2", |n| batch_factory(n, true, "BatchMatMulV2"));
    r.cpu("BatchMatMulV3", |n| batch_factory(n, true, "BatchMatMulV3"));
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, random, run, run1};
    use half::{bf16, f16};
    use rill_graph::{AttrValue, DType, Tensor};

    /// Naive product of row-major a[m,k] and b[k,n].
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    fn transpose(v: &[f32], r: usize, c: usize) -> Vec<f32> {
        (0..c)
            .flat_map(|j| (0..r).map(move |i| v[i * c + j]))
            .collect()
    }

    #[test]
    fn matmul_transposes_match_naive() {
        for &(m, k, n) in &[(3, 4, 5), (65, 130, 70), (1, 7, 1), (100, 1, 100)] {
            let a = random(m * k, 1);
            let b = random(k * n, 2);
            let want = naive(&a, &b, m, k, n);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = if ta {
                    f32s(&[k, m], &transpose(&a, m, k))
                } else {
                    f32s(&[m, k], &a)
                };
                let bv = if tb {
                    f32s(&[n, k], &transpose(&b, k, n))
                } else {
                    f32s(&[k, n], &b)
                };
                let attrs = [
                    ("transpose_a", AttrValue::Bool(ta)),
                    ("transpose_b", AttrValue::Bool(tb)),
                ];
                let out = run1("MatMul", &attrs, vec![av, bv]);
                assert_close(&out, &[m, n], &want, 1e-4);
            }
        }
    }

    #[test]
    fn matmul_shapes_ints_and_empty() {
        assert!(run(
            "MatMul",
            &[],
            vec![f32s(&[2, 3], &[0.0; 6]), f32s(&[2, 3], &[0.0; 6])]
        )
        .is_err());
        assert!(run(
            "MatMul",
            &[],
            vec![f32s(&[6], &[0.0; 6]), f32s(&[6, 1], &[0.0; 6])]
        )
        .is_err());
        let i = run1(
            "MatMul",
            &[],
            vec![i32s(&[2, 2], &[1, 2, 3, 4]), i32s(&[2, 1], &[5, 6])],
        );
        assert_eq!(i.as_slice::<i32>().unwrap(), &[17, 39]);
        let z = run1("MatMul", &[], vec![f32s(&[2, 0], &[]), f32s(&[0, 3], &[])]);
        assert_close(&z, &[2, 3], &[0.0; 6], 0.0);
        let e = run1(
            "MatMul",
            &[],
            vec![f32s(&[0, 2], &[]), f32s(&[2, 3], &[0.0; 6])],
        );
        assert_eq!(e.dims(), &[0, 3]);
        let d = run1(
            "MatMul",
            &[],
            vec![
                Tensor::new(&[1, 2], vec![1.0f64, 2.0]).unwrap(),
                Tensor::new(&[2, 1], vec![3.0f64, 4.0]).unwrap(),
            ],
        );
        assert_eq!(d.as_slice::<f64>().unwrap(), &[11.0]);
    }

    #[test]
    fn half_precision_products() {
        let (m, k, n) = (9, 70, 5);
        let (a, b) = (random(m * k, 5), random(k * n, 6));
        let want = naive(&a, &b, m, k, n);
        let h = |v: &[f32], d: &[usize]| {
            Tensor::new(d, v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>()).unwrap()
        };
        let out = run1("MatMul", &[], vec![h(&a, &[m, k]), h(&b, &[k, n])]);
        let got: Vec<f32> = out
            .as_slice::<f16>()
            .unwrap()
            .iter()
            .map(|x| x.to_f32())
            .collect();
        assert_close(&f32s(&[m, n], &got), &[m, n], &want, 2e-2);
        let bf = |v: &[f32], d: &[usize]| {
            Tensor::new(d, v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>()).unwrap()
        };
        let out = run1("MatMul", &[], vec![bf(&a, &[m, k]), bf(&b, &[k, n])]);
        let got: Vec<f32> = out
            .as_slice::<bf16>()
            .unwrap()
            .iter()
            .map(|x| x.to_f32())
            .collect();
        assert_close(&f32s(&[m, n], &got), &[m, n], &want, 5e-2);
    }

    #[test]
    fn batch_matmul_broadcasts_and_adjoints() {
        let (m, k, n) = (3, 4, 2);
        let a = random(2 * m * k, 3);
        let b = random(k * n, 4);
        let x = f32s(&[2, 1, m, k], &a);
        let y = f32s(&[3, k, n], &[b.clone(), b.clone(), b.clone()].concat());
        let out = run1("BatchMatMulV2", &[], vec![x.clone(), y.clone()]);
        assert_eq!(out.dims(), &[2, 3, m, n]);
        let o = out.as_slice::<f32>().unwrap();
        for bi in 0..2 {
            let want = naive(&a[bi * m * k..(bi + 1) * m * k], &b, m, k, n);
            for j in 0..3 {
                let s = ((bi * 3) + j) * m * n;
                for (g, w) in o[s..s + m * n].iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5);
                }
            }
        }
        assert!(run("BatchMatMul", &[], vec![x, y]).is_err());
        let v3 = [
            ("Ta", AttrValue::Type(DType::I8)),
            ("Tb", AttrValue::Type(DType::I8)),
            ("Tout", AttrValue::Type(DType::I32)),
        ];
        let i8s = Tensor::new(&[1, 2, 2], vec![100i8; 4]).unwrap();
        let out = run1("BatchMatMulV3", &v3, vec![i8s.clone(), i8s]);
        assert_eq!(out.as_slice::<i32>().unwrap(), &[20000; 4]);
        let xt = f32s(&[1, k, m], &transpose(&a[..m * k], m, k));
        let yt = f32s(&[1, n, k], &transpose(&b, k, n));
        let adj = [
            ("adj_x", AttrValue::Bool(true)),
            ("adj_y", AttrValue::Bool(true)),
        ];
        let out = run1("BatchMatMul", &adj, vec![xt, yt]);
        assert_close(&out, &[1, m, n], &naive(&a[..m * k], &b, m, k, n), 1e-5);
    }
}
