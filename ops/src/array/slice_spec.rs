//! The strided-slice algorithm shared by `StridedSlice`'s shape function and its kernels:
//! a sparse spec (begin/end/strides with five bit masks) is expanded to one range per input
//! dim — the ellipsis fills the unmentioned dims, new axes consume none, shrunk axes index a
//! single position — then ranges are masked and clamped like Python's, negative strides
//! walking backwards, and the output keeps the non-shrunk dims plus the new axes.

use rill_graph::{Dim, InferenceContext, Result, Shape};

/// StridedSlice's five bit masks; bit `i` refers to entry `i` of begin/end/strides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StridedSliceMasks {
    pub begin: i64,
    pub end: i64,
    pub ellipsis: i64,
    pub new_axis: i64,
    pub shrink_axis: i64,
}

impl StridedSliceMasks {
    /// The masks from a node's attrs.
    pub fn from_context(cx: &InferenceContext) -> Result<StridedSliceMasks> {
        Ok(StridedSliceMasks {
            begin: cx.attr_int("begin_mask")?,
            end: cx.attr_int("end_mask")?,
            ellipsis: cx.attr_int("ellipsis_mask")?,
            new_axis: cx.attr_int("new_axis_mask")?,
            shrink_axis: cx.attr_int("shrink_axis_mask")?,
        })
    }
}

fn bit(mask: i64, i: usize) -> bool {
    i < 64 && (mask >> i) & 1 == 1
}

/// Where each output dim comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDim {
    /// The (processed) input dim with this index.
    Input(usize),
    /// A new size-1 dim.
    NewAxis,
}

/// The slice of one input dim, after expansion, masking and clamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimSlice {
    /// First index taken (`None`: not known at graph time).
    pub begin: Option<i64>,
    /// One past the last index taken, in the direction of `stride`.
    pub end: Option<i64>,
    pub stride: i64,
    /// The dim is indexed by a single position and dropped from the output.
    pub shrink: bool,
    /// Elements taken from this dim (`None`: unknown).
    pub size: Option<i64>,
}

/// The dense form of a strided slice over an input of a known rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceSpec {
    /// One entry per input dim.
    pub dims: Vec<DimSlice>,
    /// The output's dims, in order.
    pub output: Vec<OutputDim>,
}

impl SliceSpec {
    /// The output shape.
    pub fn output_shape(&self) -> Shape {
        Shape::from_dims(self.output.iter().map(|o| {
            match *o {
                OutputDim::NewAxis => Dim::Known(1),
                OutputDim::Input(i) => self.dims[i]
                    .size
                    .map_or(Dim::Unknown, |n| Dim::Known(n as usize)),
            }
        }))
    }
}

/// Expands a sparse slice spec over an input with dims `input` (`None`: unknown size).
/// `begin`/`end` are `None` when not known; `strides` must be known. Errors are plain
/// descriptions; callers add which tensors were involved.
pub fn slice_spec(
    input: &[Option<i64>],
    begin: Option<&[i64]>,
    end: Option<&[i64]>,
    strides: &[i64],
    masks: StridedSliceMasks,
) -> std::result::Result<SliceSpec, String> {
    let n = strides.len();
    for (what, v) in [("begin", begin), ("end", end)] {
        if let Some(v) = v.filter(|v| v.len() != n) {
            return Err(format!(
                "{what} has {} entries but strides has {n}",
                v.len()
            ));
        }
    }
    if masks.ellipsis & masks.ellipsis.wrapping_sub(1) != 0 {
        return Err("only one ellipsis is allowed in a slice spec".into());
    }
    let ellipsis_at = (0..n).find(|&i| bit(masks.ellipsis, i));
    // New axes after the ellipsis do not consume input dims.
    let new_after_ellipsis = ellipsis_at.map_or(0, |e| {
        (e + 1..n).filter(|&i| bit(masks.new_axis, i)).count()
    });
    // Without an ellipsis, one is implied at the end.
    let sparse_len = if ellipsis_at.is_some() { n } else { n + 1 };
    let rank = input.len();
    let full = |stride| Entry {
        begin: None,
        end: None,
        stride,
        begin_masked: true,
        end_masked: true,
        shrink: false,
    };
    let mut entries: Vec<Entry> = vec![full(1); rank];
    let mut output = vec![];
    let mut next = 0usize;
    for i in 0..sparse_len {
        if i == n || bit(masks.ellipsis, i) {
            let stop = (rank as i64 - (sparse_len - i) as i64 + 1 + new_after_ellipsis as i64)
                .min(rank as i64);
            while (next as i64) < stop {
                output.push(OutputDim::Input(next));
                next += 1;
            }
        } else if bit(masks.new_axis, i) {
            output.push(OutputDim::NewAxis);
        } else {
            if next >= rank {
                return Err(format!(
                    "index {i} of the slice spec is past the input's {rank} dims"
                ));
            }
            let shrink = bit(masks.shrink_axis, i);
            entries[next] = Entry {
                begin: begin.map(|b| b[i]),
                end: end.map(|e| e[i]),
                stride: strides[i],
                begin_masked: bit(masks.begin, i),
                end_masked: bit(masks.end, i),
                shrink,
            };
            if !shrink {
                output.push(OutputDim::Input(next));
            }
            next += 1;
        }
    }
    let dims = entries
        .iter()
        .zip(input)
        .enumerate()
        .map(|(i, (e, &dim))| e.resolve(i, dim))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(SliceSpec { dims, output })
}

/// One dense entry before clamping.
#[derive(Debug, Clone, Copy)]
struct Entry {
    begin: Option<i64>,
    end: Option<i64>,
    stride: i64,
    begin_masked: bool,
    end_masked: bool,
    shrink: bool,
}

impl Entry {
    fn resolve(&self, i: usize, dim: Option<i64>) -> std::result::Result<DimSlice, String> {
        let stride = self.stride;
        if stride == 0 {
            return Err(format!("stride of dimension {i} is 0"));
        }
        let mut out = DimSlice {
            begin: None,
            end: None,
            stride,
            shrink: self.shrink,
            size: None,
        };
        if self.shrink {
            if stride < 0 {
                return Err(format!(
                    "dimension {i} is indexed by a single position, so its stride must be positive"
                ));
            }
            out.size = Some(1);
            if let Some(b) = self.begin {
                let fwd = match dim {
                    Some(d) if b < 0 => b + d,
                    _ => b,
                };
                if let Some(d) = dim {
                    if fwd < 0 || fwd >= d {
                        return Err(format!(
                            "index {b} is out of bounds for dimension {i} of size {d}"
                        ));
                    }
                }
                if fwd >= 0 {
                    out.begin = Some(fwd);
                    out.end = Some(fwd.saturating_add(1));
                }
            }
            return Ok(out);
        }
        let Some(d) = dim else { return Ok(out) };
        // Valid positions: [0, d] going forwards, [-1, d - 1] going backwards.
        let (lo, hi) = if stride > 0 { (0, d) } else { (-1, d - 1) };
        let canonical = |x: Option<i64>, masked: bool, is_begin: bool| -> Option<i64> {
            if masked {
                return Some(if (stride > 0) == is_begin { lo } else { hi });
            }
            let x = x?;
            let fwd = if x < 0 { d + x } else { x };
            Some(fwd.clamp(lo, hi))
        };
        out.begin = canonical(self.begin, self.begin_masked, true);
        out.end = canonical(self.end, self.end_masked, false);
        if let (Some(b), Some(e)) = (out.begin, out.end) {
            let interval = e - b;
            out.size = Some(if interval == 0 || (interval < 0) != (stride < 0) {
                0
            } else {
                interval / stride + i64::from(interval % stride != 0)
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> StridedSliceMasks {
        StridedSliceMasks::default()
    }

    #[test]
    fn spec_exposes_dense_ranges() {
        let s = slice_spec(
            &[Some(5)],
            Some(&[-1]),
            Some(&[0]),
            &[-1],
            StridedSliceMasks { end: 1, ..m() },
        )
        .unwrap();
        assert_eq!(s.dims[0].begin, Some(4));
        assert_eq!(s.dims[0].end, Some(-1));
        assert_eq!(s.dims[0].size, Some(5));
    }

    #[test]
    fn ellipsis_and_new_axes() {
        // x[..., None, 1:] on [2,3,4]: the ellipsis covers dims 0 and 1.
        let masks = StridedSliceMasks {
            ellipsis: 1,
            new_axis: 2,
            end: 4,
            ..m()
        };
        let s = slice_spec(
            &[Some(2), Some(3), Some(4)],
            Some(&[0, 0, 1]),
            Some(&[0, 0, 0]),
            &[1, 1, 1],
            masks,
        )
        .unwrap();
        assert_eq!(
            s.output,
            vec![
                OutputDim::Input(0),
                OutputDim::Input(1),
                OutputDim::NewAxis,
                OutputDim::Input(2)
            ]
        );
        assert_eq!(s.output_shape().to_string(), "[2,3,1,3]");
        assert_eq!((s.dims[2].begin, s.dims[2].end), (Some(1), Some(4)));
    }

    #[test]
    fn shrink_normalises_negative_indices() {
        let masks = StridedSliceMasks {
            shrink_axis: 1,
            ..m()
        };
        let s = slice_spec(&[Some(4)], Some(&[-1]), Some(&[0]), &[1], masks).unwrap();
        assert_eq!(
            (s.dims[0].begin, s.dims[0].end, s.dims[0].shrink),
            (Some(3), Some(4), true)
        );
        assert_eq!(s.output_shape().to_string(), "[]");
        assert!(slice_spec(&[Some(4)], Some(&[-5]), Some(&[0]), &[1], masks).is_err());
        // Extreme indices on unknown dims do not overflow.
        let s = slice_spec(&[None], Some(&[i64::MAX]), Some(&[0]), &[1], masks).unwrap();
        assert_eq!(s.dims[0].size, Some(1));
        let s = slice_spec(
            &[Some(3)],
            Some(&[i64::MIN]),
            Some(&[i64::MAX]),
            &[i64::MIN],
            m(),
        )
        .unwrap();
        assert_eq!(s.dims[0].size, Some(0));
    }
}
