//! Math ops over more than two tensors: `AddN` (sum of N same-shape tensors), `Select` and
//! `SelectV2` (choose elements by a bool condition) and `ClipByValue`, with builder methods.
//!
//! Shapes follow TensorFlow: AddN merges all inputs; Select merges `t`/`e` and checks the
//! condition (same shape, scalar, or a vector over the first dim); SelectV2 broadcasts all
//! three; ClipByValue keeps `t`'s shape. Each has a gradient function (TensorFlow's).

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{broadcast_named, type_attr, NUMBER};
use crate::gradient::{sum_to, GradContext};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("AddN")
            .input("inputs: N * T")
            .output("sum: T")
            .attr("N: int >= 1")
            .attr(&type_attr("T", &format!("{NUMBER}, variant")))
            .commutative()
            .aggregate()
            .shape_fn(add_n_shape),
    )?;
    for name in ["Select", "SelectV2"] {
        r.register(
            OpDef::build(name)
                .input("condition: bool")
                .input("t: T")
                .input("e: T")
                .output("output: T")
                .attr("T: type")
                .shape_fn(if name == "Select" {
                    select_shape
                } else {
                    select_v2_shape
                }),
        )?;
    }
    r.register(
        OpDef::build("ClipByValue")
            .input("t: T")
            .input("clip_value_min: T")
            .input("clip_value_max: T")
            .output("output: T")
            .attr(&type_attr("T", NUMBER))
            .shape_fn(rill_graph::shape_fn::unchanged),
    )?;
    r.gradient("AddN", |c| {
        let dy = c.dy(0)?;
        Ok(vec![Some(dy); c.inputs.len()])
    })?;
    r.gradient("Select", |c| {
        // `t`, `e` and `dy` have one shape; a vector condition picks rows, as forward.
        let (b, dy) = (c.b, c.dy(0)?);
        let zeros = b.zeros_like(dy)?;
        let gt = b.select(c.x(0), dy, zeros)?;
        Ok(vec![None, Some(gt), Some(b.select(c.x(0), zeros, dy)?)])
    })?;
    r.gradient("SelectV2", select_v2_grad)?;
    r.gradient("ClipByValue", clip_by_value_grad)
}

/// `SelectV2`: `dy` goes to `t` where the condition holds, else to `e`, each summed back
/// to its operand's shape.
fn select_v2_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (cond, dy) = (c.x(0), c.dy(0)?);
    let zeros = b.zeros_like(dy)?;
    let gt = b.select_v2(cond, dy, zeros)?;
    let ge = b.select_v2(cond, zeros, dy)?;
    Ok(vec![
        None,
        Some(sum_to(b, gt, c.x(1))?),
        Some(sum_to(b, ge, c.x(2))?),
    ])
}

/// `ClipByValue(t, lo, hi)`: `dy` goes to `t` where `lo <= t <= hi`, to `lo` where
/// `t < lo` and to `hi` where `t > hi`, each summed back to its operand's shape.
fn clip_by_value_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (t, lo, hi, dy) = (c.x(0), c.x(1), c.x(2), c.dy(0)?);
    let zeros = b.zeros_like(dy)?;
    let below = b.less(t, lo)?;
    let above = b.greater(t, hi)?;
    let gt = b.select_v2(b.logical_or(below, above)?, zeros, dy)?;
    let glo = b.select_v2(below, dy, zeros)?;
    let ghi = b.select_v2(above, dy, zeros)?;
    Ok(vec![
        Some(sum_to(b, gt, t)?),
        Some(sum_to(b, glo, lo)?),
        Some(sum_to(b, ghi, hi)?),
    ])
}

fn add_n_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let n = cx.num_inputs();
    let mut cur = cx.input(n.saturating_sub(1))?.clone();
    for i in (0..n.saturating_sub(1)).rev() {
        cur = cx.input(i)?.merge(&cur).map_err(|_| {
            cx.error(format!(
                "AddN inputs must all have the same shape: '{}' has shape {} but '{}' has shape {}",
                cx.input_names[i],
                cx.input_shapes[i],
                cx.input_names[n - 1],
                cx.input_shapes[n - 1]
            ))
        })?;
    }
    Ok(vec![cur])
}

fn select_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let data = cx.merge_inputs(1, 2)?;
    let cond = cx.input(0)?;
    let (Some(cond_rank), Some(data_rank)) = (cond.rank(), data.rank()) else {
        return Ok(vec![data]);
    };
    let mismatch = || {
        cx.error(format!(
            "condition '{}' has shape {cond}, which must be a scalar, the shape of the values \
             ({data}, from '{}' and '{}') or a vector over their first dimension",
            cx.input_names[0], cx.input_names[1], cx.input_names[2]
        ))
    };
    if cond_rank == 0 {
        return Ok(vec![data]);
    }
    if cond_rank != 1 || data_rank == 0 {
        return Ok(vec![data.merge(cond).map_err(|_| mismatch())?]);
    }
    // A vector condition picks whole rows: it must match the first dimension.
    cond.dim(0).merge(data.dim(0)).ok_or_else(mismatch)?;
    Ok(vec![data])
}

fn select_v2_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let values = cx.broadcast(1, 2)?;
    let values_name = format!(
        "the values ('{}' and '{}')",
        cx.input_names[1], cx.input_names[2]
    );
    let cond_name = format!("condition '{}'", cx.input_names[0]);
    Ok(vec![broadcast_named(
        cx,
        cx.input(0)?,
        &cond_name,
        &values,
        &values_name,
    )?])
}

impl Builder {
    /// The elementwise sum of `inputs`, which must all have the same shape and dtype.
    pub fn add_n(&self, inputs: &[Output]) -> Result<Output> {
        self.op("AddN").input_list(inputs).build_output()
    }

    /// `Select`: elements of `t` where `condition` is true, else of `e`.
    pub fn select(&self, condition: Output, t: Output, e: Output) -> Result<Output> {
        self.op("Select")
            .input(condition)
            .input(t)
            .input(e)
            .build_output()
    }

    /// `SelectV2` (`tf.where` with values): like [`Builder::select`], broadcasting all three.
    pub fn select_v2(&self, condition: Output, t: Output, e: Output) -> Result<Output> {
        self.op("SelectV2")
            .input(condition)
            .input(t)
            .input(e)
            .build_output()
    }

    /// `t` clipped elementwise to `[clip_value_min, clip_value_max]`.
    pub fn clip_by_value(
        &self,
        t: Output,
        clip_value_min: Output,
        clip_value_max: Output,
    ) -> Result<Output> {
        self.op("ClipByValue")
            .input(t)
            .input(clip_value_min)
            .input(clip_value_max)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    #[test]
    fn add_n() {
        let a = |n: i64| attrs(&[("T", DType::F32.into()), ("N", n.into())]);
        assert_eq!(infer("AddN", &a(3), "[2,?];[?,3];?").unwrap(), "[2,3]");
        assert_eq!(infer("AddN", &a(1), "[5]").unwrap(), "[5]");
        let e = infer("AddN", &a(2), "[2];[3]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("in1:0") && e.message.contains("[3]"),
            "{e}"
        );
        assert!(infer("AddN", &a(0), "").is_err());
    }

    #[test]
    fn select() {
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Select", &a, "[2,3];[2,?];[?,3]").unwrap(), "[2,3]");
        assert_eq!(infer("Select", &a, "[];[2,3];[2,3]").unwrap(), "[2,3]");
        assert_eq!(infer("Select", &a, "[2];[2,3];[2,3]").unwrap(), "[2,3]");
        assert_eq!(infer("Select", &a, "?;[2,3];[2,3]").unwrap(), "[2,3]");
        assert_eq!(infer("Select", &a, "[?,?];[2,3];?").unwrap(), "[2,3]");
        assert!(infer("Select", &a, "[3];[2,3];[2,3]").is_err());
        assert!(infer("Select", &a, "[2,3];[2,3];[3,2]").is_err());
        let e = infer("Select", &a, "[3,2];[2,3];[2,3]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[3,2]"),
            "{e}"
        );
    }

    #[test]
    fn select_v2_broadcasts() {
        let a = attrs(&[("T", DType::I32.into())]);
        assert_eq!(infer("SelectV2", &a, "[2,1];[3];[]").unwrap(), "[2,3]");
        assert_eq!(infer("SelectV2", &a, "[];[2,3];[2,1]").unwrap(), "[2,3]");
        let e = infer("SelectV2", &a, "[4];[2,3];[3]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[4]"),
            "{e}"
        );
    }

    #[test]
    fn clip_by_value() {
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("ClipByValue", &a, "[2,?];[];[]").unwrap(), "[2,?]");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [-1i64, 3]).unwrap();
        let s = b.add_n(&[x, y, x]).unwrap();
        assert_eq!(b.shape(s).to_string(), "[2,3]");
        let c = b.placeholder("c", DType::Bool, [2i64, 3]).unwrap();
        assert_eq!(b.shape(b.select(c, x, y).unwrap()).to_string(), "[2,3]");
        let z = b.placeholder("z", DType::F32, [4i64]).unwrap();
        let e = b.add_n(&[x, z]).unwrap_err().to_string();
        assert!(
            e.contains("x:0") && e.contains("z:0") && e.contains("[4]"),
            "{e}"
        );
    }
}
