//! `StridedSlice` and `StridedSliceGrad`: Python-style indexing (`x[1:-1:2, ..., tf.newaxis,
//! 3]`) with the five masks, ported from TensorFlow's `ValidateStridedSliceOp`.
//!
//! The sparse spec (one entry per index expression) is expanded into a dense spec (one
//! entry per input dim: the ellipsis covers the dims nobody names, new axes take no input
//! dim), then each dense dim's begin/end are canonicalised — masked ends become the full
//! range in the stride's direction, negative indices count from the end, out-of-range
//! values are clamped — and shrunk dims are bounds-checked (InvalidArgument, never a
//! clamp). The processing shape is what the strided copy produces; the final shape drops
//! shrunk dims and inserts new axes.
//!
//! Invariants: messages are TensorFlow's; an identity slice shares the input's buffer; the
//! copy is one pass of the strided engine.

use rill_graph::{Error, Node, Result, Tensor};

use super::strided::{gather_tensor, scatter, signed_strides};
use super::util::{attr_int, dims_from, filled, int_vector, kernel, shape_str, take, with_dtype};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("StridedSlice", strided_slice);
    r.cpu("StridedSliceGrad", strided_slice_grad);
}

/// The five mask attrs, as bit sets over the sparse spec.
#[derive(Clone, Copy, Default)]
pub(super) struct Masks {
    pub begin: u64,
    pub end: u64,
    pub ellipsis: u64,
    pub new_axis: u64,
    pub shrink_axis: u64,
}

impl Masks {
    fn from_node(node: &Node) -> Result<Masks> {
        let m = |name: &str| attr_int(node, name, Some(0)).map(|v| v as u64);
        Ok(Masks {
            begin: m("begin_mask")?,
            end: m("end_mask")?,
            ellipsis: m("ellipsis_mask")?,
            new_axis: m("new_axis_mask")?,
            shrink_axis: m("shrink_axis_mask")?,
        })
    }
}

/// A resolved slice: per input dim the canonical begin and stride and the processing size.
#[derive(Debug, PartialEq)]
pub(super) struct Spec {
    pub begin: Vec<i64>,
    pub strides: Vec<i64>,
    pub processing: Vec<usize>,
    pub final_dims: Vec<usize>,
    pub is_identity: bool,
}

enum Gather {
    Dense(usize),
    NewAxis,
    Shrink,
}

fn bit(mask: u64, i: usize) -> bool {
    i < 64 && mask & (1u64 << i) != 0
}

/// Checks the begin/end/strides tensors' shapes and reads them.
fn read_spec(begin: &Tensor, end: &Tensor, strides: &Tensor) -> Result<[Vec<i64>; 3]> {
    let ok = |t: &Tensor| {
        t.rank() == 1 && t.num_elements() == strides.num_elements() && t.num_elements() < 32
    };
    if !ok(begin) || !ok(end) || strides.rank() != 1 {
        return Err(Error::invalid_argument(format!(
            "Expected begin, end, and strides to be 1D equal size tensors, but got shapes {}, {}, and {} instead.",
            shape_str(begin.dims()),
            shape_str(end.dims()),
            shape_str(strides.dims())
        )));
    }
    Ok([
        begin.to_i64_vec()?,
        end.to_i64_vec()?,
        strides.to_i64_vec()?,
    ])
}

/// TensorFlow's `ValidateStridedSliceOp` for fully known `dims` and known begin/end.
pub(super) fn validate(
    dims: &[usize],
    sb: &[i64],
    se: &[i64],
    ss: &[i64],
    m: Masks,
) -> Result<Spec> {
    if m.ellipsis != 0 && m.ellipsis & (m.ellipsis - 1) != 0 {
        return Err(Error::invalid_argument(
            "Multiple ellipses in slice spec not allowed",
        ));
    }
    // Step 1: count new axes after the ellipsis; add an implicit ellipsis at the end.
    let mut sparse_dims = ss.len();
    let mut ellipsis = m.ellipsis;
    let mut add_after_ellipsis = 0i64;
    let mut seen = false;
    for i in 0..sparse_dims {
        if seen && bit(m.new_axis, i) {
            add_after_ellipsis += 1;
        }
        if bit(ellipsis, i) {
            seen = true;
        }
    }
    if !seen {
        ellipsis |= 1u64 << sparse_dims;
        sparse_dims += 1;
    }
    // Step 2: the dense spec.
    let rank = dims.len();
    let mut begin = vec![0i64; rank];
    let mut end = vec![0i64; rank];
    let mut strides = vec![0i64; rank];
    let mut begin_mask = vec![false; rank];
    let mut end_mask = vec![false; rank];
    let mut shrink = vec![false; rank];
    let mut gather = Vec::new();
    let mut full = 0usize;
    for i in 0..sparse_dims {
        if bit(ellipsis, i) {
            let next =
                (rank as i64 - (sparse_dims - i) as i64 + 1 + add_after_ellipsis).min(rank as i64);
            while (full as i64) < next {
                strides[full] = 1;
                begin_mask[full] = true;
                end_mask[full] = true;
                gather.push(Gather::Dense(full));
                full += 1;
            }
        } else if bit(m.new_axis, i) {
            gather.push(Gather::NewAxis);
        } else {
            if full == rank {
                if rank == 0 {
                    return Err(Error::invalid_argument("Attempting to slice scalar input."));
                }
                return Err(Error::invalid_argument(format!(
                    "Index out of range using input dim {full}; input has only {rank} dims"
                )));
            }
            begin[full] = sb[i];
            end[full] = se[i];
            strides[full] = ss[i];
            begin_mask[full] = bit(m.begin, i);
            end_mask[full] = bit(m.end, i);
            if bit(m.shrink_axis, i) {
                gather.push(Gather::Shrink);
                shrink[full] = true;
            } else {
                gather.push(Gather::Dense(full));
            }
            full += 1;
        }
    }
    // Step 3: canonical ranges, bounds checks and the processing shape.
    let mut is_identity = true;
    let mut processing = Vec::with_capacity(rank);
    for i in 0..rank {
        let stride = strides[i];
        let dim = dims[i] as i64;
        if stride == 0 {
            return Err(Error::invalid_argument(format!(
                "strides[{i}] must be non-zero"
            )));
        }
        if shrink[i] && stride <= 0 {
            return Err(Error::invalid_argument(
                "only stride 1 allowed on non-range indexing.",
            ));
        }
        let masks = [begin_mask[i], end_mask[i]];
        let valid = if stride > 0 { [0, dim] } else { [-1, dim - 1] };
        let canonical = |x: i64, c: usize| -> i64 {
            if masks[c] {
                if stride > 0 {
                    valid[c]
                } else {
                    valid[(c + 1) & 1]
                }
            } else {
                let fwd = if x < 0 { dim.saturating_add(x) } else { x };
                fwd.clamp(valid[0], valid[1])
            }
        };
        if shrink[i] {
            let fwd = if begin[i] < 0 {
                dim.saturating_add(begin[i])
            } else {
                begin[i]
            };
            if fwd < 0 || fwd >= dim {
                return Err(Error::invalid_argument(format!(
                    "slice index {fwd} of dimension {i} out of bounds."
                )));
            }
            begin[i] = fwd;
            end[i] = fwd + 1;
        } else {
            begin[i] = canonical(begin[i], 0);
            end[i] = canonical(end[i], 1);
        }
        is_identity &= stride == 1 && begin[i] == 0 && end[i] == dim;
        let interval = end[i] - begin[i];
        let size = if interval == 0 || ((interval < 0) != (stride < 0)) {
            0
        } else {
            interval / stride + i64::from(interval % stride != 0)
        };
        processing.push(size as usize);
    }
    // Step 4: the final shape.
    let final_dims = gather
        .iter()
        .filter_map(|g| match g {
            Gather::Dense(k) => Some(processing[*k]),
            Gather::NewAxis => Some(1),
            Gather::Shrink => None,
        })
        .collect();
    Ok(Spec {
        begin,
        strides,
        processing,
        final_dims,
        is_identity,
    })
}

/// The view of an input of `dims` that `spec` reads: element offset and signed strides.
/// Only meaningful when the processing shape has no zero dim.
fn view(dims: &[usize], spec: &Spec) -> (usize, Vec<isize>) {
    let in_strides = signed_strides(dims);
    let offset: i64 = spec
        .begin
        .iter()
        .zip(&in_strides)
        .map(|(&b, &s)| b * s as i64)
        .sum();
    let strides = spec
        .strides
        .iter()
        .zip(&in_strides)
        .map(|(&st, &s)| st as isize * s)
        .collect();
    (offset.max(0) as usize, strides)
}

fn strided_slice(node: &Node) -> Result<Box<dyn Kernel>> {
    let masks = Masks::from_node(node)?;
    kernel(move |inputs| {
        let [x, begin, end, strides] = take(inputs)?;
        let [b, e, s] = read_spec(&begin, &end, &strides)?;
        let spec = validate(x.dims(), &b, &e, &s, masks)?;
        if spec.is_identity {
            return Ok(vec![x.reshape(&spec.final_dims)?]);
        }
        if spec.processing.contains(&0) {
            return Ok(vec![Tensor::zeros(x.dtype(), &spec.final_dims)?]);
        }
        let (offset, view_strides) = view(x.dims(), &spec);
        let out = gather_tensor(&x, offset, &spec.processing, &view_strides)?;
        Ok(vec![out.reshape(&spec.final_dims)?])
    })
}

fn strided_slice_grad(node: &Node) -> Result<Box<dyn Kernel>> {
    let masks = Masks::from_node(node)?;
    kernel(move |inputs| {
        let [shape, begin, end, strides, dy] = take(inputs)?;
        let dims = dims_from(&int_vector(&shape, "shape")?, "StridedSliceGrad shape")?;
        let [b, e, s] = read_spec(&begin, &end, &strides)?;
        let spec = validate(&dims, &b, &e, &s, masks)?;
        if dy.dims() != spec.final_dims.as_slice() {
            return Err(Error::invalid_argument(format!(
                "shape of dy was {} instead of {}",
                shape_str(dy.dims()),
                shape_str(&spec.final_dims)
            )));
        }
        if spec.is_identity {
            return Ok(vec![dy.reshape(&dims)?]);
        }
        let n = rill_graph::element_count(&dims)?;
        let (offset, view_strides) = view(&dims, &spec);
        with_dtype!(dy.dtype(), T => {
            let mut out = filled(n, <T>::default())?;
            if !spec.processing.contains(&0) {
                scatter(&mut out, offset, &spec.processing, &view_strides, dy.as_slice::<T>()?);
            }
            Ok(vec![Tensor::new(&dims, out)?])
        })
    })
}

#[cfg(test)]
#[path = "strided_slice_tests.rs"]
mod tests;
