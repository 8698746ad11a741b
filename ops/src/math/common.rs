//! Helpers shared by the math and nn families: TensorFlow's dtype sets spelled for op
//! specs (`numbertype` and friends, without the complex and quantized types Rill lacks),
//! shape algebra on partially known shapes (sub-shapes, concatenation, rank checks on
//! shapes that are not inputs, broadcasting with TensorFlow's `incompatible_shape_error`),
//! and the builder helper that adds small integer constants (axes, sizes).
//!
//! Invariant: every helper here reports a contradiction as InvalidArgument naming what it
//! is about; unknown information yields unknown dims or rank, never an error.

use rill_graph::{DType, Dim, InferenceContext, Output, Result, Shape, Tensor};

use crate::Builder;

/// TensorFlow's floating types (`{bfloat16, half, float, double}`).
pub(crate) const FLOAT: &str = "bfloat16, half, float, double";
/// Floating and signed integer types (TensorFlow's `UNARY()` set).
pub(crate) const SIGNED: &str = "bfloat16, half, float, double, int8, int16, int32, int64";
/// `numbertype` / `realnumbertype` restricted to the dtypes Rill has.
pub(crate) const NUMBER: &str =
    "bfloat16, half, float, double, int8, int16, int32, int64, uint8, uint16, uint32, uint64";
/// TensorFlow's `{int32, int64}` index types.
pub(crate) const INDEX: &str = "int32, int64";

/// `"{name}: {set}"` — an attr spec allowing the dtypes in `set`.
pub(crate) fn type_attr(name: &str, set: &str) -> String {
    format!("{name}: {{{set}}}")
}

/// `"{name}: {set} = {default}"`.
pub(crate) fn type_attr_default(name: &str, set: &str, default: &str) -> String {
    format!("{name}: {{{set}}} = {default}")
}

/// Dims `start..end` of `s` (negative positions count from the end); unknown when the rank
/// is unknown. The rank must already be known to cover the range.
pub(crate) fn subshape(s: &Shape, start: i64, end: Option<i64>) -> Shape {
    let Some(dims) = s.dims() else {
        return Shape::unknown();
    };
    let n = dims.len() as i64;
    let fix = |i: i64| (if i < 0 { i + n } else { i }).clamp(0, n) as usize;
    let (a, b) = (fix(start), fix(end.unwrap_or(n)));
    Shape::from_dims(dims[a..b.max(a)].iter().copied())
}

/// `a` followed by `b`; unknown when either rank is unknown.
pub(crate) fn concat_shapes(a: &Shape, b: &Shape) -> Shape {
    match (a.dims(), b.dims()) {
        (Some(x), Some(y)) => Shape::from_dims(x.iter().chain(y).copied()),
        _ => Shape::unknown(),
    }
}

/// `s` with dim `i` replaced by `d` (unchanged when the rank is unknown).
pub(crate) fn replace_dim(s: &Shape, i: usize, d: Dim) -> Shape {
    match s.dims() {
        Some(dims) => Shape::from_dims(
            dims.iter()
                .enumerate()
                .map(|(j, &x)| if j == i { d } else { x }),
        ),
        None => s.clone(),
    }
}

/// A shape that must have rank `rank`; `what` names it in the error (e.g. "the shape given
/// by 'sizes:0'").
pub(crate) fn shape_with_rank(
    cx: &InferenceContext,
    s: &Shape,
    rank: usize,
    what: &str,
) -> Result<Shape> {
    match s.rank() {
        None => Ok(Shape::unknown_dims(rank)),
        Some(r) if r == rank => Ok(s.clone()),
        Some(r) => Err(cx.error(format!(
            "{what} must have rank {rank}, but is {s} (rank {r})"
        ))),
    }
}

/// Input `i`, which must have rank at most `rank`.
pub(crate) fn with_rank_at_most(cx: &InferenceContext, i: usize, rank: usize) -> Result<Shape> {
    let s = cx.input(i)?;
    match s.rank() {
        Some(r) if r > rank => Err(cx.error(format!(
            "input '{}' must have rank at most {rank}, but its shape is {s}",
            cx.input_names[i]
        ))),
        _ => Ok(s.clone()),
    }
}

/// Merges dim `a` of input `i` with dim `b` of input `j` (which must be equal), or an
/// error naming both inputs, their shapes and `what` the dims are.
pub(crate) fn merge_input_dims(
    cx: &InferenceContext,
    i: usize,
    a: Dim,
    j: usize,
    b: Dim,
    what: &str,
) -> Result<Dim> {
    a.merge(b).ok_or_else(|| {
        cx.error(format!(
            "{what} must match: '{}' has shape {} and '{}' has shape {} ({a} vs {b})",
            cx.input_names[i], cx.input_shapes[i], cx.input_names[j], cx.input_shapes[j]
        ))
    })
}

/// TensorFlow's `BroadcastBinaryOpOutputShapeFnHelper`: the broadcast of `a` and `b`.
/// With `incompatible_shape_error == false`, known incompatible dims give a scalar and a
/// dim that might not broadcast gives an unknown shape instead of an error (`None`).
pub(crate) fn broadcast_shapes(
    a: &Shape,
    b: &Shape,
    incompatible_shape_error: bool,
) -> Option<Shape> {
    let (Some(x), Some(y)) = (a.dims(), b.dims()) else {
        return Some(Shape::unknown());
    };
    let rank = x.len().max(y.len());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let dx = if i + x.len() >= rank {
            x[i + x.len() - rank]
        } else {
            Dim::Known(1)
        };
        let dy = if i + y.len() >= rank {
            y[i + y.len() - rank]
        } else {
            Dim::Known(1)
        };
        let d = match (dx, dy) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d,
            (Dim::Known(p), Dim::Known(q)) if p == q => Dim::Known(p),
            (Dim::Known(_), Dim::Known(_)) => {
                return (!incompatible_shape_error).then(Shape::scalar);
            }
            (Dim::Known(p), Dim::Unknown) | (Dim::Unknown, Dim::Known(p)) => {
                if !incompatible_shape_error {
                    return Some(Shape::unknown());
                }
                Dim::Known(p)
            }
            (Dim::Unknown, Dim::Unknown) => {
                if !incompatible_shape_error {
                    return Some(Shape::unknown());
                }
                Dim::Unknown
            }
        };
        out.push(d);
    }
    Some(Shape::from_dims(out))
}

/// The broadcast of two shapes that are not both plain inputs, with an error naming them.
pub(crate) fn broadcast_named(
    cx: &InferenceContext,
    a: &Shape,
    a_name: &str,
    b: &Shape,
    b_name: &str,
) -> Result<Shape> {
    broadcast_shapes(a, b, true).ok_or_else(|| {
        cx.error(format!(
            "incompatible shapes for broadcasting: {a_name} has shape {a} and {b_name} has shape {b}"
        ))
    })
}

/// TensorFlow's `MakeDimForScalarInput`: the value of scalar input `i` as a dim (unknown
/// when it is not a constant); negative values are an error.
pub(crate) fn scalar_input_dim(cx: &InferenceContext, i: usize) -> Result<Dim> {
    cx.with_rank(i, 0)?;
    match cx.input_ints(i)?.as_deref() {
        Some([v]) if *v < 0 => Err(cx.error(format!(
            "the size given by scalar input '{}' must be non-negative, but is {v}",
            cx.input_names[i]
        ))),
        Some([v]) => Ok(Dim::Known(*v as usize)),
        _ => Ok(Dim::Unknown),
    }
}

impl Builder {
    /// A `Const` int32 vector (axes, sizes) for an op built by this family.
    pub(crate) fn int32_vector_const(&self, values: &[i64]) -> Result<Output> {
        let values = values
            .iter()
            .map(|&v| {
                i32::try_from(v).map_err(|_| {
                    rill_graph::Error::invalid_argument(format!(
                        "{v} does not fit in an int32 constant"
                    ))
                })
            })
            .collect::<Result<Vec<i32>>>()?;
        self.op("Const")
            .attr("value", Tensor::vector(values))
            .attr("dtype", DType::I32)
            .build_output()
    }

    /// A `Const` int32 scalar (an axis, `k`) for an op built by this family.
    pub(crate) fn int32_scalar_const(&self, value: i64) -> Result<Output> {
        let v = i32::try_from(value).map_err(|_| {
            rill_graph::Error::invalid_argument(format!(
                "{value} does not fit in an int32 constant"
            ))
        })?;
        self.op("Const")
            .attr("value", Tensor::scalar(v))
            .attr("dtype", DType::I32)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Shape {
        Shape::parse(t).unwrap()
    }

    #[test]
    fn shape_algebra() {
        assert_eq!(subshape(&s("[1,2,3,4]"), 0, Some(-2)), s("[1,2]"));
        assert_eq!(subshape(&s("[1,2,3,4]"), 1, None), s("[2,3,4]"));
        assert_eq!(subshape(&s("[1]"), 0, Some(-2)), s("[]"));
        assert_eq!(subshape(&s("?"), 0, Some(-2)), s("?"));
        assert_eq!(concat_shapes(&s("[1]"), &s("[2,?]")), s("[1,2,?]"));
        assert_eq!(concat_shapes(&s("?"), &s("[2]")), s("?"));
        assert_eq!(replace_dim(&s("[1,2]"), 1, Dim::Known(5)), s("[1,5]"));
    }

    #[test]
    fn broadcasting_with_and_without_errors() {
        assert_eq!(
            broadcast_shapes(&s("[2,1,4]"), &s("[3,1]"), true),
            Some(s("[2,3,4]"))
        );
        assert_eq!(
            broadcast_shapes(&s("[?,4]"), &s("[4]"), true),
            Some(s("[?,4]"))
        );
        assert_eq!(broadcast_shapes(&s("[2]"), &s("[3]"), true), None);
        assert_eq!(broadcast_shapes(&s("[2]"), &s("[3]"), false), Some(s("[]")));
        assert_eq!(broadcast_shapes(&s("[?]"), &s("[3]"), false), Some(s("?")));
        assert_eq!(
            broadcast_shapes(&s("[1]"), &s("[3]"), false),
            Some(s("[3]"))
        );
        assert_eq!(broadcast_shapes(&s("?"), &s("[3]"), true), Some(s("?")));
    }
}
