//! What the convolution and pooling kernels share: the `data_format` (NHWC or NCHW), the
//! `padding` (SAME, VALID, EXPLICIT with `explicit_paddings`), strides, dilations and
//! ksize attrs, TensorFlow's windowed output-size rule, and NCHW <-> NHWC layout changes
//! (the kernels compute in NHWC).
//!
//! Invariants: sizes follow TensorFlow's `GetWindowedOutputSizeVerbose`: VALID gives
//! `(in - eff + stride) / stride` (negative is InvalidArgument), SAME gives
//! `ceil(in / stride)` with the odd padding pixel placed after; strides, dilations and
//! ksize along batch and depth must be 1.

use rill_graph::{Element, Error, Node, Result, Tensor};

use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::par::for_rows;
use crate::cpu::math::util::{attr_ints, attr_str, match_real};

/// The layout of a 4-D activation tensor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Format {
    Nhwc,
    Nchw,
}

impl Format {
    pub fn parse(node: &Node) -> Result<Format> {
        match attr_str(node, "data_format", "NHWC")?.as_str() {
            "NHWC" | "NDHWC" => Ok(Format::Nhwc),
            "NCHW" | "NCDHW" => Ok(Format::Nchw),
            other => Err(Error::invalid_argument(format!(
                "Invalid data format: {other}"
            ))),
        }
    }

    /// Positions of (H, W) in a 4-D attr list or shape.
    pub fn hw(self) -> [usize; 2] {
        match self {
            Format::Nhwc => [1, 2],
            Format::Nchw => [2, 3],
        }
    }

    /// Position of C.
    pub fn c(self) -> usize {
        match self {
            Format::Nhwc => 3,
            Format::Nchw => 1,
        }
    }

    /// `[N, H, W, C]` of a 4-D shape in this format.
    pub fn nhwc(self, dims: &[usize]) -> [usize; 4] {
        match self {
            Format::Nhwc => [dims[0], dims[1], dims[2], dims[3]],
            Format::Nchw => [dims[0], dims[2], dims[3], dims[1]],
        }
    }

    /// A shape in this format from `[N, H, W, C]`.
    pub fn dims_from_nhwc(self, [n, h, w, c]: [usize; 4]) -> Vec<usize> {
        match self {
            Format::Nhwc => vec![n, h, w, c],
            Format::Nchw => vec![n, c, h, w],
        }
    }
}

/// A padding scheme; `Explicit` holds (before, after) for H and W.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Padding {
    Same,
    Valid,
    Explicit([(usize, usize); 2]),
}

/// One spatial dimension of a window op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dim1 {
    pub input: usize,
    pub k: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_before: usize,
    pub output: usize,
}

impl Dim1 {
    /// TensorFlow's windowed output size and leading padding.
    pub fn new(
        input: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: Padding,
        axis: usize,
    ) -> Result<Dim1> {
        if k == 0 {
            return Err(Error::invalid_argument(
                "window and filter sizes must be positive",
            ));
        }
        // i128 so that absurd explicit paddings cannot overflow.
        let eff = (k as i128 - 1) * dilation as i128 + 1;
        let (inp, s) = (input as i128, stride as i128);
        let (out, before) = match pad {
            Padding::Valid => ((inp - eff + s) / s, 0),
            Padding::Same => {
                let out = (inp + s - 1) / s;
                let needed = ((out - 1) * s + eff - inp).max(0);
                (out, needed / 2)
            }
            Padding::Explicit(p) => {
                let (b, a) = (p[axis].0 as i128, p[axis].1 as i128);
                ((inp + b + a - eff + s) / s, b)
            }
        };
        // C++ (and Rust) division truncates towards zero, so e.g. VALID with in=2, k=3
        // gives 0 outputs while in=1, k=3 is an error, exactly as in TensorFlow.
        if out < 0 || out > isize::MAX as i128 || before > isize::MAX as i128 {
            return Err(Error::invalid_argument(format!(
                "Computed output size would be negative: {out} [input_size: {input}, effective_filter_size: {eff}, stride: {stride}]"
            )));
        }
        Ok(Dim1 {
            input,
            k,
            stride,
            dilation,
            pad_before: before as usize,
            output: out as usize,
        })
    }

    /// The input position of output `o`, tap `t` (may lie in the padding).
    #[inline(always)]
    pub fn pos(&self, o: usize, t: usize) -> isize {
        (o * self.stride + t * self.dilation) as isize - self.pad_before as isize
    }

    /// The taps of output `o` that land inside the input, as a range.
    #[inline]
    pub fn valid_taps(&self, o: usize) -> std::ops::Range<usize> {
        let start = o as isize * self.stride as isize - self.pad_before as isize;
        let d = self.dilation as isize;
        let lo = if start >= 0 {
            0
        } else {
            ((-start) + d - 1) / d
        };
        let hi = (self.input as isize - start + d - 1) / d;
        (lo.max(0) as usize)..(hi.clamp(0, self.k as isize) as usize).max(lo.max(0) as usize)
    }
}

/// The window attrs of a conv or pool node.
#[derive(Clone, Debug)]
pub(crate) struct WindowAttrs {
    pub format: Format,
    /// (H, W) strides.
    pub strides: [usize; 2],
    /// (H, W) dilations.
    pub dilations: [usize; 2],
    /// (H, W) window size (pools).
    pub ksize: [usize; 2],
    pub padding: Padding,
}

/// The (H, W) entries of a 4-value `name` list in `format` order; batch and depth must be 1.
pub(crate) fn hw_of(op: &str, name: &str, v: &[i64], format: Format) -> Result<[usize; 2]> {
    if v.len() != 4 {
        return Err(Error::invalid_argument(format!(
            "{op} requires the {name} attribute to contain 4 values, but got: {}",
            v.len()
        )));
    }
    if v.iter().any(|&x| x < 1) {
        return Err(Error::invalid_argument(format!(
            "{name} values must be positive, got {v:?}"
        )));
    }
    if v[0] != 1 || v[format.c()] != 1 {
        return Err(Error::invalid_argument(format!(
            "Current implementation does not yet support {name} in the batch and depth dimensions."
        )));
    }
    let [h, w] = format.hw();
    Ok([v[h] as usize, v[w] as usize])
}

fn four(node: &Node, name: &str, format: Format) -> Result<Option<[usize; 2]>> {
    match attr_ints(node, name)? {
        None => Ok(None),
        Some(v) => hw_of(node.op_name(), name, &v, format).map(Some),
    }
}

impl WindowAttrs {
    /// Reads `data_format`, `strides`, `dilations`, `ksize` (when `pool`) and padding.
    pub fn parse(node: &Node, pool: bool) -> Result<WindowAttrs> {
        let format = Format::parse(node)?;
        let strides = four(node, "strides", format)?;
        let dilations = four(node, "dilations", format)?.unwrap_or([1, 1]);
        let ksize = four(node, "ksize", format)?;
        let padding = match attr_str(node, "padding", "")?.as_str() {
            "SAME" => Padding::Same,
            "VALID" => Padding::Valid,
            "EXPLICIT" => {
                let p = attr_ints(node, "explicit_paddings")?.unwrap_or_default();
                if p.len() != 8 || p.iter().any(|&x| x < 0) {
                    return Err(Error::invalid_argument(format!(
                        "explicit_paddings must hold 8 non-negative values, got {p:?}"
                    )));
                }
                let c = format.c();
                if p[0] != 0 || p[1] != 0 || p[2 * c] != 0 || p[2 * c + 1] != 0 {
                    return Err(Error::invalid_argument(
                        "Nonzero explicit padding in the batch or depth dimensions is not supported",
                    ));
                }
                let [h, w] = format.hw();
                Padding::Explicit([
                    (p[2 * h] as usize, p[2 * h + 1] as usize),
                    (p[2 * w] as usize, p[2 * w + 1] as usize),
                ])
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "Unknown padding type '{other}'"
                )))
            }
        };
        // Pools whose ksize/strides arrive as inputs (MaxPoolV2) fill them in later.
        let strides = match strides {
            Some(s) => s,
            None if pool => [1, 1],
            None => {
                return Err(Error::invalid_argument(format!(
                    "{} requires a strides attr",
                    node.op_name()
                )))
            }
        };
        Ok(WindowAttrs {
            format,
            strides,
            dilations,
            ksize: ksize.unwrap_or([1, 1]),
            padding,
        })
    }

    /// The (H, W) geometry for an input of spatial size `h` x `w` and window `kh` x `kw`.
    pub fn geometry(&self, h: usize, w: usize, kh: usize, kw: usize) -> Result<[Dim1; 2]> {
        Ok([
            Dim1::new(h, kh, self.strides[0], self.dilations[0], self.padding, 0)?,
            Dim1::new(w, kw, self.strides[1], self.dilations[1], self.padding, 1)?,
        ])
    }
}

/// A 4-D tensor's values permuted by `perm` (output dim i is input dim `perm[i]`).
fn permute4<T: Element + Clone>(t: &Tensor, perm: [usize; 4]) -> Result<Tensor> {
    let d = t.dims();
    if d.len() != 4 {
        return Err(Error::invalid_argument(format!(
            "expected a 4-D tensor, got shape {}",
            t.shape()
        )));
    }
    let src = t.as_slice::<T>()?;
    let st = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1];
    let od = [d[perm[0]], d[perm[1]], d[perm[2]], d[perm[3]]];
    let os = [st[perm[0]], st[perm[1]], st[perm[2]], st[perm[3]]];
    let mut out = alloc(src.len(), T::default())?;
    let row = od[2] * od[3];
    for_rows(&mut out, row, row, |r0, rows| {
        for (i, chunk) in rows.chunks_mut(row).enumerate() {
            let r = r0 + i;
            let base = (r / od[1]) * os[0] + (r % od[1]) * os[1];
            for (j, line) in chunk.chunks_mut(od[3]).enumerate() {
                let b = base + j * os[2];
                for (k, v) in line.iter_mut().enumerate() {
                    *v = src[b + k * os[3]].clone();
                }
            }
        }
    });
    Tensor::new(&od, out)
}

fn permute(t: &Tensor, perm: [usize; 4]) -> Result<Tensor> {
    let dt = t.dtype();
    match_real!(dt, T => permute4::<T>(t, perm), d => Err(crate::unsupported_dtype("transpose", d)))
}

/// NCHW to NHWC (NHWC unchanged).
pub(crate) fn to_nhwc(t: Tensor, format: Format) -> Result<Tensor> {
    match format {
        Format::Nhwc => Ok(t),
        Format::Nchw => permute(&t, [0, 2, 3, 1]),
    }
}

/// NHWC to `format`.
pub(crate) fn from_nhwc(t: Tensor, format: Format) -> Result<Tensor> {
    match format {
        Format::Nhwc => Ok(t),
        Format::Nchw => permute(&t, [0, 3, 1, 2]),
    }
}

/// A 4-D shape from a shape tensor (`input_sizes`, `orig_input_shape`).
pub(crate) fn shape_from(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    let v = t.to_i64_vec()?;
    if v.len() != 4 || v.iter().any(|&x| x < 0) {
        return Err(Error::invalid_argument(format!(
            "{what} must be a 4-element non-negative vector, got {v:?}"
        )));
    }
    Ok([v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_tensorflow() {
        let d = Dim1::new(5, 3, 2, 1, Padding::Same, 0).unwrap();
        assert_eq!((d.output, d.pad_before), (3, 1));
        // Odd padding goes after: in 4, k 2, stride 1 -> needs 1, all after.
        let d = Dim1::new(4, 2, 1, 1, Padding::Same, 0).unwrap();
        assert_eq!((d.output, d.pad_before), (4, 0));
        let d = Dim1::new(6, 4, 2, 1, Padding::Same, 0).unwrap();
        assert_eq!((d.output, d.pad_before), (3, 1));
        let d = Dim1::new(7, 3, 2, 1, Padding::Valid, 0).unwrap();
        assert_eq!((d.output, d.pad_before), (3, 0));
        let d = Dim1::new(7, 3, 1, 2, Padding::Valid, 0).unwrap();
        assert_eq!(d.output, 3);
        assert!(Dim1::new(1, 3, 1, 1, Padding::Valid, 0).is_err());
        assert_eq!(Dim1::new(2, 3, 1, 1, Padding::Valid, 0).unwrap().output, 0);
        let d = Dim1::new(5, 3, 1, 1, Padding::Explicit([(2, 1), (0, 0)]), 0).unwrap();
        assert_eq!((d.output, d.pad_before), (6, 2));
        let d = Dim1::new(5, 3, 2, 1, Padding::Same, 0).unwrap();
        assert_eq!(d.valid_taps(0), 1..3);
        assert_eq!(d.valid_taps(2), 0..2);
    }

    #[test]
    fn layout_round_trip() {
        let t = Tensor::new(&[2, 3, 4, 5], (0..120).collect::<Vec<i32>>()).unwrap();
        let n = to_nhwc(t.clone(), Format::Nchw).unwrap();
        assert_eq!(n.dims(), &[2, 4, 5, 3]);
        // element (b=1, c=2, h=3, w=4) of NCHW is at (1, 3, 4, 2) in NHWC
        assert_eq!(
            n.as_slice::<i32>().unwrap()[((4 + 3) * 5 + 4) * 3 + 2],
            60 + 2 * 20 + 3 * 5 + 4
        );
        assert_eq!(from_nhwc(n, Format::Nchw).unwrap(), t);
    }
}
