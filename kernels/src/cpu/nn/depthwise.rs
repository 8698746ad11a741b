//! Depthwise convolution: `DepthwiseConv2dNative` and its gradients
//! `DepthwiseConv2dNativeBackpropInput` / `DepthwiseConv2dNativeBackpropFilter`.
//! Filter `[KH, KW, C, M]`, output depth `C * M` (channel `c * M + m`), NHWC or NCHW, SAME /
//! VALID / EXPLICIT padding, strides and dilations.
//!
//! Direct loops in NHWC (NCHW transposed in and out): the forward pass and the input
//! gradient run one output row / one image per task; the filter gradient runs one filter
//! tap per task, so no two tasks write the same element.
//!
//! Invariants: f32/f64 natively, f16/bf16 through f32; the filter's input depth must equal
//! the input's depth; sizes follow TensorFlow's window rule.

use rayon::prelude::*;
use rill_graph::{element_count, Error, Node, Result, Tensor};

use super::window::{from_nhwc, shape_from, to_nhwc, Dim1, WindowAttrs};
use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::num::{is_half, via_f32, Float};
use crate::cpu::math::par::for_rows;
use crate::cpu::math::util::{match_float, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    m: usize,
    hd: Dim1,
    wd: Dim1,
}

impl Geom {
    fn new(attrs: &WindowAttrs, [n, h, w, c]: [usize; 4], f: &[usize]) -> Result<Geom> {
        if f.len() != 4 || f[2] != c {
            return Err(Error::invalid_argument(format!(
                "input and filter must have the same depth: {c} vs {:?}",
                f.get(2)
            )));
        }
        let [hd, wd] = attrs.geometry(h, w, f[0], f[1])?;
        let g = Geom {
            n,
            c,
            m: f[3],
            hd,
            wd,
        };
        element_count(&g.out_nhwc())?;
        element_count(f)?;
        Ok(g)
    }
    fn out_nhwc(&self) -> [usize; 4] {
        [self.n, self.hd.output, self.wd.output, self.c * self.m]
    }
    fn in_nhwc(&self) -> [usize; 4] {
        [self.n, self.hd.input, self.wd.input, self.c]
    }
    fn x_at(&self, b: usize, iy: usize, ix: usize) -> usize {
        ((b * self.hd.input + iy) * self.wd.input + ix) * self.c
    }
}

fn forward<T: Float>(x: &[T], f: &[T], g: &Geom) -> Result<Vec<T>> {
    let (ow, cm) = (g.wd.output, g.c * g.m);
    let mut out = alloc(g.out_nhwc().iter().product(), T::ZERO)?;
    let cost = ow * cm * g.hd.k * g.wd.k;
    for_rows(&mut out, ow * cm, cost, |r0, rows| {
        for (i, row) in rows.chunks_mut(ow * cm).enumerate() {
            let (b, oy) = ((r0 + i) / g.hd.output, (r0 + i) % g.hd.output);
            for (ox, px) in row.chunks_mut(cm).enumerate() {
                for ky in g.hd.valid_taps(oy) {
                    let iy = g.hd.pos(oy, ky) as usize;
                    for kx in g.wd.valid_taps(ox) {
                        let xin = &x[g.x_at(b, iy, g.wd.pos(ox, kx) as usize)..][..g.c];
                        let fw = &f[(ky * g.wd.k + kx) * cm..][..cm];
                        if g.m == 1 {
                            for ((o, &v), &w) in px.iter_mut().zip(xin).zip(fw) {
                                *o += v * w;
                            }
                        } else {
                            for ((o, w), &v) in px.chunks_mut(g.m).zip(fw.chunks(g.m)).zip(xin) {
                                for (o, &w) in o.iter_mut().zip(w) {
                                    *o += v * w;
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(out)
}

fn backprop_input<T: Float>(dy: &[T], f: &[T], g: &Geom) -> Result<Vec<T>> {
    let cm = g.c * g.m;
    let hwc = g.hd.input * g.wd.input * g.c;
    let ohw = g.hd.output * g.wd.output;
    let mut dx = alloc(g.in_nhwc().iter().product(), T::ZERO)?;
    if hwc == 0 {
        return Ok(dx);
    }
    dx.par_chunks_mut(hwc).enumerate().for_each(|(b, img)| {
        for oy in 0..g.hd.output {
            for ox in 0..g.wd.output {
                let d = &dy[((b * ohw) + oy * g.wd.output + ox) * cm..][..cm];
                for ky in g.hd.valid_taps(oy) {
                    let iy = g.hd.pos(oy, ky) as usize;
                    for kx in g.wd.valid_taps(ox) {
                        let ix = g.wd.pos(ox, kx) as usize;
                        let fw = &f[(ky * g.wd.k + kx) * cm..][..cm];
                        let dst = &mut img[(iy * g.wd.input + ix) * g.c..][..g.c];
                        for ((o, dd), ff) in dst.iter_mut().zip(d.chunks(g.m)).zip(fw.chunks(g.m)) {
                            let mut acc = T::ZERO;
                            for (&a, &b) in dd.iter().zip(ff) {
                                acc += a * b;
                            }
                            *o += acc;
                        }
                    }
                }
            }
        }
    });
    Ok(dx)
}

fn backprop_filter<T: Float>(x: &[T], dy: &[T], g: &Geom) -> Result<Vec<T>> {
    let cm = g.c * g.m;
    let ohw = g.hd.output * g.wd.output;
    let mut dw = alloc(g.hd.k * g.wd.k * cm, T::ZERO)?;
    if cm == 0 {
        return Ok(dw);
    }
    dw.par_chunks_mut(cm).enumerate().for_each(|(tap, acc)| {
        let (ky, kx) = (tap / g.wd.k, tap % g.wd.k);
        for b in 0..g.n {
            for oy in 0..g.hd.output {
                let iy = g.hd.pos(oy, ky);
                if iy < 0 || iy >= g.hd.input as isize {
                    continue;
                }
                for ox in 0..g.wd.output {
                    let ix = g.wd.pos(ox, kx);
                    if ix < 0 || ix >= g.wd.input as isize {
                        continue;
                    }
                    let xin = &x[g.x_at(b, iy as usize, ix as usize)..][..g.c];
                    let d = &dy[(b * ohw + oy * g.wd.output + ox) * cm..][..cm];
                    for ((a, dd), &v) in acc.chunks_mut(g.m).zip(d.chunks(g.m)).zip(xin) {
                        for (a, &dd) in a.iter_mut().zip(dd) {
                            *a += v * dd;
                        }
                    }
                }
            }
        }
    });
    Ok(dw)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Forward,
    Input,
    Filter,
}

struct Depthwise {
    attrs: WindowAttrs,
    which: Which,
    name: &'static str,
}

fn dims4(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.dims() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(Error::invalid_argument(format!(
            "{what} must be 4-dimensional: {}",
            t.shape()
        ))),
    }
}

impl Depthwise {
    fn run<T: Float>(&self, v: Vec<Tensor>) -> Result<Tensor> {
        let fmt = self.attrs.format;
        let [a, b, c] = match self.which {
            Which::Forward => {
                let [x, f] = take(self.name, v)?;
                [x, f, Tensor::scalar(0f32)]
            }
            _ => take(self.name, v)?,
        };
        match self.which {
            Which::Forward => {
                dims4(&a, "input")?;
                let x = to_nhwc(a, fmt)?;
                let g = Geom::new(&self.attrs, dims4(&x, "input")?, &dims4(&b, "filter")?)?;
                let out = forward::<T>(x.as_slice()?, b.as_slice()?, &g)?;
                from_nhwc(Tensor::new(&g.out_nhwc(), out)?, fmt)
            }
            Which::Input => {
                let sizes = fmt.nhwc(&shape_from(&a, "input_sizes")?);
                let g = Geom::new(&self.attrs, sizes, &dims4(&b, "filter")?)?;
                let dy = self.check_dy(c, &g)?;
                let dx = backprop_input::<T>(dy.as_slice()?, b.as_slice()?, &g)?;
                from_nhwc(Tensor::new(&g.in_nhwc(), dx)?, fmt)
            }
            Which::Filter => {
                dims4(&a, "input")?;
                let fdims = shape_from(&b, "filter_sizes")?;
                let x = to_nhwc(a, fmt)?;
                let g = Geom::new(&self.attrs, dims4(&x, "input")?, &fdims)?;
                let dy = self.check_dy(c, &g)?;
                Tensor::new(
                    &fdims,
                    backprop_filter::<T>(x.as_slice()?, dy.as_slice()?, &g)?,
                )
            }
        }
    }

    fn check_dy(&self, dy: Tensor, g: &Geom) -> Result<Tensor> {
        let want = self.attrs.format.dims_from_nhwc(g.out_nhwc());
        if dy.dims() != want.as_slice() {
            return Err(Error::invalid_argument(format!(
                "{}: out_backprop has shape {}, expected {want:?}",
                self.name,
                dy.shape()
            )));
        }
        to_nhwc(dy, self.attrs.format)
    }
}

impl Kernel for Depthwise {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let dt = inputs
            .get(if self.which == Which::Input { 1 } else { 0 })
            .map(Tensor::dtype)
            .ok_or_else(|| Error::invalid_argument(format!("{} is missing inputs", self.name)))?;
        let out = match_float!(dt, T => self.run::<T>(inputs)?, d => {
            if !is_half(d) {
                return Err(unsupported_dtype(self.name, d));
            }
            via_f32(d, inputs, |v| Ok(vec![self.run::<f32>(v)?]))?.remove(0)
        });
        Ok(vec![out])
    }
}

fn factory(node: &Node, which: Which, name: &'static str) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Depthwise {
        attrs: WindowAttrs::parse(node, false)?,
        which,
        name,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("DepthwiseConv2dNative", |n| {
        factory(n, Which::Forward, "DepthwiseConv2dNative")
    });
    r.cpu("DepthwiseConv2dNativeBackpropInput", |n| {
        factory(n, Which::Input, "DepthwiseConv2dNativeBackpropInput")
    });
    r.cpu("DepthwiseConv2dNativeBackpropFilter", |n| {
        factory(n, Which::Filter, "DepthwiseConv2dNativeBackpropFilter")
    });
}
