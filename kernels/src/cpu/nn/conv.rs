//! 2-D convolution: `Conv2D` (grouped when the input depth is a multiple of the filter
//! depth), `Conv2DBackpropInput` (+`V2`, which takes the input itself instead of its
//! sizes) and `Conv2DBackpropFilter`, in NHWC or NCHW, with SAME / VALID / EXPLICIT
//! padding, strides and dilations.
//!
//! Everything is computed in NHWC (NCHW is transposed in and out) as GEMMs over an
//! im2col patch matrix `[N*OH*OW, KH*KW*Cg]` built block by block (bounded scratch, filled
//! in parallel); a 1x1, stride-1, unpadded convolution multiplies the input directly. The
//! forward pass can hand each finished block of output rows to a callback while it is in
//! cache ([`conv_forward_into`], used by the fused convolution's epilogue, which also
//! builds on [`im2col_rows`]). The input gradient scatters (col2im) one image per task, so
//! tasks never write the same element.
//!
//! Invariants: output sizes follow TensorFlow (SAME puts the odd padding pixel after);
//! f16/bf16 are computed in f32; integer inputs run the forward pass only (as TensorFlow
//! registers int32 `Conv2D`); shape mismatches are InvalidArgument. An NHWC forward output
//! comes from the step's memory plan (`KernelContext::alloc_output`).

use rayon::prelude::*;
use rill_graph::{element_count, DType, Error, Node, Result, Tensor};

use super::window::{from_nhwc, shape_from, to_nhwc, Dim1, Format, WindowAttrs};
use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::matmul::{gemm_into, Mat, MatElem};
use crate::cpu::math::num::{is_half, via_f32, Float};
use crate::cpu::math::par::for_rows;
use crate::cpu::math::util::{match_float, match_int, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// Scratch budget for one im2col block, in elements.
const COL_BUDGET: usize = 1 << 21;

/// The geometry of one convolution in NHWC.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    /// Filter depth (input channels per group).
    pub fc: usize,
    pub o: usize,
    pub groups: usize,
    pub hd: Dim1,
    pub wd: Dim1,
}

impl ConvGeom {
    pub fn new(attrs: &WindowAttrs, [n, h, w, c]: [usize; 4], fdims: &[usize]) -> Result<ConvGeom> {
        if fdims.len() != 4 {
            return Err(Error::invalid_argument(format!(
                "filter must be 4-dimensional: {fdims:?}"
            )));
        }
        let (kh, kw, fc, o) = (fdims[0], fdims[1], fdims[2], fdims[3]);
        if fc == 0 || c % fc != 0 {
            return Err(Error::invalid_argument(format!(
                "input depth must be evenly divisible by filter depth: {c} vs {fc}"
            )));
        }
        let groups = c / fc;
        if groups == 0 || o % groups != 0 {
            return Err(Error::invalid_argument(format!(
                "output depth must be evenly divisible by number of groups: {o} vs {groups}"
            )));
        }
        let [hd, wd] = attrs.geometry(h, w, kh, kw)?;
        let g = ConvGeom {
            n,
            c,
            fc,
            o,
            groups,
            hd,
            wd,
        };
        // Sizes the kernels multiply out must not overflow.
        element_count(&g.out_nhwc())?;
        element_count(&[kh, kw, fc, o])?;
        Ok(g)
    }

    pub fn rows(&self) -> usize {
        self.n * self.hd.output * self.wd.output
    }
    pub fn kdim(&self) -> usize {
        self.hd.k * self.wd.k * self.fc
    }
    pub fn og(&self) -> usize {
        self.o / self.groups
    }
    pub fn out_nhwc(&self) -> [usize; 4] {
        [self.n, self.hd.output, self.wd.output, self.o]
    }
    pub fn in_nhwc(&self) -> [usize; 4] {
        [self.n, self.hd.input, self.wd.input, self.c]
    }
    /// A 1x1, stride-1, unpadded, ungrouped convolution: a plain matrix product.
    pub fn pointwise(&self) -> bool {
        self.hd.k == 1
            && self.wd.k == 1
            && self.groups == 1
            && self.hd.output == self.hd.input
            && self.wd.output == self.wd.input
            && self.hd.pad_before == 0
            && self.wd.pad_before == 0
    }
    fn block(&self) -> usize {
        (COL_BUDGET / self.kdim().max(1)).clamp(1, self.rows().max(1))
    }
    /// (image, oy, ox) of patch row `r`.
    fn coords(&self, r: usize) -> (usize, usize, usize) {
        let ohw = self.hd.output * self.wd.output;
        (r / ohw, (r % ohw) / self.wd.output, r % self.wd.output)
    }
}

/// Fills `col` with patch rows `r0..` of group `gi` (one row of `kdim` per output pixel).
fn im2col<T: MatElem>(x: &[T], g: &ConvGeom, gi: usize, r0: usize, col: &mut [T]) {
    let kdim = g.kdim();
    for_rows(col, kdim, kdim, |first, rows| {
        im2col_rows(x, g, gi, r0 + first, rows)
    });
}

/// [`im2col`] on the calling thread.
pub(crate) fn im2col_rows<T: MatElem>(x: &[T], g: &ConvGeom, gi: usize, r0: usize, col: &mut [T]) {
    let (kdim, fc, kw) = (g.kdim(), g.fc, g.wd.k);
    let (h, w) = (g.hd.input as isize, g.wd.input as isize);
    for (i, dst) in col.chunks_mut(kdim).enumerate() {
        let (b, oy, ox) = g.coords(r0 + i);
        for ky in 0..g.hd.k {
            let iy = g.hd.pos(oy, ky);
            let line = &mut dst[ky * kw * fc..(ky + 1) * kw * fc];
            if iy < 0 || iy >= h {
                line.fill(T::default());
                continue;
            }
            for kx in 0..kw {
                let ix = g.wd.pos(ox, kx);
                let px = &mut line[kx * fc..(kx + 1) * fc];
                if ix < 0 || ix >= w {
                    px.fill(T::default());
                } else {
                    let s =
                        ((b * g.hd.input + iy as usize) * g.wd.input + ix as usize) * g.c + gi * fc;
                    px.copy_from_slice(&x[s..s + fc]);
                }
            }
        }
    }
}

/// Called on each finished block of output rows: `(first_row, rows)`.
pub(crate) type RowsDone<'a, T> = &'a mut dyn FnMut(usize, &mut [T]);

/// The forward convolution of NHWC `x` with HWIO `f` into NHWC `out` (`g.rows() * g.o`
/// values, any contents). With `after`, `after(first_row, rows)` runs on each block of
/// rows as soon as every group has written it (while it is in cache).
pub(crate) fn conv_forward_into<T: MatElem>(
    x: &[T],
    f: &[T],
    g: &ConvGeom,
    out: &mut [T],
    mut after: Option<RowsDone<T>>,
) -> Result<()> {
    let (rows, kdim, o, og) = (g.rows(), g.kdim(), g.o, g.og());
    if rows == 0 || o == 0 {
        return Ok(());
    }
    if out.len() != rows * o {
        return Err(Error::internal(format!(
            "conv output holds {} values, not {rows} x {o}",
            out.len()
        )));
    }
    if g.pointwise() {
        let xm = Mat {
            data: x,
            rs: g.c,
            cs: 1,
        };
        let fm = Mat {
            data: f,
            rs: o,
            cs: 1,
        };
        gemm_into(rows, o, g.c, xm, fm, out, o, false)?;
        if let Some(after) = after {
            after(0, out);
        }
        return Ok(());
    }
    let block = g.block();
    let mut col = alloc(block * kdim, T::default())?;
    for r0 in (0..rows).step_by(block) {
        let rb = block.min(rows - r0);
        for gi in 0..g.groups {
            let col = &mut col[..rb * kdim];
            im2col(x, g, gi, r0, col);
            let a = Mat {
                data: &*col,
                rs: kdim,
                cs: 1,
            };
            let b = Mat {
                data: &f[gi * og..],
                rs: o,
                cs: 1,
            };
            gemm_into(rb, og, kdim, a, b, &mut out[r0 * o + gi * og..], o, false)?;
        }
        if let Some(after) = after.as_mut() {
            after(r0, &mut out[r0 * o..(r0 + rb) * o]);
        }
    }
    Ok(())
}

/// Adds patch rows `r0..r0+rb` of group `gi` back onto NHWC `dx` (one image per task).
fn col2im<T: Float>(col: &[T], g: &ConvGeom, gi: usize, r0: usize, rb: usize, dx: &mut [T]) {
    let (kdim, fc, kw, c) = (g.kdim(), g.fc, g.wd.k, g.c);
    let hwc = g.hd.input * g.wd.input * c;
    let ohw = g.hd.output * g.wd.output;
    if rb == 0 || hwc == 0 {
        return;
    }
    let (b_lo, b_hi) = (r0 / ohw, (r0 + rb - 1) / ohw + 1);
    dx[b_lo * hwc..b_hi * hwc]
        .par_chunks_mut(hwc)
        .enumerate()
        .for_each(|(i, img)| {
            let b = b_lo + i;
            for r in r0.max(b * ohw)..(r0 + rb).min((b + 1) * ohw) {
                let src = &col[(r - r0) * kdim..(r - r0 + 1) * kdim];
                let (_, oy, ox) = g.coords(r);
                for ky in g.hd.valid_taps(oy) {
                    let iy = g.hd.pos(oy, ky) as usize;
                    for kx in g.wd.valid_taps(ox) {
                        let ix = g.wd.pos(ox, kx) as usize;
                        let d = &mut img[(iy * g.wd.input + ix) * c + gi * fc..][..fc];
                        for (a, &v) in d.iter_mut().zip(&src[(ky * kw + kx) * fc..][..fc]) {
                            *a += v;
                        }
                    }
                }
            }
        });
}

/// The gradient of the convolution with respect to its NHWC input.
pub(crate) fn conv_backprop_input<T: MatElem + Float>(
    dy: &[T],
    f: &[T],
    g: &ConvGeom,
) -> Result<Vec<T>> {
    let (rows, kdim, o, og) = (g.rows(), g.kdim(), g.o, g.og());
    let mut dx = alloc(g.in_nhwc().iter().product(), T::ZERO)?;
    if rows == 0 || kdim == 0 {
        return Ok(dx);
    }
    if g.pointwise() {
        let (a, b) = (
            Mat {
                data: dy,
                rs: o,
                cs: 1,
            },
            Mat {
                data: f,
                rs: 1,
                cs: o,
            },
        );
        gemm_into(rows, g.c, o, a, b, &mut dx, g.c, false)?;
        return Ok(dx);
    }
    let block = g.block();
    let mut col = alloc(block * kdim, T::ZERO)?;
    for gi in 0..g.groups {
        for r0 in (0..rows).step_by(block) {
            let rb = block.min(rows - r0);
            let col = &mut col[..rb * kdim];
            let a = Mat {
                data: &dy[r0 * o + gi * og..],
                rs: o,
                cs: 1,
            };
            let b = Mat {
                data: &f[gi * og..],
                rs: 1,
                cs: o,
            };
            gemm_into(rb, kdim, og, a, b, col, kdim, false)?;
            col2im(col, g, gi, r0, rb, &mut dx);
        }
    }
    Ok(dx)
}

/// The gradient of the convolution with respect to its HWIO filter.
pub(crate) fn conv_backprop_filter<T: MatElem + Float>(
    x: &[T],
    dy: &[T],
    g: &ConvGeom,
) -> Result<Vec<T>> {
    let (rows, kdim, o, og) = (g.rows(), g.kdim(), g.o, g.og());
    let mut dw = alloc(kdim * o, T::ZERO)?;
    if rows == 0 || og == 0 {
        return Ok(dw);
    }
    if g.pointwise() {
        let (a, b) = (
            Mat {
                data: x,
                rs: 1,
                cs: g.c,
            },
            Mat {
                data: dy,
                rs: o,
                cs: 1,
            },
        );
        gemm_into(g.c, o, rows, a, b, &mut dw, o, false)?;
        return Ok(dw);
    }
    let block = g.block();
    let mut col = alloc(block * kdim, T::ZERO)?;
    for gi in 0..g.groups {
        for r0 in (0..rows).step_by(block) {
            let rb = block.min(rows - r0);
            let col = &mut col[..rb * kdim];
            im2col(x, g, gi, r0, col);
            let a = Mat {
                data: &*col,
                rs: 1,
                cs: kdim,
            };
            let b = Mat {
                data: &dy[r0 * o + gi * og..],
                rs: o,
                cs: 1,
            };
            gemm_into(kdim, og, rb, a, b, &mut dw[gi * og..], o, true)?;
        }
    }
    Ok(dw)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Forward,
    Input,
    InputV2,
    Filter,
}

struct Conv {
    attrs: WindowAttrs,
    which: Which,
    name: &'static str,
}

pub(crate) fn rank4(t: &Tensor, what: &str) -> Result<()> {
    if t.rank() != 4 {
        return Err(Error::invalid_argument(format!(
            "{what} must be 4-dimensional: {}",
            t.shape()
        )));
    }
    Ok(())
}

impl Conv {
    fn check_dy(&self, dy: &Tensor, g: &ConvGeom) -> Result<Tensor> {
        rank4(dy, "out_backprop")?;
        let fmt = self.attrs.format;
        let want = fmt.dims_from_nhwc(g.out_nhwc());
        if dy.dims() != want.as_slice() {
            return Err(Error::invalid_argument(format!(
                "{}: Size of out_backprop doesn't match computed: actual = {}, computed = {want:?}",
                self.name,
                dy.shape()
            )));
        }
        to_nhwc(dy.clone(), fmt)
    }

    fn run<T: MatElem + Float>(&self, inputs: [Tensor; 3]) -> Result<Tensor> {
        let fmt = self.attrs.format;
        let [a, b, c] = inputs;
        match self.which {
            Which::Forward => Err(Error::internal("forward conv dispatched as backprop")),
            Which::Input | Which::InputV2 => {
                rank4(&b, "filter")?;
                let nhwc = if self.which == Which::InputV2 {
                    rank4(&a, "input")?;
                    fmt.nhwc(a.dims())
                } else if a.num_elements() == 2 {
                    // TF also takes just (H, W): batch from out_backprop, depth from filter.
                    rank4(&c, "out_backprop")?;
                    let hw = a.to_i64_vec()?;
                    if hw.iter().any(|&v| v < 0) {
                        return Err(Error::invalid_argument(format!(
                            "input_sizes must be non-negative, got {hw:?}"
                        )));
                    }
                    [c.dims()[0], hw[0] as usize, hw[1] as usize, b.dims()[2]]
                } else {
                    fmt.nhwc(&shape_from(&a, "input_sizes")?)
                };
                let g = ConvGeom::new(&self.attrs, nhwc, b.dims())?;
                let dy = self.check_dy(&c, &g)?;
                let dx = conv_backprop_input::<T>(dy.as_slice()?, b.as_slice()?, &g)?;
                from_nhwc(Tensor::new(&g.in_nhwc(), dx)?, fmt)
            }
            Which::Filter => {
                rank4(&a, "input")?;
                let fdims = shape_from(&b, "filter_sizes")?;
                let x = to_nhwc(a, fmt)?;
                let g = ConvGeom::new(
                    &self.attrs,
                    [x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]],
                    &fdims,
                )?;
                let dy = self.check_dy(&c, &g)?;
                let dw = conv_backprop_filter::<T>(x.as_slice()?, dy.as_slice()?, &g)?;
                Tensor::new(&fdims, dw)
            }
        }
    }

    /// The forward pass; the output comes from `cx`'s memory plan when given and NHWC.
    fn forward<T: MatElem>(
        &self,
        x: Tensor,
        f: &Tensor,
        cx: Option<&KernelContext>,
    ) -> Result<Tensor> {
        rank4(&x, "input")?;
        rank4(f, "filter")?;
        let fmt = self.attrs.format;
        let x = to_nhwc(x, fmt)?;
        let d = x.dims();
        let g = ConvGeom::new(&self.attrs, [d[0], d[1], d[2], d[3]], f.dims())?;
        let dims = g.out_nhwc();
        let mut out = match (cx, fmt) {
            (Some(cx), Format::Nhwc) => cx.alloc_output::<T>(0, &dims)?,
            _ => Tensor::new(&dims, alloc(g.rows() * g.o, T::default())?)?,
        };
        conv_forward_into::<T>(x.as_slice()?, f.as_slice()?, &g, out.as_mut_slice()?, None)?;
        from_nhwc(out, fmt)
    }
}

impl Kernel for Conv {
    /// The forward pass writes through the plan; the gradients allocate their own.
    fn memory_traits(&self) -> MemoryTraits {
        match self.which {
            Which::Forward => MemoryTraits::PLANNED,
            _ => MemoryTraits {
                reads_arena_inputs: true,
                ..MemoryTraits::default()
            },
        }
    }

    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let out = if self.which == Which::Forward {
            let [x, f] = take(self.name, inputs)?;
            let dt = x.dtype();
            match_float!(dt, T => self.forward::<T>(x, &f, Some(cx))?, d => {
                if is_half(d) {
                    via_f32(d, vec![x, f], |v| {
                        let [x, f] = take(self.name, v)?;
                        Ok(vec![self.forward::<f32>(x, &f, None)?])
                    })?
                    .remove(0)
                } else {
                    match_int!(d, T => self.forward::<T>(x, &f, Some(cx))?, d => return Err(unsupported_dtype(self.name, d)))
                }
            })
        } else {
            let v: [Tensor; 3] = take(self.name, inputs)?;
            // The float operand that fixes T: the filter (input grad) or the input (filter grad).
            let dt = if self.which == Which::Filter {
                v[0].dtype()
            } else {
                v[1].dtype()
            };
            match dt {
                DType::F32 => self.run::<f32>(v)?,
                DType::F64 => self.run::<f64>(v)?,
                d if is_half(d) => {
                    let widened = via_f32(d, v.to_vec(), |w| {
                        Ok(vec![self.run::<f32>(take(self.name, w)?)?])
                    })?;
                    widened
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::internal("no output"))?
                }
                d => return Err(unsupported_dtype(self.name, d)),
            }
        };
        Ok(vec![out])
    }
}

fn factory(node: &Node, which: Which, name: &'static str) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Conv {
        attrs: WindowAttrs::parse(node, false)?,
        which,
        name,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("Conv2D", |n| factory(n, Which::Forward, "Conv2D"));
    r.cpu("Conv2DBackpropInput", |n| {
        factory(n, Which::Input, "Conv2DBackpropInput")
    });
    r.cpu("Conv2DBackpropInputV2", |n| {
        factory(n, Which::InputV2, "Conv2DBackpropInputV2")
    });
    r.cpu("Conv2DBackpropFilter", |n| {
        factory(n, Which::Filter, "Conv2DBackpropFilter")
    });
}
