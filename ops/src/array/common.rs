//! Shape helpers shared by the array, state and control families, beyond what
//! `InferenceContext` offers: dim arithmetic, sub-shapes, constant scalar inputs, merging
//! many inputs, shape vectors known at graph time, and TensorFlow's dtype sets.

use rill_graph::{Dim, InferenceContext, Output, Result, Shape, Tensor};

use crate::Builder;

/// TensorFlow's `numbertype`, restricted to the dtypes Rill has (no complex or quantized).
pub(crate) const NUMBER_TYPES: &str =
    "bfloat16, half, float, double, int8, int16, int32, int64, uint8, uint16, uint32, uint64";

/// `input_names[i]`, or `?` for an input the context does not know.
pub(crate) fn name<'a>(cx: &'a InferenceContext, i: usize) -> &'a str {
    cx.input_names.get(i).map_or("?", String::as_str)
}

/// A dim as TensorFlow's `int64` (`None` when unknown).
pub(crate) fn dim_value(d: Dim) -> Option<i64> {
    d.known().map(|n| n as i64)
}

/// The sum of two dims (unknown if either is).
pub(crate) fn add_dims(a: Dim, b: Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(x.saturating_add(y)),
        _ => Dim::Unknown,
    }
}

/// The product of two dims; a known 0 wins over an unknown, a known 1 keeps the other.
pub(crate) fn mul_dims(a: Dim, b: Dim) -> Dim {
    match (a, b) {
        (Dim::Known(0), _) | (_, Dim::Known(0)) => Dim::Known(0),
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d,
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(x.saturating_mul(y)),
        _ => Dim::Unknown,
    }
}

/// A rank-1 shape of length `d`.
pub(crate) fn vector(d: impl Into<Dim>) -> Shape {
    Shape::from_dims([d.into()])
}

/// `dims[start..end]` of a known-rank shape as a new shape.
pub(crate) fn sub_dims(dims: &[Dim], start: usize, end: usize) -> Vec<Dim> {
    dims.get(start..end.min(dims.len()))
        .map_or_else(Vec::new, <[Dim]>::to_vec)
}

/// Input `i`'s constant value, which must hold exactly one integer (an axis, a depth).
pub(crate) fn scalar_input(cx: &InferenceContext, i: usize) -> Result<Option<i64>> {
    match cx.input_ints(i)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(v) => Err(cx.error(format!(
            "input '{}' must be a single value, got {} values (shape {})",
            name(cx, i),
            v.len(),
            cx.input(i)?
        ))),
    }
}

/// Merges the shapes of `inputs`, which must all be compatible; the error names the first
/// input and the one that disagrees.
pub(crate) fn merge_all(
    cx: &InferenceContext,
    inputs: impl IntoIterator<Item = usize>,
) -> Result<Shape> {
    let mut merged: Option<(usize, Shape)> = None;
    for i in inputs {
        let s = cx.input(i)?;
        merged = Some(match merged {
            None => (i, s.clone()),
            Some((first, m)) => {
                let next = m.merge(s).map_err(|_| {
                    cx.error(format!(
                        "shapes must be equal: '{}' has shape {} but '{}' has shape {s}",
                        name(cx, first),
                        cx.input(first)
                            .map_or_else(|_| "?".to_string(), ToString::to_string),
                        name(cx, i)
                    ))
                })?;
                (first, next)
            }
        });
    }
    Ok(merged.map_or_else(Shape::unknown, |(_, s)| s))
}

/// The integer values of a shape-like vector input when fully known at graph time: a
/// constant, or the output of a `Shape` op whose input shape is fully defined.
pub(crate) fn known_shape_vector(cx: &InferenceContext, i: usize) -> Result<Option<Vec<i64>>> {
    if let Some(v) = cx.input_ints(i)? {
        return Ok(Some(v));
    }
    Ok(cx
        .input_shape_values
        .get(i)
        .and_then(Option::as_ref)
        .and_then(Shape::to_known)
        .map(|d| d.into_iter().map(|n| n as i64).collect()))
}

/// Input `i` must be a scalar (rank 0 or unknown).
pub(crate) fn check_scalar(cx: &InferenceContext, i: usize) -> Result<()> {
    cx.with_rank(i, 0).map(drop)
}

/// Input `i` must be a vector; returns its length.
pub(crate) fn vector_len(cx: &InferenceContext, i: usize) -> Result<Dim> {
    Ok(cx.with_rank(i, 1)?.dim(0))
}

/// Input `i`'s constant value as `f64`s, for real-valued scalars (Range's bounds).
pub(crate) fn input_f64s(cx: &InferenceContext, i: usize) -> Option<Vec<f64>> {
    tensor_f64s(cx.input_value(i)?)
}

fn tensor_f64s(t: &Tensor) -> Option<Vec<f64>> {
    use rill_graph::Buffer;
    Some(match t.buffer() {
        Buffer::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Buffer::F64(v) => v.clone(),
        Buffer::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        Buffer::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        _ => t.to_i64_vec().ok()?.into_iter().map(|x| x as f64).collect(),
    })
}

/// Whether every value fits in an `int32`.
fn fits_i32(values: &[i64]) -> bool {
    values.iter().all(|&v| i32::try_from(v).is_ok())
}

impl Builder {
    /// A constant integer vector for shapes, axes and indices: `int32` when every value
    /// fits (as TensorFlow's Python API makes them), `int64` otherwise.
    pub fn index_const(&self, values: &[i64]) -> Result<Output> {
        let t = if fits_i32(values) {
            Tensor::vector(values.iter().map(|&v| v as i32).collect::<Vec<_>>())
        } else {
            Tensor::vector(values.to_vec())
        };
        self.constant(t)
    }

    /// A constant integer scalar (an axis, a depth): `int32` when it fits, else `int64`.
    pub fn index_scalar(&self, value: i64) -> Result<Output> {
        let t = match i32::try_from(value) {
            Ok(v) => Tensor::scalar(v),
            Err(_) => Tensor::scalar(value),
        };
        self.constant(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dim_arithmetic() {
        assert_eq!(add_dims(Dim::Known(2), Dim::Known(3)), Dim::Known(5));
        assert_eq!(add_dims(Dim::Known(2), Dim::Unknown), Dim::Unknown);
        assert_eq!(mul_dims(Dim::Known(0), Dim::Unknown), Dim::Known(0));
        assert_eq!(mul_dims(Dim::Known(1), Dim::Unknown), Dim::Unknown);
        assert_eq!(mul_dims(Dim::Known(4), Dim::Known(3)), Dim::Known(12));
        assert_eq!(
            sub_dims(&[Dim::Known(1), Dim::Known(2)], 1, 5),
            vec![Dim::Known(2)]
        );
        assert!(sub_dims(&[Dim::Known(1)], 3, 5).is_empty());
    }

    #[test]
    fn index_constants() {
        let b = Builder::new();
        let small = b.index_const(&[1, -1]).unwrap();
        assert_eq!(b.dtype(small), rill_graph::DType::I32);
        let big = b.index_const(&[1 << 40]).unwrap();
        assert_eq!(b.dtype(big), rill_graph::DType::I64);
        let s = b.index_scalar(3).unwrap();
        assert_eq!(b.shape(s).to_string(), "[]");
    }
}
