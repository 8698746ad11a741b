//! `Slice`: a contiguous block of a tensor given by `begin` and `size` (-1: to the end).
//!
//! Gradient: `dy` padded with zeros back to the input's shape.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{dim_value, name, vector_len};
use crate::gradient::GradContext;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Slice")
            .input("input: T")
            .input("begin: Index")
            .input("size: Index")
            .output("output: T")
            .attr("T: type")
            .attr("Index: {int32, int64}")
            .shape_fn(slice_shape),
    )?;
    r.gradient("Slice", slice_grad)?;
    Ok(())
}

/// `Slice`: `dy` padded with zeros back to the input's shape (TensorFlow's rule).
fn slice_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, begin) = (c.x(0), c.x(1));
    let dtype = c.dtype(begin);
    let after = b.sub(
        b.sub(b.shape_of_as(x, dtype)?, b.shape_of_as(c.y(0), dtype)?)?,
        begin,
    )?;
    let column = |v: Output| b.reshape_to(v, &[-1, 1]);
    let paddings = b.concat(&[column(begin)?, column(after)?], 1)?;
    Ok(vec![Some(b.pad(c.dy(0)?, paddings)?), None, None])
}

fn slice_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let n = vector_len(cx, 1)?
        .merge(vector_len(cx, 2)?)
        .ok_or_else(|| {
            cx.error(format!(
                "begin '{}' has shape {} but size '{}' has shape {}; they must have the same length",
                name(cx, 1),
                cx.input_shapes[1],
                name(cx, 2),
                cx.input_shapes[2]
            ))
        })?;
    let rank = match (input.rank(), n.known()) {
        (Some(r), Some(n)) if r != n => {
            return Err(cx.error(format!(
                "begin and size have {n} entries but '{}' has shape {input} (rank {r})",
                name(cx, 0)
            )))
        }
        (r, n) => r.or(n),
    };
    let begin = cx.input_ints(1)?;
    let size = cx.input_ints(2)?;
    let Some(rank) = rank else {
        return Ok(vec![Shape::unknown()]);
    };
    if let Some(v) = [&begin, &size]
        .into_iter()
        .flatten()
        .find(|v| v.len() != rank)
    {
        return Err(cx.error(format!(
            "begin and size must have {rank} entries for '{}' with shape {input}, got {v:?}",
            name(cx, 0)
        )));
    }
    let Some(size) = size else {
        // Sizes not known as a constant: they may still come from a Shape op.
        let s = cx.input_as_shape(2)?;
        return Ok(vec![if s.rank() == Some(rank) {
            s
        } else {
            Shape::unknown_dims(rank)
        }]);
    };
    let out = (0..rank)
        .map(|i| {
            let dim = dim_value(input.dim(i as i64));
            let b = begin.as_ref().map(|b| b[i]);
            let s = size[i];
            let bad = |why: &str| {
                cx.error(format!(
                    "cannot slice dimension {i} of '{}' with shape {input}: begin {} and size {s} {why}",
                    name(cx, 0),
                    b.map_or_else(|| "?".to_string(), |b| b.to_string()),
                ))
            };
            if s < -1 {
                return Err(bad("(size must be >= -1)"));
            }
            if b.is_some_and(|b| b < 0) {
                return Err(bad("(begin must be >= 0)"));
            }
            if let (Some(d), Some(b)) = (dim, b) {
                if b > d || (s >= 0 && b.saturating_add(s) > d) {
                    return Err(bad("run past its end"));
                }
            }
            Ok(match (s, dim, b) {
                (-1, Some(d), Some(b)) => Dim::Known((d - b) as usize),
                (-1, _, _) => Dim::Unknown,
                (s, _, _) => Dim::Known(s as usize),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(vec![Shape::from(out)])
}

impl Builder {
    /// `tf.slice` with `begin` and `size` int vectors.
    pub fn slice(&self, x: Output, begin: Output, size: Output) -> Result<Output> {
        self.op("Slice")
            .input(x)
            .input(begin)
            .input(size)
            .build_output()
    }

    /// `tf.slice` with constant `begin` and `size` (a size of -1 takes the rest).
    pub fn slice_const(&self, x: Output, begin: &[i64], size: &[i64]) -> Result<Output> {
        let wide = !begin.iter().chain(size).all(|&v| i32::try_from(v).is_ok());
        let (b, s) = if wide {
            (
                self.vector_const(begin.to_vec())?,
                self.vector_const(size.to_vec())?,
            )
        } else {
            (self.index_const(begin)?, self.index_const(size)?)
        };
        self.slice(x, b, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn a() -> rill_graph::Attrs {
        attrs(&[("T", DType::F32.into()), ("Index", DType::I32.into())])
    }

    fn slice(
        input: &str,
        begin: Option<Vec<i32>>,
        size: Option<Vec<i32>>,
        n: usize,
    ) -> Result<String> {
        let v = [None, begin.map(Tensor::vector), size.map(Tensor::vector)];
        infer_with_values("Slice", &a(), &format!("{input};[{n}];[{n}]"), &v)
    }

    #[test]
    fn constant_begin_and_size() {
        assert_eq!(
            slice("[4,5]", Some(vec![1, 2]), Some(vec![2, -1]), 2).unwrap(),
            "[2,3]"
        );
        assert_eq!(
            slice("[?,5]", Some(vec![1, 0]), Some(vec![-1, 5]), 2).unwrap(),
            "[?,5]"
        );
        assert_eq!(
            slice("?", Some(vec![1, 0]), Some(vec![2, 3]), 2).unwrap(),
            "[2,3]"
        );
        assert_eq!(slice("[4,5]", None, Some(vec![2, -1]), 2).unwrap(), "[2,?]");
        assert_eq!(slice("[4,5]", Some(vec![0, 0]), None, 2).unwrap(), "[?,?]");
        assert_eq!(
            slice("[4,5]", Some(vec![4, 5]), Some(vec![0, -1]), 2).unwrap(),
            "[0,0]"
        );
    }

    #[test]
    fn errors() {
        let e = slice("[4,5]", Some(vec![3, 0]), Some(vec![2, 5]), 2).unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[4,5]"),
            "{e}"
        );
        assert!(slice("[4,5]", Some(vec![0, 0]), Some(vec![-2, 5]), 2).is_err());
        assert!(slice("[4,5]", Some(vec![-1, 0]), Some(vec![1, 5]), 2).is_err());
        assert!(slice("[4,5,6]", Some(vec![0, 0]), Some(vec![1, 1]), 2).is_err());
        assert!(infer("Slice", &a(), "[4,5];[2];[3]").is_err());
        assert!(infer("Slice", &a(), "[4,5];[2,1];[2]").is_err());
    }

    #[test]
    fn unknown_values() {
        assert_eq!(infer("Slice", &a(), "[4,5];[2];[2]").unwrap(), "[?,?]");
        assert_eq!(infer("Slice", &a(), "?;[?];[?]").unwrap(), "?");
        assert_eq!(infer("Slice", &a(), "?;[3];[?]").unwrap(), "[?,?,?]");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3, 4]).unwrap();
        let s = b.slice_const(x, &[0, 1, 0], &[-1, 2, -1]).unwrap();
        assert_eq!(b.shape(s).to_string(), "[?,2,4]");
        assert_eq!(b.dtype(b.graph().node(s.node).inputs[1]), DType::I32);
        let s = b.slice_const(x, &[0, 0, 0], &[1, 1, 1 << 40]);
        assert!(s.is_err());
    }
}
