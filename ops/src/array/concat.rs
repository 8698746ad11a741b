//! Joining and separating tensors along an axis: `ConcatV2`, `Concat` (the older argument
//! order), `ConcatOffset` (used by concat's gradient), `Pack` (`tf.stack`) and `Unpack`
//! (`tf.unstack`).
//!
//! Gradients: each concatenated value gets its slice of `dy`; `Pack` and `Unpack` undo
//! each other; `ConcatOffset` is not differentiable.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{add_dims, check_scalar, merge_all, name, scalar_input};
use crate::gradient::GradContext;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("ConcatV2")
            .input("values: N * T")
            .input("axis: Tidx")
            .output("output: T")
            .attr("N: int >= 2")
            .attr("T: type")
            .attr("Tidx: {int32, int64} = DT_INT32")
            .shape_fn(concat_v2_shape),
    )?;
    r.register(
        OpDef::build("Concat")
            .input("concat_dim: int32")
            .input("values: N * T")
            .output("output: T")
            .attr("N: int >= 2")
            .attr("T: type")
            .shape_fn(concat_v1_shape),
    )?;
    r.register(
        OpDef::build("ConcatOffset")
            .input("concat_dim: int32")
            .input("shape: N * shape_type")
            .output("offset: N * shape_type")
            .attr("N: int >= 2")
            .attr("shape_type: {int32, int64} = DT_INT32")
            .shape_fn(concat_offset_shape),
    )?;
    r.register(
        OpDef::build("Pack")
            .input("values: N * T")
            .output("output: T")
            .attr("N: int >= 1")
            .attr("T: type")
            .attr("axis: int = 0")
            .shape_fn(pack_shape),
    )?;
    r.register(
        OpDef::build("Unpack")
            .input("value: T")
            .output("output: num * T")
            .attr("num: int >= 0")
            .attr("T: type")
            .attr("axis: int = 0")
            .shape_fn(unpack_shape),
    )?;
    r.gradient("ConcatV2", |c| {
        let n = c.inputs.len() - 1;
        let mut out = concat_grad(c, &c.inputs[..n], c.x(n))?;
        out.push(None);
        Ok(out)
    })?;
    r.gradient("Concat", |c| {
        let mut out = vec![None];
        out.extend(concat_grad(c, &c.inputs[1..], c.x(0))?);
        Ok(out)
    })?;
    r.no_gradient("ConcatOffset")?;
    r.gradient("Pack", |c| {
        let (n, axis) = (c.inputs.len(), c.attr_int("axis")?);
        Ok(c.b
            .unstack(c.dy(0)?, n, axis)?
            .into_iter()
            .map(Some)
            .collect())
    })?;
    r.gradient("Unpack", |c| {
        let grads = (0..c.outputs.len())
            .map(|i| c.dy(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(vec![Some(c.b.stack(&grads, c.attr_int("axis")?)?)])
    })?;
    Ok(())
}

/// The gradients of concatenated `values`: the slice of `dy` each one fills, at offsets
/// known at graph time when the shapes and axis are, else from `ConcatOffset`.
fn concat_grad(c: &GradContext, values: &[Output], axis: Output) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let dy = c.dy(0)?;
    let dims: Option<Vec<Vec<usize>>> = values.iter().map(|&v| c.static_dims(v)).collect();
    let axis_value = c.const_ints(axis).and_then(|a| a.first().copied());
    if let (Some(dims), Some(a)) = (dims, axis_value) {
        let rank = dims.first().map_or(0, Vec::len) as i64;
        let a = if a < 0 { a + rank } else { a };
        if (0..rank).contains(&a) {
            let mut offset = 0i64;
            let mut out = Vec::with_capacity(values.len());
            for d in &dims {
                let mut begin = vec![0i64; d.len()];
                begin[a as usize] = offset;
                let size: Vec<i64> = d.iter().map(|&n| n as i64).collect();
                offset += size[a as usize];
                out.push(Some(b.slice_const(dy, &begin, &size)?));
            }
            return Ok(out);
        }
    }
    let axis = b.cast(axis, rill_graph::DType::I32)?;
    let axis = b.floor_mod(axis, b.rank(values[0])?)?;
    let shapes = b.shape_n(values)?;
    let offsets = b.concat_offset(axis, &shapes)?;
    offsets
        .iter()
        .zip(&shapes)
        .map(|(&o, &s)| Ok(Some(b.slice(dy, o, s)?)))
        .collect()
}

fn concat_v2_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let n = cx.num_inputs().saturating_sub(1);
    concat_shape(cx, 0..n, n)
}

fn concat_v1_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    concat_shape(cx, 1..cx.num_inputs(), 0)
}

/// TensorFlow's ConcatShape: the inputs `values` must share a rank and agree on every dim
/// but the concat axis, whose sizes add up.
fn concat_shape(
    cx: &InferenceContext,
    values: std::ops::Range<usize>,
    axis_input: usize,
) -> Result<Vec<Shape>> {
    check_scalar(cx, axis_input)?;
    let mut rank: Option<(usize, usize)> = None;
    for i in values.clone() {
        let s = cx.input(i)?;
        match (rank, s.rank()) {
            (None, Some(r)) => rank = Some((i, r)),
            (Some((first, r)), Some(r2)) if r != r2 => {
                return Err(cx.error(format!(
                    "inputs to concatenate must have the same rank: '{}' has shape {} but '{}' has shape {s}",
                    name(cx, first),
                    cx.input(first)?,
                    name(cx, i)
                )))
            }
            _ => {}
        }
    }
    let Some((_, rank)) = rank else {
        return Ok(vec![Shape::unknown()]);
    };
    if rank == 0 {
        return Err(cx.error("cannot concatenate scalars (use Pack / tf.stack instead)".into()));
    }
    let Some(axis) = scalar_input(cx, axis_input)? else {
        return Ok(vec![Shape::unknown_dims(rank)]);
    };
    let axis = cx.canonical_axis(axis, rank).map_err(|_| {
        cx.error(format!(
            "concat axis {axis} given by '{}' is out of range for inputs of rank {rank}",
            name(cx, axis_input)
        ))
    })?;
    let mut out: Vec<Dim> = vec![Dim::Unknown; rank];
    let mut total = Dim::Known(0);
    let mut first: Option<usize> = None;
    for i in values {
        let s = cx.input(i)?;
        let Some(dims) = s.dims() else {
            total = Dim::Unknown;
            continue;
        };
        for (d, (o, &x)) in out.iter_mut().zip(dims).enumerate() {
            if d == axis {
                continue;
            }
            *o = o.merge(x).ok_or_else(|| {
                let f = first.unwrap_or(i);
                cx.error(format!(
                    "dimension {d} of the inputs to concatenate must match: '{}' has shape {} but '{}' has shape {s}",
                    name(cx, f),
                    cx.input(f).map_or_else(|_| "?".to_string(), ToString::to_string),
                    name(cx, i)
                ))
            })?;
        }
        first.get_or_insert(i);
        total = add_dims(total, dims[axis]);
    }
    out[axis] = total;
    Ok(vec![Shape::from(out)])
}

fn concat_offset_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    check_scalar(cx, 0)?;
    let n = cx.num_inputs().saturating_sub(1);
    let merged = merge_all(cx, 1..=n)?;
    (1..=n).map(|_| Ok(merged.clone())).collect()
}

fn pack_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let merged = merge_all(cx, 0..cx.num_inputs())?;
    let Some(dims) = merged.dims() else {
        return Ok(vec![Shape::unknown()]);
    };
    let axis = cx.attr_int("axis")?;
    let at = cx.canonical_axis(axis, dims.len() + 1).map_err(|_| {
        cx.error(format!(
            "Pack axis {axis} is out of range for inputs of shape {merged} (must be in [{}, {}])",
            -(dims.len() as i64) - 1,
            dims.len()
        ))
    })?;
    let mut out = dims.to_vec();
    out.insert(at, Dim::Known(cx.num_inputs()));
    Ok(vec![Shape::from(out)])
}

fn unpack_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let num = cx.num_outputs;
    let Some(dims) = input.dims() else {
        return Ok(vec![Shape::unknown(); num]);
    };
    let axis = cx.attr_int("axis")?;
    let at = cx.canonical_axis(axis, dims.len()).map_err(|_| {
        cx.error(format!(
            "Unpack axis {axis} is out of range for '{}' with shape {input}",
            name(cx, 0)
        ))
    })?;
    if let Dim::Known(n) = dims[at] {
        if n != num {
            return Err(cx.error(format!(
                "cannot unpack {num} tensors from dimension {at} of '{}' with shape {input}",
                name(cx, 0)
            )));
        }
    }
    let mut out = dims.to_vec();
    out.remove(at);
    Ok(vec![Shape::from(out); num])
}

impl Builder {
    /// `tf.concat` along a constant `axis` (negative counts from the end). A single value
    /// is returned as is, as TensorFlow's Python API does.
    pub fn concat(&self, values: &[Output], axis: i64) -> Result<Output> {
        if let [only] = values {
            return Ok(*only);
        }
        let a = self.index_scalar(axis)?;
        self.concat_v2(values, a)
    }

    /// `ConcatV2` along the axis held by the int scalar `axis`.
    pub fn concat_v2(&self, values: &[Output], axis: Output) -> Result<Output> {
        self.op("ConcatV2")
            .input_list(values)
            .input(axis)
            .build_output()
    }

    /// `ConcatOffset`: where each of `shapes` starts in their concatenation along `axis`.
    pub fn concat_offset(&self, axis: Output, shapes: &[Output]) -> Result<Vec<Output>> {
        self.op("ConcatOffset")
            .input(axis)
            .input_list(shapes)
            .build_outputs()
    }

    /// `tf.stack`: packs same-shaped tensors along a new dim at `axis`.
    pub fn stack(&self, values: &[Output], axis: i64) -> Result<Output> {
        self.op("Pack")
            .input_list(values)
            .attr("axis", axis)
            .build_output()
    }

    /// `tf.unstack`: splits `x` into `num` tensors along `axis`, removing that dim.
    pub fn unstack(&self, x: Output, num: usize, axis: i64) -> Result<Vec<Output>> {
        self.op("Unpack")
            .input(x)
            .attr("num", num as i64)
            .attr("axis", axis)
            .build_outputs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{Attrs, DType, Tensor};

    fn n_t(n: i64) -> Attrs {
        attrs(&[("T", DType::F32.into()), ("N", n.into())])
    }

    fn concat(inputs: &str, axis: i32) -> Result<String> {
        let n = inputs.split(';').count();
        let mut values = vec![None; n];
        values.push(Some(Tensor::scalar(axis)));
        infer_with_values("ConcatV2", &n_t(n as i64), &format!("{inputs};[]"), &values)
    }

    #[test]
    fn concat_shapes() {
        assert_eq!(concat("[2,3];[4,3]", 0).unwrap(), "[6,3]");
        assert_eq!(concat("[2,3];[2,5];[2,1]", -1).unwrap(), "[2,9]");
        assert_eq!(concat("[?,3];[4,?]", 0).unwrap(), "[?,3]");
        assert_eq!(concat("[2,?];?", 1).unwrap(), "[2,?]");
        assert_eq!(concat("?;?", 0).unwrap(), "?");
        assert_eq!(
            infer("ConcatV2", &n_t(2), "[2,3];[?,3];[]").unwrap(),
            "[?,?]"
        );
    }

    #[test]
    fn concat_errors() {
        let e = concat("[2,3];[2,4]", 0).unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[2,4]"),
            "{e}"
        );
        assert!(concat("[2,3];[2,3,1]", 0).is_err());
        assert!(concat("[2,3];[2,3]", 2).is_err());
        assert!(concat("[];[]", 0).is_err());
        assert!(infer("ConcatV2", &n_t(2), "[2];[2];[1]").is_err());
    }

    #[test]
    fn concat_v1_and_offset() {
        let v = [Some(Tensor::scalar(1i32)), None, None];
        assert_eq!(
            infer_with_values("Concat", &n_t(2), "[];[2,3];[2,4]", &v).unwrap(),
            "[2,7]"
        );
        let a = attrs(&[("N", 2i64.into())]);
        assert_eq!(infer("ConcatOffset", &a, "[];[2];[?]").unwrap(), "[2];[2]");
        assert!(infer("ConcatOffset", &a, "[];[2];[3]").is_err());
    }

    #[test]
    fn pack_and_unpack() {
        assert_eq!(
            infer("Pack", &n_t(3), "[2,3];[2,?];[?,3]").unwrap(),
            "[3,2,3]"
        );
        let axis = |n: i64, a: i64| {
            attrs(&[
                ("T", DType::F32.into()),
                ("N", n.into()),
                ("axis", a.into()),
            ])
        };
        assert_eq!(
            infer("Pack", &axis(2, -1), "[2,3];[2,3]").unwrap(),
            "[2,3,2]"
        );
        assert_eq!(
            infer("Pack", &axis(2, 1), "[];[]").unwrap_err().code,
            rill_graph::Code::InvalidArgument
        );
        assert_eq!(infer("Pack", &axis(2, -1), "[];[]").unwrap(), "[2]");
        assert_eq!(infer("Pack", &n_t(2), "?;?").unwrap(), "?");
        let e = infer("Pack", &n_t(2), "[2];[3]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("in1:0"),
            "{e}"
        );

        let un = |num: i64, a: i64| {
            attrs(&[
                ("T", DType::F32.into()),
                ("num", num.into()),
                ("axis", a.into()),
            ])
        };
        assert_eq!(infer("Unpack", &un(2, 0), "[2,3]").unwrap(), "[3];[3]");
        assert_eq!(infer("Unpack", &un(3, -1), "[?,3]").unwrap(), "[?];[?];[?]");
        assert_eq!(infer("Unpack", &un(2, 0), "?").unwrap(), "?;?");
        assert_eq!(
            infer("Unpack", &un(4, 0), "[?,3]").unwrap(),
            "[3];[3];[3];[3]"
        );
        assert!(infer("Unpack", &un(3, 0), "[2,3]").is_err());
        assert!(infer("Unpack", &un(2, 2), "[2,3]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [2i64, 3]).unwrap();
        assert_eq!(b.shape(b.concat(&[x, y], 0).unwrap()).to_string(), "[?,3]");
        assert_eq!(b.shape(b.concat(&[y, y], -1).unwrap()).to_string(), "[2,6]");
        assert_eq!(b.concat(&[x], 0).unwrap(), x);
        let s = b.stack(&[y, y, y], 1).unwrap();
        assert_eq!(b.shape(s).to_string(), "[2,3,3]");
        let parts = b.unstack(s, 3, 1).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(b.shape(parts[2]).to_string(), "[2,3]");
        let axis = b.scalar_i32(0).unwrap();
        let shapes = [b.shape_of(x).unwrap(), b.shape_of(y).unwrap()];
        assert_eq!(b.concat_offset(axis, &shapes).unwrap().len(), 2);
        assert!(b
            .concat(&[x, b.placeholder("z", DType::F32, [2i64, 4]).unwrap()], 0)
            .is_err());
    }
}
