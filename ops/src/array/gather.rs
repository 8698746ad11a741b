//! Indexed reads and writes: `Gather`, `GatherV2` (with axis and batch dims), `GatherNd`
//! and `ScatterNd`.
//!
//! Gradients: gathers scatter (add) `dy` back with `ScatterNd`, which is `GatherNd`'s
//! gradient and has `GatherNd` as its own.

use rill_graph::{Code, DType, Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{check_scalar, name, scalar_input, sub_dims, vector_len};
use crate::gradient::GradContext;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Gather")
            .input("params: Tparams")
            .input("indices: Tindices")
            .output("output: Tparams")
            .attr("validate_indices: bool = true")
            .attr("Tparams: type")
            .attr("Tindices: {int32, int64}")
            .shape_fn(gather_v1_shape),
    )?;
    r.register(
        OpDef::build("GatherV2")
            .input("params: Tparams")
            .input("indices: Tindices")
            .input("axis: Taxis")
            .output("output: Tparams")
            .attr("batch_dims: int = 0")
            .attr("Tparams: type")
            .attr("Tindices: {int16, int32, int64}")
            .attr("Taxis: {int32, int64}")
            .shape_fn(gather_v2_shape),
    )?;
    r.register(
        OpDef::build("GatherNd")
            .input("params: Tparams")
            .input("indices: Tindices")
            .output("output: Tparams")
            .attr("Tparams: type")
            .attr("Tindices: {int16, int32, int64}")
            .attr("bad_indices_policy: string = ''")
            .shape_fn(gather_nd_shape),
    )?;
    r.register(
        OpDef::build("ScatterNd")
            .input("indices: Tindices")
            .input("updates: T")
            .input("shape: Tindices")
            .output("output: T")
            .attr("T: type")
            .attr("Tindices: {int16, int32, int64}")
            .attr("bad_indices_policy: string = ''")
            .shape_fn(scatter_nd_shape),
    )?;
    r.gradient("Gather", |c| Ok(vec![Some(gather_grad(c, 0)?), None]))?;
    r.gradient("GatherV2", |c| {
        if c.attr_int("batch_dims")? != 0 {
            return Err(c.error(
                Code::Unimplemented,
                "the gradient of GatherV2 with batch_dims != 0 is not supported",
            ));
        }
        let Some(axis) = c.const_ints(c.x(2)).and_then(|a| a.first().copied()) else {
            return Err(c.error(
                Code::Unimplemented,
                "the gradient of GatherV2 needs a constant axis",
            ));
        };
        Ok(vec![Some(gather_grad(c, axis)?), None, None])
    })?;
    // GatherNd and ScatterNd are each other's gradient (duplicate indices add).
    r.gradient("GatherNd", |c| {
        let b = c.b;
        let shape = b.shape_of_as(c.x(0), index_dtype(c.dtype(c.x(1))))?;
        let indices = b.cast(c.x(1), c.dtype(shape))?;
        Ok(vec![Some(b.scatter_nd(indices, c.dy(0)?, shape)?), None])
    })?;
    r.gradient("ScatterNd", |c| {
        Ok(vec![None, Some(c.b.gather_nd(c.dy(0)?, c.x(0))?), None])
    })?;
    Ok(())
}

/// The dtype for index and shape vectors paired with indices of `dtype`.
fn index_dtype(dtype: DType) -> DType {
    if dtype == DType::I64 {
        DType::I64
    } else {
        DType::I32
    }
}

/// A constant vector of the index dtype `idx`.
fn index_vector(b: &Builder, idx: DType, values: &[i64]) -> Result<Output> {
    if idx == DType::I64 {
        b.vector_const(values.to_vec())
    } else {
        b.vector_const(values.iter().map(|&v| v as i32).collect())
    }
}

/// The gradient of gathering `params` (input 0) at `indices` (input 1) along `axis`: `dy`
/// scattered (added) back with `ScatterNd`, as TensorFlow's `unsorted_segment_sum` does.
/// Along axis 0 any params shape works; along another axis the params rank must be known.
fn gather_grad(c: &GradContext, axis: i64) -> Result<Output> {
    let b = c.b;
    let (params, indices) = (c.x(0), c.x(1));
    let idx = index_dtype(c.dtype(indices));
    let flat_indices = b.reshape_to(b.cast(indices, idx)?, &[-1, 1])?;
    let dy = c.dy(0)?;
    let params_shape = b.shape_of_as(params, idx)?;
    let rank = b.shape(params).rank().map(|r| r as i64);
    let axis = match rank {
        Some(r) if axis < 0 => axis + r,
        _ => axis,
    };
    let minus_one = index_vector(b, idx, &[-1])?;
    if axis == 0 {
        // values: [number of indices] + params.shape[1:]
        let tail = b.slice_const(params_shape, &[1], &[-1])?;
        let values = b.reshape(dy, b.concat(&[minus_one, tail], 0)?)?;
        return b.scatter_nd(flat_indices, values, params_shape);
    }
    let Some(rank) = rank.filter(|r| (0..*r).contains(&axis)) else {
        return Err(c.error(
            Code::Unimplemented,
            format!("the gradient of a gather along axis {axis} needs params of known rank"),
        ));
    };
    // dy is outer + indices.shape + inner: flatten the indices dims, move them first,
    // scatter along dim 0, and move that dim back to `axis`.
    let outer = b.slice_const(params_shape, &[0], &[axis])?;
    let inner = b.slice_const(params_shape, &[axis + 1], &[-1])?;
    let values = b.reshape(dy, b.concat(&[outer, minus_one, inner], 0)?)?;
    let perm: Vec<i64> = std::iter::once(axis)
        .chain(0..axis)
        .chain(axis + 1..rank)
        .collect();
    let moved = b.transpose_perm(values, &perm)?;
    let scattered_shape = b.gather(params_shape, b.index_const(&perm)?, 0)?;
    let scattered = b.scatter_nd(flat_indices, moved, scattered_shape)?;
    let mut inverse = vec![0i64; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p as usize] = i as i64;
    }
    b.transpose_perm(scattered, &inverse)
}

fn gather_v1_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let params = cx.with_rank_at_least(0, 1)?;
    let indices = cx.input(1)?;
    let (Some(p), Some(i)) = (params.dims(), indices.dims()) else {
        return Ok(vec![Shape::unknown()]);
    };
    Ok(vec![Shape::from([i, &p[1..]].concat())])
}

/// `params[:axis] + indices[batch_dims:] + params[axis + 1:]`, with the leading
/// `batch_dims` dims of params and indices merged.
fn gather_v2_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let params = cx.with_rank_at_least(0, 1)?;
    let indices = cx.input(1)?;
    check_scalar(cx, 2)?;
    let batch_dims = cx.attr_int("batch_dims")?;
    let (Some(p), Some(i)) = (params.dims(), indices.dims()) else {
        return Ok(vec![Shape::unknown()]);
    };
    let batch = if batch_dims < 0 {
        batch_dims + i.len() as i64
    } else {
        batch_dims
    };
    if batch < 0 || batch as usize > i.len() {
        return Err(cx.error(format!(
            "batch_dims {batch_dims} is out of range for indices '{}' with shape {indices}",
            name(cx, 1)
        )));
    }
    let batch = batch as usize;
    let Some(axis) = scalar_input(cx, 2)? else {
        let rank = (p.len() + i.len()).checked_sub(1 + batch);
        return Ok(vec![rank.map_or_else(Shape::unknown, Shape::unknown_dims)]);
    };
    let axis = cx.canonical_axis(axis, p.len()).map_err(|_| {
        cx.error(format!(
            "axis {axis} given by '{}' is out of range for params '{}' with shape {params}",
            name(cx, 2),
            name(cx, 0)
        ))
    })?;
    if batch > axis {
        return Err(cx.error(format!(
            "batch_dims ({batch_dims}) must be no greater than axis ({axis}) for params '{}' with shape {params}",
            name(cx, 0)
        )));
    }
    let mut out = sub_dims(p, 0, axis);
    for (k, d) in out.iter_mut().take(batch).enumerate() {
        *d = d.merge(i[k]).ok_or_else(|| {
            cx.error(format!(
                "batch dimension {k} differs: params '{}' has shape {params} but indices '{}' has shape {indices}",
                name(cx, 0),
                name(cx, 1)
            ))
        })?;
    }
    out.extend_from_slice(&i[batch..]);
    out.extend_from_slice(&p[axis + 1..]);
    Ok(vec![Shape::from(out)])
}

/// `indices[:-1] + params[indices.shape[-1]:]`.
fn gather_nd_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let params = cx.with_rank_at_least(0, 1)?;
    let indices = cx.with_rank_at_least(1, 1)?;
    let (Some(p), Some(i)) = (params.dims(), indices.dims()) else {
        return Ok(vec![Shape::unknown()]);
    };
    let Dim::Known(depth) = i[i.len() - 1] else {
        return Ok(vec![Shape::unknown()]);
    };
    if depth > p.len() {
        return Err(cx.error(format!(
            "the last dimension of indices '{}' (shape {indices}) must be <= the rank of params '{}' (shape {params})",
            name(cx, 1),
            name(cx, 0)
        )));
    }
    Ok(vec![Shape::from([&i[..i.len() - 1], &p[depth..]].concat())])
}

/// The output has the shape given by `shape`; `updates` must be
/// `indices.shape[:-1] + shape[indices.shape[-1]:]`.
fn scatter_nd_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let indices = cx.with_rank_at_least(0, 1)?;
    let updates = cx.input(1)?;
    vector_len(cx, 2)?;
    let out = cx.input_as_shape(2)?;
    let mismatch = || {
        cx.error(format!(
            "updates '{}' with shape {updates} do not match indices '{}' with shape {indices} \
             and output shape {out} given by '{}'",
            name(cx, 1),
            name(cx, 0),
            name(cx, 2)
        ))
    };
    let (Some(i), Some(u)) = (indices.dims(), updates.dims()) else {
        return Ok(vec![out]);
    };
    let Dim::Known(depth) = i[i.len() - 1] else {
        return Ok(vec![out]);
    };
    let outer = i.len() - 1;
    if u.len() < outer {
        return Err(mismatch());
    }
    Shape::from(i[..outer].to_vec())
        .merge(&Shape::from(u[..outer].to_vec()))
        .map_err(|_| mismatch())?;
    let Some(o) = out.dims() else {
        return Ok(vec![out]);
    };
    if depth > o.len() {
        return Err(mismatch());
    }
    // The output's inner dims are the updates' inner dims.
    let inner = Shape::from(o[depth..].to_vec())
        .merge(&Shape::from(u[outer..].to_vec()))
        .map_err(|_| mismatch())?;
    let mut dims = o[..depth].to_vec();
    dims.extend_from_slice(inner.dims().unwrap_or_default());
    Ok(vec![Shape::from(dims)])
}

impl Builder {
    /// `tf.gather` along a constant `axis` (GatherV2, no batch dims).
    pub fn gather(&self, params: Output, indices: Output, axis: i64) -> Result<Output> {
        let a = self.index_scalar(axis)?;
        self.gather_v2(params, indices, a, 0)
    }

    /// `GatherV2` with an int scalar `axis` and `batch_dims`.
    pub fn gather_v2(
        &self,
        params: Output,
        indices: Output,
        axis: Output,
        batch_dims: i64,
    ) -> Result<Output> {
        self.op("GatherV2")
            .input(params)
            .input(indices)
            .input(axis)
            .attr("batch_dims", batch_dims)
            .build_output()
    }

    /// `tf.gather_nd`.
    pub fn gather_nd(&self, params: Output, indices: Output) -> Result<Output> {
        self.op("GatherNd")
            .input(params)
            .input(indices)
            .build_output()
    }

    /// `tf.scatter_nd`: a tensor of shape `shape`, zeros except `updates` at `indices`
    /// (duplicates add).
    pub fn scatter_nd(&self, indices: Output, updates: Output, shape: Output) -> Result<Output> {
        self.op("ScatterNd")
            .input(indices)
            .input(updates)
            .input(shape)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{Attrs, DType, Tensor};

    fn v2(batch_dims: i64) -> Attrs {
        attrs(&[
            ("Tparams", DType::F32.into()),
            ("Tindices", DType::I32.into()),
            ("Taxis", DType::I32.into()),
            ("batch_dims", batch_dims.into()),
        ])
    }

    fn gather(params: &str, indices: &str, axis: i32, batch_dims: i64) -> Result<String> {
        let v = [None, None, Some(Tensor::scalar(axis))];
        infer_with_values(
            "GatherV2",
            &v2(batch_dims),
            &format!("{params};{indices};[]"),
            &v,
        )
    }

    #[test]
    fn gather_v2() {
        assert_eq!(gather("[5,3]", "[2]", 0, 0).unwrap(), "[2,3]");
        assert_eq!(gather("[5,3]", "[2,4]", 1, 0).unwrap(), "[5,2,4]");
        assert_eq!(gather("[5,3]", "[]", -1, 0).unwrap(), "[5]");
        assert_eq!(gather("[5,3,7]", "[5,2]", 1, 1).unwrap(), "[5,2,7]");
        assert_eq!(gather("[?,3,7]", "[5,2]", 2, -1).unwrap(), "[5,3,2]");
        assert_eq!(gather("?", "[2]", 0, 0).unwrap(), "?");
        assert_eq!(
            infer("GatherV2", &v2(0), "[5,3];[2,2];[]").unwrap(),
            "[?,?,?]"
        );
        assert!(gather("[5,3]", "[2]", 2, 0).is_err());
        assert!(gather("[]", "[2]", 0, 0).is_err());
        assert!(gather("[5,3,7]", "[4,2]", 1, 1).is_err());
        assert!(gather("[5,3,7]", "[5,2]", 0, 1).is_err());
        assert!(infer("GatherV2", &v2(0), "[5,3];[2];[1]").is_err());
    }

    #[test]
    fn gather_v1_and_nd() {
        let a = attrs(&[
            ("Tparams", DType::F32.into()),
            ("Tindices", DType::I64.into()),
        ]);
        assert_eq!(infer("Gather", &a, "[5,3];[2,2]").unwrap(), "[2,2,3]");
        assert!(infer("Gather", &a, "[];[2]").is_err());
        assert_eq!(infer("GatherNd", &a, "[5,3,4];[6,2]").unwrap(), "[6,4]");
        assert_eq!(infer("GatherNd", &a, "[5,3];[2]").unwrap(), "[]");
        assert_eq!(infer("GatherNd", &a, "[5,3];[7,?]").unwrap(), "?");
        let e = infer("GatherNd", &a, "[5,3];[7,3]").unwrap_err();
        assert!(
            e.message.contains("in1:0") && e.message.contains("[7,3]"),
            "{e}"
        );
    }

    #[test]
    fn scatter_nd() {
        let a = attrs(&[("T", DType::F32.into()), ("Tindices", DType::I32.into())]);
        let scatter = |inputs: &str, shape: Vec<i32>| {
            infer_with_values(
                "ScatterNd",
                &a,
                inputs,
                &[None, None, Some(Tensor::vector(shape))],
            )
        };
        assert_eq!(scatter("[4,1];[4];[1]", vec![8]).unwrap(), "[8]");
        assert_eq!(
            scatter("[2,1];[2,4,4];[3]", vec![4, 4, 4]).unwrap(),
            "[4,4,4]"
        );
        assert!(scatter("[2,1];[3,4,4];[3]", vec![4, 4, 4]).is_err());
        let e = scatter("[2,1];[2,4,5];[3]", vec![4, 4, 4]).unwrap_err();
        assert!(
            e.message.contains("in1:0") && e.message.contains("[2,4,5]"),
            "{e}"
        );
        assert!(scatter("[2,4];[2];[3]", vec![4, 4, 4]).is_err());
        assert_eq!(infer("ScatterNd", &a, "[2,1];[2,4];[2]").unwrap(), "[?,4]");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let params = b.placeholder("p", DType::F32, [10i64, 4]).unwrap();
        let ids = b.placeholder("ids", DType::I32, [-1i64]).unwrap();
        let g = b.gather(params, ids, 0).unwrap();
        assert_eq!(b.shape(g).to_string(), "[?,4]");
        let nd = b.placeholder("nd", DType::I64, [3i64, 2]).unwrap();
        assert_eq!(b.shape(b.gather_nd(params, nd).unwrap()).to_string(), "[3]");
        let idx = b.placeholder("idx", DType::I32, [3i64, 1]).unwrap();
        let upd = b.placeholder("upd", DType::F32, [3i64, 4]).unwrap();
        let shape = b.index_const(&[10, 4]).unwrap();
        assert_eq!(
            b.shape(b.scatter_nd(idx, upd, shape).unwrap()).to_string(),
            "[10,4]"
        );
    }
}
