//! Splitting a tensor into pieces along an axis: `Split` (equal pieces) and `SplitV`
//! (given sizes, one of which may be -1).
//!
//! Gradients: the pieces' gradients concatenated back.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{name, scalar_input, vector_len};
use crate::gradient::GradContext;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Split")
            .input("split_dim: int32")
            .input("value: T")
            .output("output: num_split * T")
            .attr("num_split: int >= 1")
            .attr("T: type")
            .shape_fn(split_shape),
    )?;
    r.register(
        OpDef::build("SplitV")
            .input("value: T")
            .input("size_splits: Tlen")
            .input("split_dim: int32")
            .output("output: num_split * T")
            .attr("num_split: int >= 1")
            .attr("T: type")
            .attr("Tlen: {int8, int32, int64} = DT_INT64")
            .shape_fn(split_v_shape),
    )?;
    // The pieces' gradients (zeros for pieces without one) concatenated back.
    r.gradient("Split", |c| Ok(vec![None, Some(join(c, c.x(0))?)]))?;
    r.gradient("SplitV", |c| Ok(vec![Some(join(c, c.x(2))?), None, None]))?;
    Ok(())
}

/// The gradients of all outputs concatenated along `axis`.
fn join(c: &GradContext, axis: Output) -> Result<Output> {
    let grads = (0..c.outputs.len())
        .map(|i| c.dy(i))
        .collect::<Result<Vec<_>>>()?;
    match grads.as_slice() {
        [one] => Ok(*one),
        _ => c.b.concat_v2(&grads, axis),
    }
}

/// The split axis given by scalar input `axis_input`, canonical against `input`'s rank.
/// `None` when the axis or the rank is unknown.
fn split_axis(
    cx: &InferenceContext,
    axis_input: usize,
    value_input: usize,
) -> Result<Option<usize>> {
    cx.with_rank(axis_input, 0)?;
    let input = cx.input(value_input)?;
    let (Some(axis), Some(rank)) = (scalar_input(cx, axis_input)?, input.rank()) else {
        return Ok(None);
    };
    if rank == 0 {
        return Err(cx.error(format!(
            "cannot split '{}', a scalar",
            name(cx, value_input)
        )));
    }
    cx.canonical_axis(axis, rank).map(Some).map_err(|_| {
        cx.error(format!(
            "split axis {axis} given by '{}' is out of range for '{}' with shape {input}",
            name(cx, axis_input),
            name(cx, value_input)
        ))
    })
}

fn split_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let num = cx.num_outputs;
    let input = cx.input(1)?;
    let Some(axis) = split_axis(cx, 0, 1)? else {
        let s = input
            .rank()
            .map_or_else(Shape::unknown, Shape::unknown_dims);
        return Ok(vec![s; num]);
    };
    let mut dims = input.dims().unwrap_or_default().to_vec();
    if let Dim::Known(n) = dims[axis] {
        if num == 0 || n % num != 0 {
            return Err(cx.error(format!(
                "cannot split dimension {axis} of '{}' with shape {input} into {num} equal pieces",
                name(cx, 1)
            )));
        }
        dims[axis] = Dim::Known(n / num);
    }
    Ok(vec![Shape::from(dims); num])
}

fn split_v_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let num = cx.num_outputs;
    let input = cx.input(0)?;
    vector_len(cx, 1)?;
    let axis = split_axis(cx, 2, 0)?;
    let Some(dims) = input.dims() else {
        return Ok(vec![Shape::unknown(); num]);
    };
    let sizes = cx.input_ints(1)?;
    let Some(axis) = axis else {
        return Ok(vec![Shape::unknown_dims(dims.len()); num]);
    };
    let Some(sizes) = sizes else {
        let mut d = dims.to_vec();
        d[axis] = Dim::Unknown;
        return Ok(vec![Shape::from(d); num]);
    };
    let bad = |why: String| {
        cx.error(format!(
            "cannot split dimension {axis} of '{}' with shape {input} into pieces of sizes {sizes:?} given by '{}': {why}",
            name(cx, 0),
            name(cx, 1)
        ))
    };
    if sizes.len() != num {
        return Err(bad(format!("num_split is {num}")));
    }
    if sizes.iter().filter(|&&s| s == -1).count() > 1 {
        return Err(bad("only one size can be -1".into()));
    }
    if sizes.iter().any(|&s| s < -1) {
        return Err(bad("sizes must be >= -1".into()));
    }
    let total: i64 = sizes
        .iter()
        .filter(|&&s| s >= 0)
        .fold(0i64, |a, &s| a.saturating_add(s));
    let has_rest = sizes.contains(&-1);
    let axis_dim = dims[axis].known().map(|n| n as i64);
    if let Some(n) = axis_dim {
        if (has_rest && total > n) || (!has_rest && total != n) {
            return Err(bad(format!("they must add up to {n}")));
        }
    }
    let out = sizes
        .iter()
        .map(|&s| {
            let mut d = dims.to_vec();
            d[axis] = match (s, axis_dim) {
                (-1, Some(n)) => Dim::Known((n - total) as usize),
                (-1, None) => Dim::Unknown,
                (s, _) => Dim::Known(s as usize),
            };
            Shape::from(d)
        })
        .collect();
    Ok(out)
}

impl Builder {
    /// `tf.split` into `num_split` equal pieces along a constant `axis`.
    pub fn split(&self, x: Output, num_split: usize, axis: i64) -> Result<Vec<Output>> {
        let a = self.scalar_i32(i32::try_from(axis).map_err(|_| {
            rill_graph::Error::invalid_argument(format!("split axis {axis} does not fit in int32"))
        })?)?;
        self.op("Split")
            .input(a)
            .input(x)
            .attr("num_split", num_split as i64)
            .build_outputs()
    }

    /// `tf.split` into pieces of the given constant sizes (one may be -1) along `axis`.
    pub fn split_v(&self, x: Output, sizes: &[i64], axis: i64) -> Result<Vec<Output>> {
        let s = self.index_const(sizes)?;
        let a = self.scalar_i32(i32::try_from(axis).map_err(|_| {
            rill_graph::Error::invalid_argument(format!("split axis {axis} does not fit in int32"))
        })?)?;
        self.op("SplitV")
            .input(x)
            .input(s)
            .input(a)
            .attr("num_split", sizes.len() as i64)
            .build_outputs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn split(num: i64, axis: i32, input: &str) -> Result<String> {
        let a = attrs(&[("T", DType::F32.into()), ("num_split", num.into())]);
        infer_with_values(
            "Split",
            &a,
            &format!("[];{input}"),
            &[Some(Tensor::scalar(axis))],
        )
    }

    fn split_v(sizes: &[i32], axis: i32, input: &str) -> Result<String> {
        let a = attrs(&[
            ("T", DType::F32.into()),
            ("num_split", (sizes.len() as i64).into()),
            ("Tlen", DType::I32.into()),
        ]);
        let v = [
            None,
            Some(Tensor::vector(sizes.to_vec())),
            Some(Tensor::scalar(axis)),
        ];
        infer_with_values("SplitV", &a, &format!("{input};[{}];[]", sizes.len()), &v)
    }

    #[test]
    fn split_shapes() {
        assert_eq!(split(2, 1, "[3,4]").unwrap(), "[3,2];[3,2]");
        assert_eq!(split(3, -2, "[6,4]").unwrap(), "[2,4];[2,4];[2,4]");
        assert_eq!(split(2, 0, "[?,4]").unwrap(), "[?,4];[?,4]");
        assert_eq!(split(2, 0, "?").unwrap(), "?;?");
        let a = attrs(&[("T", DType::F32.into()), ("num_split", 2i64.into())]);
        assert_eq!(infer("Split", &a, "[];[2,3]").unwrap(), "[?,?];[?,?]");
        let e = split(3, 1, "[3,4]").unwrap_err();
        assert!(
            e.message.contains("in1:0") && e.message.contains("[3,4]"),
            "{e}"
        );
        assert!(split(2, 2, "[3,4]").is_err());
        assert!(split(2, 0, "[]").is_err());
    }

    #[test]
    fn split_v_shapes() {
        assert_eq!(split_v(&[1, 3], 1, "[2,4]").unwrap(), "[2,1];[2,3]");
        assert_eq!(split_v(&[1, -1], -1, "[2,4]").unwrap(), "[2,1];[2,3]");
        assert_eq!(split_v(&[1, -1], 0, "[?,4]").unwrap(), "[1,4];[?,4]");
        assert_eq!(split_v(&[1, 2], 0, "?").unwrap(), "?;?");
        assert!(split_v(&[1, 2], 1, "[2,4]").is_err());
        assert!(split_v(&[5, -1], 1, "[2,4]").is_err());
        assert!(split_v(&[-1, -1], 1, "[2,4]").is_err());
        let a = attrs(&[("T", DType::F32.into()), ("num_split", 2i64.into())]);
        assert_eq!(infer("SplitV", &a, "[2,4];[2];[]").unwrap(), "[?,?];[?,?]");
        let axis_only = [None, None, Some(Tensor::scalar(1i32))];
        assert_eq!(
            infer_with_values("SplitV", &a, "[2,4];[2];[]", &axis_only).unwrap(),
            "[2,?];[2,?]"
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 6]).unwrap();
        let parts = b.split(x, 3, 1).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(b.shape(parts[0]).to_string(), "[?,2]");
        let parts = b.split_v(x, &[1, -1], -1).unwrap();
        assert_eq!(b.shape(parts[1]).to_string(), "[?,5]");
        assert!(b.split(x, 4, 1).is_err());
    }
}
