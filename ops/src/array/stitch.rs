//! `DynamicStitch`: interleaves `data` tensors into one by their `indices`
//! (`merged[indices[m][i], ...] = data[m][i, ...]`).
//!
//! Gradient: each data tensor gets the gradient gathered at its indices.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::name;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("DynamicStitch")
            .input("indices: N * int32")
            .input("data: N * T")
            .output("merged: T")
            .attr("N: int >= 1")
            .attr("T: type")
            .shape_fn(dynamic_stitch_shape),
    )?;
    // Each data tensor gets the gradient at its indices (TensorFlow's rule).
    r.gradient("DynamicStitch", |c| {
        let n = c.inputs.len() / 2;
        let dy = c.dy(0)?;
        let mut out = vec![None; n];
        for m in 0..n {
            out.push(Some(c.b.gather(dy, c.x(m), 0)?));
        }
        Ok(out)
    })?;
    Ok(())
}

/// `[max index + 1] + data[m].shape[indices[m].rank:]`: every `data[m]` must start with
/// `indices[m]`'s shape and agree on the rest.
fn dynamic_stitch_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let n = cx.num_inputs() / 2;
    let mut rest = Shape::unknown();
    let mut max_index: Option<i64> = Some(-1);
    for m in 0..n {
        let (indices, data) = (cx.input(m)?, cx.input(m + n)?);
        match cx.input_ints(m)? {
            Some(v) => max_index = max_index.map(|x| v.iter().copied().fold(x, i64::max)),
            None => max_index = None,
        }
        let Some(idims) = indices.dims() else {
            continue;
        };
        let mismatch = || {
            cx.error(format!(
                "data '{}' with shape {data} must start with the shape {indices} of indices '{}' \
                 and agree with the other data on the remaining dims",
                name(cx, m + n),
                name(cx, m)
            ))
        };
        let Some(ddims) = data.dims() else { continue };
        if ddims.len() < idims.len() {
            return Err(mismatch());
        }
        Shape::from(ddims[..idims.len()].to_vec())
            .merge(&Shape::from(idims.to_vec()))
            .map_err(|_| mismatch())?;
        rest = rest
            .merge(&Shape::from(ddims[idims.len()..].to_vec()))
            .map_err(|_| mismatch())?;
    }
    let first = max_index.map_or(Dim::Unknown, |x| Dim::Known((x + 1).max(0) as usize));
    Ok(vec![match rest.dims() {
        Some(r) => Shape::from_dims(std::iter::once(first).chain(r.iter().copied())),
        None => Shape::unknown(),
    }])
}

impl Builder {
    /// `tf.dynamic_stitch`.
    pub fn dynamic_stitch(&self, indices: &[Output], data: &[Output]) -> Result<Output> {
        self.op("DynamicStitch")
            .input_list(indices)
            .input_list(data)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn a(n: i64) -> rill_graph::Attrs {
        attrs(&[("T", DType::F32.into()), ("N", n.into())])
    }

    #[test]
    fn shapes() {
        let v = [
            Some(Tensor::vector(vec![0i32, 2])),
            Some(Tensor::vector(vec![1i32, 5])),
        ];
        assert_eq!(
            infer_with_values("DynamicStitch", &a(2), "[2];[2];[2,3];[2,3]", &v).unwrap(),
            "[6,3]"
        );
        assert_eq!(
            infer("DynamicStitch", &a(2), "[2];[?];[2,3];[?,3]").unwrap(),
            "[?,3]"
        );
        assert_eq!(infer("DynamicStitch", &a(1), "?;[2,3]").unwrap(), "?");
        assert_eq!(infer("DynamicStitch", &a(1), "[];[3]").unwrap(), "[?,3]");
        let e = infer("DynamicStitch", &a(2), "[2];[2];[2,3];[2,4]").unwrap_err();
        assert!(
            e.message.contains("in3:0") && e.message.contains("[2,4]"),
            "{e}"
        );
        assert!(infer("DynamicStitch", &a(1), "[2];[3,3]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let i0 = b.index_const(&[0, 2]).unwrap();
        let i1 = b.index_const(&[1]).unwrap();
        let d0 = b.placeholder("d0", DType::F32, [2i64, 4]).unwrap();
        let d1 = b.placeholder("d1", DType::F32, [1i64, 4]).unwrap();
        let m = b.dynamic_stitch(&[i0, i1], &[d0, d1]).unwrap();
        assert_eq!(b.shape(m).to_string(), "[3,4]");
    }
}
