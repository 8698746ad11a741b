//! Padding: `Pad` (zeros), `PadV2` (a given value), `MirrorPad` (reflected borders) and
//! `MirrorPadGrad` (folds a mirror-padded gradient back onto the unpadded shape).
//! `paddings` is an `[rank, 2]` matrix of (before, after) counts.
//!
//! Gradients: `Pad` and `PadV2` slice the input's part out of `dy` (PadV2's constant gets
//! the sum of the rest); `MirrorPad`'s is `MirrorPadGrad` and `MirrorPadGrad`'s is
//! `MirrorPad` (TF's `_MirrorPadGrad` / `_MirrorPadGradGrad`), with the same mode.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{add_dims, check_scalar, name};
use crate::gradient::{sum_all, GradContext};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Pad")
            .input("input: T")
            .input("paddings: Tpaddings")
            .output("output: T")
            .attr("T: type")
            .attr("Tpaddings: {int32, int64} = DT_INT32")
            .shape_fn(pad_shape),
    )?;
    r.register(
        OpDef::build("PadV2")
            .input("input: T")
            .input("paddings: Tpaddings")
            .input("constant_values: T")
            .output("output: T")
            .attr("T: type")
            .attr("Tpaddings: {int32, int64} = DT_INT32")
            .shape_fn(pad_v2_shape),
    )?;
    r.register(
        OpDef::build("MirrorPad")
            .input("input: T")
            .input("paddings: Tpaddings")
            .output("output: T")
            .attr("T: type")
            .attr("Tpaddings: {int32, int64} = DT_INT32")
            .attr("mode: {'REFLECT', 'SYMMETRIC'}")
            .shape_fn(mirror_pad_shape),
    )?;
    r.register(
        OpDef::build("MirrorPadGrad")
            .input("input: T")
            .input("paddings: Tpaddings")
            .output("output: T")
            .attr("T: type")
            .attr("Tpaddings: {int32, int64} = DT_INT32")
            .attr("mode: {'REFLECT', 'SYMMETRIC'}")
            .shape_fn(mirror_pad_grad_shape),
    )?;
    r.gradient("Pad", pad_grad)?;
    r.gradient("PadV2", pad_grad)?;
    // Each is the other's transpose, so each one's gradient is the other op.
    r.gradient("MirrorPad", |c| mirror_grad(c, "MirrorPadGrad"))?;
    r.gradient("MirrorPadGrad", |c| mirror_grad(c, "MirrorPad"))?;
    Ok(())
}

/// `Pad`/`PadV2`: the slice of `dy` where the input sits; PadV2's constant value gets the
/// sum of the rest.
fn pad_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, paddings) = (c.x(0), c.x(1));
    let dtype = c.dtype(paddings);
    let index = |v: Vec<i64>| -> Result<Output> {
        if dtype == rill_graph::DType::I64 {
            b.vector_const(v)
        } else {
            b.vector_const(v.into_iter().map(|n| n as i32).collect())
        }
    };
    let before = b.slice(paddings, index(vec![0, 0])?, index(vec![-1, 1])?)?;
    let begin = b.reshape_to(before, &[-1])?;
    let dy = c.dy(0)?;
    let g = b.slice(dy, begin, b.shape_of_as(x, dtype)?)?;
    if c.inputs.len() == 2 {
        return Ok(vec![Some(g), None]);
    }
    // PadV2's constant fills every element outside the input (TensorFlow gives it none).
    let value = b.sub(sum_all(b, dy)?, sum_all(b, g)?)?;
    Ok(vec![Some(g), None, Some(value)])
}

/// `op(dy, paddings)` with the forward node's mode; none for the paddings.
fn mirror_grad(c: &GradContext, op: &str) -> Result<Vec<Option<Output>>> {
    let nb = c.b.op(op).input(c.dy(0)?).input(c.x(1));
    Ok(vec![
        Some(c.with_attrs(nb, &["mode"])?.build_output()?),
        None,
    ])
}

/// How far a mirrored pad may reach: `dim - 1` for REFLECT, `dim` for SYMMETRIC.
#[derive(Clone, Copy)]
enum Limit {
    None,
    Mirror { offset: usize },
}

fn pad_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    padded(cx, Limit::None)
}

fn pad_v2_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    check_scalar(cx, 2)?;
    padded(cx, Limit::None)
}

fn mirror_pad_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let offset = usize::from(cx.attr_str("mode")? == "REFLECT");
    padded(cx, Limit::Mirror { offset })
}

/// The padded rank and, when the paddings are constant, each dim's (before, after).
type RankAndPairs = (usize, Option<Vec<(i64, i64)>>);

/// The rank of a pad op's input and, when `paddings` is constant, its `(before, after)`
/// pairs (checked: `[rank, 2]`, non-negative). `None` when the rank is unknown.
fn pad_pairs(cx: &InferenceContext) -> Result<Option<RankAndPairs>> {
    let input = cx.input(0)?;
    let paddings = cx.with_rank(1, 2)?;
    let mismatch = || {
        cx.error(format!(
            "paddings '{}' must have shape [rank, 2] for '{}' with shape {input}, got {paddings}",
            name(cx, 1),
            name(cx, 0)
        ))
    };
    if paddings.dim(1).merge(Dim::Known(2)).is_none() {
        return Err(mismatch());
    }
    let rank = match (input.rank(), paddings.dim(0).known()) {
        (Some(r), Some(n)) if r != n => return Err(mismatch()),
        (r, n) => r.or(n),
    };
    let Some(rank) = rank else {
        return Ok(None);
    };
    let Some(pads) = cx.input_ints(1)? else {
        return Ok(Some((rank, None)));
    };
    if pads.len() != rank * 2 {
        return Err(mismatch());
    }
    let pairs = pads
        .chunks(2)
        .enumerate()
        .map(|(i, p)| {
            let (before, after) = (p[0], p[1]);
            if before < 0 || after < 0 {
                return Err(cx.error(format!(
                    "paddings given by '{}' must be non-negative, got {before} and {after} for dimension {i}",
                    name(cx, 1)
                )));
            }
            Ok((before, after))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((rank, Some(pairs))))
}

/// The unpadded shape: each known dim less its two paddings (TF's `MirrorPadGradShape`).
fn mirror_pad_grad_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let pairs = match pad_pairs(cx)? {
        None => return Ok(vec![Shape::unknown()]),
        Some((rank, None)) => return Ok(vec![Shape::unknown_dims(rank)]),
        Some((_, Some(pairs))) => pairs,
    };
    let out = pairs
        .iter()
        .enumerate()
        .map(|(i, &(before, after))| {
            match input.dim(i as i64) {
                Dim::Known(d) => match (d as i64).checked_sub(before.saturating_add(after)) {
                    Some(r) if r >= 0 => Ok(Dim::Known(r as usize)),
                    _ => Err(cx.error(format!(
                        "paddings {before} and {after} of dimension {i} exceed its size {d} in '{}' with shape {input}",
                        name(cx, 0)
                    ))),
                },
                Dim::Unknown => Ok(Dim::Unknown),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(vec![Shape::from(out)])
}

fn padded(cx: &InferenceContext, limit: Limit) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let pairs = match pad_pairs(cx)? {
        None => return Ok(vec![Shape::unknown()]),
        Some((rank, None)) => return Ok(vec![Shape::unknown_dims(rank)]),
        Some((_, Some(pairs))) => pairs,
    };
    let out = pairs
        .iter()
        .enumerate()
        .map(|(i, &(before, after))| {
            let dim = input.dim(i as i64);
            if let (Limit::Mirror { offset }, Dim::Known(d)) = (limit, dim) {
                let most = d as i64 - offset as i64;
                if before > most || after > most {
                    return Err(cx.error(format!(
                        "paddings {before} and {after} of dimension {i} of '{}' with shape {input} \
                         must be no greater than {most} in this mode",
                        name(cx, 0)
                    )));
                }
            }
            let total = usize::try_from(before.saturating_add(after)).unwrap_or(usize::MAX);
            Ok(add_dims(dim, Dim::Known(total)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(vec![Shape::from(out)])
}

/// The flattened `[rank, 2]` matrix of `pairs` as a constant (int32 when it fits).
fn paddings_const(b: &Builder, pairs: &[(i64, i64)]) -> Result<Output> {
    let flat: Vec<i64> = pairs.iter().flat_map(|&(x, y)| [x, y]).collect();
    let t = if flat.iter().all(|&v| i32::try_from(v).is_ok()) {
        rill_graph::Tensor::new(
            &[pairs.len(), 2],
            flat.iter().map(|&v| v as i32).collect::<Vec<_>>(),
        )?
    } else {
        rill_graph::Tensor::new(&[pairs.len(), 2], flat)?
    };
    b.constant(t)
}

impl Builder {
    /// `tf.pad` with zeros; `paddings` is an int `[rank, 2]` matrix.
    pub fn pad(&self, x: Output, paddings: Output) -> Result<Output> {
        self.op("Pad").input(x).input(paddings).build_output()
    }

    /// `tf.pad` with zeros by constant (before, after) counts per dim.
    pub fn pad_const(&self, x: Output, paddings: &[(i64, i64)]) -> Result<Output> {
        let p = paddings_const(self, paddings)?;
        self.pad(x, p)
    }

    /// `tf.pad` with `value` (a scalar of `x`'s dtype).
    pub fn pad_v2(&self, x: Output, paddings: Output, value: Output) -> Result<Output> {
        self.op("PadV2")
            .input(x)
            .input(paddings)
            .input(value)
            .build_output()
    }

    /// `tf.pad` in `REFLECT` or `SYMMETRIC` mode.
    pub fn mirror_pad(&self, x: Output, paddings: Output, mode: &str) -> Result<Output> {
        self.op("MirrorPad")
            .input(x)
            .input(paddings)
            .attr("mode", mode)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn pad(op: &str, mode: &str, input: &str, pads: Vec<i32>) -> Result<String> {
        let a = attrs(&[("T", DType::F32.into()), ("mode", mode.into())]);
        let n = pads.len() / 2;
        let extra = if op == "PadV2" { ";[]" } else { "" };
        let t = Tensor::new(&[n, 2], pads).unwrap();
        infer_with_values(op, &a, &format!("{input};[{n},2]{extra}"), &[None, Some(t)])
    }

    #[test]
    fn shapes() {
        assert_eq!(pad("Pad", "", "[2,3]", vec![1, 1, 0, 2]).unwrap(), "[4,5]");
        assert_eq!(pad("Pad", "", "[?,3]", vec![1, 1, 0, 2]).unwrap(), "[?,5]");
        assert_eq!(pad("Pad", "", "?", vec![1, 1, 0, 2]).unwrap(), "[?,?]");
        assert_eq!(pad("PadV2", "", "[2]", vec![3, 0]).unwrap(), "[5]");
        assert_eq!(
            pad("MirrorPad", "REFLECT", "[3,3]", vec![2, 2, 0, 1]).unwrap(),
            "[7,4]"
        );
        assert_eq!(
            pad("MirrorPad", "SYMMETRIC", "[3]", vec![3, 3]).unwrap(),
            "[9]"
        );
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Pad", &a, "[2,3];[2,2]").unwrap(), "[?,?]");
        assert_eq!(infer("Pad", &a, "?;[?,2]").unwrap(), "?");
        assert_eq!(infer("Pad", &a, "?;[3,?]").unwrap(), "[?,?,?]");
    }

    #[test]
    fn errors() {
        assert!(pad("Pad", "", "[2,3]", vec![-1, 1, 0, 2]).is_err());
        let huge = Tensor::new(&[1, 2], vec![i64::MAX, i64::MAX]).unwrap();
        let a = attrs(&[("T", DType::F32.into()), ("Tpaddings", DType::I64.into())]);
        assert!(infer_with_values("Pad", &a, "[2];[1,2]", &[None, Some(huge)]).is_ok());
        assert!(pad("Pad", "", "[2,3,4]", vec![1, 1, 0, 2]).is_err());
        assert!(pad("MirrorPad", "REFLECT", "[3]", vec![3, 0]).is_err());
        assert!(pad("MirrorPad", "SYMMETRIC", "[3]", vec![4, 0]).is_err());
        let a = attrs(&[("T", DType::F32.into())]);
        let e = infer("Pad", &a, "[2,3];[2,3]").unwrap_err();
        assert!(
            e.message.contains("in1:0") && e.message.contains("[2,3]"),
            "{e}"
        );
        let m = attrs(&[("T", DType::F32.into()), ("mode", "CONSTANT".into())]);
        assert!(infer("MirrorPad", &m, "[2];[1,2]").is_err());
    }

    #[test]
    fn mirror_pad_grad() {
        let g = "MirrorPadGrad";
        assert_eq!(
            pad(g, "REFLECT", "[7,?]", vec![2, 2, 1, 0]).unwrap(),
            "[3,?]"
        );
        assert!(pad(g, "SYMMETRIC", "[3]", vec![2, 2]).is_err());
        assert!(pad(g, "SYMMETRIC", "[5]", vec![-1, 2]).is_err());
        assert!(pad(g, "SYMMETRIC", "[5,5]", vec![1, 2]).is_err());
        let a = attrs(&[("T", DType::F32.into()), ("mode", "REFLECT".into())]);
        assert_eq!(infer(g, &a, "[5,5];[2,2]").unwrap(), "[?,?]");
        assert_eq!(infer(g, &a, "?;[3,2]").unwrap(), "[?,?,?]");
        assert_eq!(infer(g, &a, "?;?").unwrap(), "?");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 4]).unwrap();
        assert_eq!(
            b.shape(b.pad_const(x, &[(0, 0), (1, 2)]).unwrap())
                .to_string(),
            "[?,7]"
        );
        let p = paddings_const(&b, &[(1, 1), (2, 2)]).unwrap();
        let v = b.scalar_f32(1.0).unwrap();
        assert_eq!(b.shape(b.pad_v2(x, p, v).unwrap()).to_string(), "[?,8]");
        assert_eq!(
            b.shape(b.mirror_pad(x, p, "REFLECT").unwrap()).to_string(),
            "[?,8]"
        );
        assert!(b.mirror_pad(x, p, "WRAP").is_err());
    }
}
