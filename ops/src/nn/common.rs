//! Helpers for the convolution and pooling shape functions: data formats (`NHWC`/`NCHW`),
//! padding (`SAME`/`VALID`/`EXPLICIT` with `explicit_paddings`), 4-value window attrs, and
//! TensorFlow's windowed output size (`GetWindowedOutputSizeFromDimsV2`, with dilation).
//!
//! Invariant: an unknown input size gives an unknown output size; only a contradiction
//! (bad attr, a window larger than its padded input) is an error, naming the input.

use rill_graph::{Dim, InferenceContext, Result, Shape};

/// Padding algorithm of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    Same,
    Valid,
    Explicit,
}

/// Layout of a 4-D image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Nhwc,
    Nchw,
}

impl Format {
    /// Positions of N, H, W, C in a 4-D tensor (or a 4-value attr).
    pub(crate) fn indices(self) -> [usize; 4] {
        match self {
            Format::Nhwc => [0, 1, 2, 3],
            Format::Nchw => [0, 2, 3, 1],
        }
    }

    /// `(n, h, w, c)` of a rank-4 shape (unknown dims when the rank is unknown).
    pub(crate) fn split(self, s: &Shape) -> (Dim, Dim, Dim, Dim) {
        let [n, h, w, c] = self.indices();
        (
            s.dim(n as i64),
            s.dim(h as i64),
            s.dim(w as i64),
            s.dim(c as i64),
        )
    }

    /// A rank-4 shape from `n, h, w, c` laid out in this format.
    pub(crate) fn make(self, n: Dim, h: Dim, w: Dim, c: Dim) -> Shape {
        match self {
            Format::Nhwc => Shape::from_dims([n, h, w, c]),
            Format::Nchw => Shape::from_dims([n, c, h, w]),
        }
    }

    /// `(h, w)` values of a 4-value attr (strides, ksize, dilations) in this format.
    pub(crate) fn hw(self, v: &[i64; 4]) -> (i64, i64) {
        let [_, h, w, _] = self.indices();
        (v[h], v[w])
    }

    /// The channel value of a 4-value attr.
    pub(crate) fn c(self, v: &[i64; 4]) -> i64 {
        v[self.indices()[3]]
    }
}

/// The node's `data_format` (NHWC when the op has none). `NCHW_VECT_C` is not supported.
pub(crate) fn data_format(cx: &InferenceContext) -> Result<Format> {
    match cx.attrs.get("data_format").and_then(|v| v.as_str()) {
        None | Some("NHWC") => Ok(Format::Nhwc),
        Some("NCHW") => Ok(Format::Nchw),
        Some(other) => Err(rill_graph::Error::unimplemented(format!(
            "{} with data_format '{other}' is not supported by Rill",
            cx.op
        ))),
    }
}

/// The node's `padding`.
pub(crate) fn padding(cx: &InferenceContext) -> Result<Padding> {
    match cx.attr_str("padding")? {
        "SAME" => Ok(Padding::Same),
        "VALID" => Ok(Padding::Valid),
        "EXPLICIT" => Ok(Padding::Explicit),
        other => Err(cx.error(format!("unknown padding '{other}' on {}", cx.op))),
    }
}

/// A list(int) attr that must hold exactly 4 values.
pub(crate) fn four_ints(cx: &InferenceContext, name: &str) -> Result<[i64; 4]> {
    let v = cx.attr_ints(name)?;
    <[i64; 4]>::try_from(v).map_err(|_| {
        cx.error(format!(
            "{} requires the {name} attribute to contain 4 values, but got {} ({v:?})",
            cx.op,
            v.len()
        ))
    })
}

/// `((top, bottom), (left, right))` padding of the H and W dims: from `explicit_paddings`
/// when `padding` is EXPLICIT (8 non-negative values, zero on N and C), else zero. A
/// non-empty `explicit_paddings` with another padding is an error, as in TensorFlow.
pub(crate) fn explicit_paddings(
    cx: &InferenceContext,
    padding: Padding,
    format: Format,
) -> Result<[(i64, i64); 2]> {
    let pads = cx
        .attrs
        .get("explicit_paddings")
        .and_then(|v| v.as_int_list())
        .unwrap_or(&[]);
    if padding != Padding::Explicit {
        if !pads.is_empty() {
            return Err(cx.error(format!(
                "explicit_paddings must be empty when padding is not EXPLICIT, got {pads:?}"
            )));
        }
        return Ok([(0, 0); 2]);
    }
    if pads.len() != 8 {
        return Err(cx.error(format!(
            "explicit_paddings must contain 8 values (2 per dimension) when padding is EXPLICIT, got {pads:?}"
        )));
    }
    if let Some(p) = pads.iter().find(|&&p| p < 0) {
        return Err(cx.error(format!(
            "explicit_paddings must be non-negative, got {p} in {pads:?}"
        )));
    }
    let [n, h, w, c] = format.indices();
    let pair = |i: usize| (pads[2 * i], pads[2 * i + 1]);
    if pair(n) != (0, 0) || pair(c) != (0, 0) {
        return Err(cx.error(format!(
            "explicit padding of the batch or depth dimension is not supported, got {pads:?}"
        )));
    }
    Ok([pair(h), pair(w)])
}

/// One windowed dimension: what it is and where it comes from, for messages.
pub(crate) struct Window<'a> {
    /// `"height"`, `"width"`, `"depth"`.
    pub dim: &'a str,
    /// Index of the input whose dim this is.
    pub input: usize,
}

/// TensorFlow's windowed output size. `input`/`filter` may be unknown (→ unknown);
/// `pads` is used only for EXPLICIT padding. SAME: `ceil(in / stride)`; VALID/EXPLICIT:
/// `(in + pads - ((filter - 1) * dilation + 1)) / stride + 1`, an error when the dilated
/// window is larger than the padded input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn windowed_output_size(
    cx: &InferenceContext,
    at: Window,
    input: Dim,
    filter: Dim,
    dilation: i64,
    stride: i64,
    padding: Padding,
    pads: (i64, i64),
) -> Result<Dim> {
    if stride <= 0 {
        return Err(cx.error(format!(
            "{}: stride must be > 0, but got {stride} for the {}",
            cx.op, at.dim
        )));
    }
    if dilation < 1 {
        return Err(cx.error(format!(
            "{}: dilation rate must be >= 1, but got {dilation} for the {}",
            cx.op, at.dim
        )));
    }
    let Some(size) = input.known() else {
        return Ok(Dim::Unknown);
    };
    // Wide arithmetic: sizes, strides, dilations and paddings come from the graph.
    let (size, stride, dilation) = (size as i128, stride as i128, dilation as i128);
    let out = if padding == Padding::Same {
        (size + stride - 1) / stride
    } else {
        let Some(k) = filter.known() else {
            return Ok(Dim::Unknown);
        };
        let padded = if padding == Padding::Explicit {
            size + pads.0 as i128 + pads.1 as i128
        } else {
            size
        };
        let window = (k as i128 - 1) * dilation + 1;
        if window > padded {
            return Err(cx.error(format!(
                "{}: the {} window (size {k}, dilation {dilation}: {window}) is larger than the padded {} {padded} \
                 of '{}' with shape {}",
                cx.op, at.dim, at.dim, cx.input_names[at.input], cx.input_shapes[at.input]
            )));
        }
        (padded - window) / stride + 1
    };
    usize::try_from(out).map(Dim::Known).map_err(|_| {
        cx.error(format!(
            "{}: the output {} {out} is out of range",
            cx.op, at.dim
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let s = Shape::parse("[1,2,3,4]").unwrap();
        let (n, h, w, c) = Format::Nchw.split(&s);
        assert_eq!(Format::Nchw.make(n, h, w, c), s);
        assert_eq!((h, c), (Dim::Known(3), Dim::Known(2)));
        assert_eq!(Format::Nchw.hw(&[1, 2, 3, 4]), (3, 4));
        assert_eq!(Format::Nhwc.c(&[1, 2, 3, 4]), 4);
    }
}
