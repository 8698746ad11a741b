//! Ops that change a tensor's shape but not its values: `Reshape`, `Squeeze`, `ExpandDims`.
//!
//! Gradients: `dy` reshaped back to the input's shape.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{name, scalar_input};
use crate::gradient::reshape_like;
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Reshape")
            .input("tensor: T")
            .input("shape: Tshape")
            .output("output: T")
            .attr("T: type")
            .attr("Tshape: {int32, int64} = DT_INT32")
            .shape_fn(reshape_shape),
    )?;
    r.register(
        OpDef::build("Squeeze")
            .input("input: T")
            .output("output: T")
            .attr("T: type")
            .attr("squeeze_dims: list(int) >= 0 = []")
            .shape_fn(squeeze_shape),
    )?;
    r.register(
        OpDef::build("ExpandDims")
            .input("input: T")
            .input("dim: Tdim")
            .output("output: T")
            .attr("T: type")
            .attr("Tdim: {int32, int64} = DT_INT32")
            .shape_fn(expand_dims_shape),
    )?;
    // The gradient is `dy` reshaped back to the input's shape.
    r.gradient("Reshape", |c| {
        Ok(c.only(reshape_like(c.b, c.dy(0)?, c.x(0))?))
    })?;
    r.gradient("ExpandDims", |c| {
        Ok(c.only(reshape_like(c.b, c.dy(0)?, c.x(0))?))
    })?;
    r.gradient("Squeeze", |c| {
        Ok(c.only(reshape_like(c.b, c.dy(0)?, c.x(0))?))
    })?;
    Ok(())
}

/// The product of the known dims (`None` on overflow) and the positions of unknown ones.
fn known_product(dims: &[Dim]) -> Option<(u128, Vec<usize>)> {
    let mut product = 1u128;
    let mut unknown = vec![];
    for (i, d) in dims.iter().enumerate() {
        match d {
            Dim::Known(n) => product = product.checked_mul(*n as u128)?,
            Dim::Unknown => unknown.push(i),
        }
    }
    Some((product, unknown))
}

/// TensorFlow's Reshape inference: the target shape comes from the `shape` input (a
/// constant, or a `Shape` op); one unknown target dim is resolved from the element count
/// when the input is otherwise known; known element counts must agree.
fn reshape_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    cx.with_rank(1, 1)?;
    if let Some(values) = cx.input_ints(1)? {
        if values.iter().filter(|&&v| v == -1).count() > 1 {
            return Err(cx.error(format!(
                "shape input '{}' = {values:?} has more than one -1; only one dimension can be inferred",
                name(cx, 1)
            )));
        }
    }
    let out = cx.input_as_shape(1)?;
    let (Some(out_dims), Some(in_dims)) = (out.dims(), input.dims()) else {
        return Ok(vec![out]);
    };
    let (Some((out_known, out_unknown)), Some((in_known, in_unknown))) =
        (known_product(out_dims), known_product(in_dims))
    else {
        return Ok(vec![out]);
    };
    let mismatch = || {
        cx.error(format!(
            "cannot reshape '{}' with shape {input} ({}) to shape {out} ({}) given by '{}'",
            name(cx, 0),
            elements(in_known, &in_unknown),
            elements(out_known, &out_unknown),
            name(cx, 1)
        ))
    };
    let mut dims = out_dims.to_vec();
    match (in_unknown.len(), out_unknown.len()) {
        (0, 0) if in_known != out_known => return Err(mismatch()),
        (0, _) if out_known > 0 => {
            if in_known % out_known != 0 {
                return Err(mismatch());
            }
            if let [idx] = out_unknown[..] {
                let n = usize::try_from(in_known / out_known).map_err(|_| mismatch())?;
                dims[idx] = Dim::Known(n);
            }
        }
        (_, 0) if in_known > 0 && out_known % in_known != 0 => return Err(mismatch()),
        (1, 1) if in_known == out_known => dims[out_unknown[0]] = in_dims[in_unknown[0]],
        _ => {}
    }
    Ok(vec![Shape::from(dims)])
}

/// "N elements" or "a multiple of N elements" for messages.
fn elements(known: u128, unknown: &[usize]) -> String {
    if unknown.is_empty() {
        format!("{known} elements")
    } else {
        format!("a multiple of {known} elements")
    }
}

fn squeeze_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let Some(dims) = input.dims() else {
        return Ok(vec![Shape::unknown()]);
    };
    let rank = dims.len();
    let axes = cx
        .attr_ints("squeeze_dims")?
        .iter()
        .map(|&a| {
            cx.canonical_axis(a, rank).map_err(|_| {
                cx.error(format!(
                    "squeeze_dims entry {a} is out of range for '{}' with shape {input} (rank {rank})",
                    name(cx, 0)
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = vec![];
    for (i, &d) in dims.iter().enumerate() {
        let listed = axes.contains(&i);
        match d {
            // Assume a listed unknown dim is 1; squeezing "all 1s" past an unknown dim
            // leaves nothing known.
            Dim::Unknown if listed => continue,
            Dim::Unknown if axes.is_empty() => return Ok(vec![Shape::unknown()]),
            Dim::Known(1) if listed || axes.is_empty() => continue,
            Dim::Known(n) if listed => {
                return Err(cx.error(format!(
                "cannot squeeze dimension {i} of '{}' with shape {input}: its size is {n}, not 1",
                name(cx, 0)
            )))
            }
            _ => out.push(d),
        }
    }
    Ok(vec![Shape::from(out)])
}

fn expand_dims_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let axis = scalar_input(cx, 1)?;
    let Some(dims) = input.dims() else {
        return Ok(vec![Shape::unknown()]);
    };
    let Some(axis) = axis else {
        return Ok(vec![Shape::unknown_dims(dims.len() + 1)]);
    };
    let rank = dims.len() as i64;
    if axis < -rank - 1 || axis > rank {
        return Err(cx.error(format!(
            "dim {axis} given by '{}' is not in [{}, {rank}] for '{}' with shape {input}",
            name(cx, 1),
            -rank - 1,
            name(cx, 0)
        )));
    }
    let at = if axis < 0 { axis + rank + 1 } else { axis } as usize;
    let mut out = dims.to_vec();
    out.insert(at, Dim::Known(1));
    Ok(vec![Shape::from(out)])
}

impl Builder {
    /// `tf.reshape` to the shape held by the int vector `shape`.
    pub fn reshape(&self, x: Output, shape: Output) -> Result<Output> {
        self.op("Reshape").input(x).input(shape).build_output()
    }

    /// `tf.reshape` to a constant shape (one entry may be -1).
    pub fn reshape_to(&self, x: Output, shape: &[i64]) -> Result<Output> {
        let s = self.index_const(shape)?;
        self.reshape(x, s)
    }

    /// `tf.squeeze`: removes the listed size-1 dims (all size-1 dims when `axes` is empty).
    pub fn squeeze(&self, x: Output, axes: &[i64]) -> Result<Output> {
        self.op("Squeeze")
            .input(x)
            .attr("squeeze_dims", axes.to_vec())
            .build_output()
    }

    /// `tf.expand_dims`: inserts a size-1 dim at `axis` (negative counts from the end).
    pub fn expand_dims(&self, x: Output, axis: i64) -> Result<Output> {
        let a = self.index_scalar(axis)?;
        self.op("ExpandDims").input(x).input(a).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{AttrValue, DType, Tensor};

    fn t() -> rill_graph::Attrs {
        attrs(&[("T", DType::F32.into())])
    }

    fn reshape(input: &str, shape: &[i32]) -> Result<String> {
        let v = Tensor::vector(shape.to_vec());
        infer_with_values(
            "Reshape",
            &t(),
            &format!("{input};[{}]", shape.len()),
            &[None, Some(v)],
        )
    }

    #[test]
    fn reshape_with_constant_shape() {
        assert_eq!(reshape("[2,3]", &[3, 2]).unwrap(), "[3,2]");
        assert_eq!(reshape("[2,3]", &[-1]).unwrap(), "[6]");
        assert_eq!(reshape("[2,3,4]", &[-1, 4]).unwrap(), "[6,4]");
        assert_eq!(reshape("[?,3,4]", &[-1, 12]).unwrap(), "[?,12]");
        assert_eq!(reshape("[?,3,4]", &[-1, 4]).unwrap(), "[?,4]");
        assert_eq!(reshape("[?,4]", &[-1, 4]).unwrap(), "[?,4]");
        assert_eq!(reshape("?", &[-1, 4]).unwrap(), "[?,4]");
        assert_eq!(reshape("[0,4]", &[-1, 0]).unwrap(), "[?,0]");
        assert_eq!(
            reshape("[2,3]", &[]).unwrap_err().code,
            rill_graph::Code::InvalidArgument
        );
        assert_eq!(reshape("[1,1]", &[]).unwrap(), "[]");
    }

    #[test]
    fn reshape_errors() {
        let e = reshape("[2,3]", &[4, 2]).unwrap_err();
        assert!(
            e.message.contains("in0:0")
                && e.message.contains("[2,3]")
                && e.message.contains("6 elements"),
            "{e}"
        );
        assert!(reshape("[2,3]", &[-1, 4]).is_err());
        assert!(reshape("[?,3]", &[4, 2]).is_err());
        assert!(reshape("[2,3]", &[-1, -1]).is_err());
        assert!(reshape("[2,3]", &[-2, 3]).is_err());
        assert!(infer("Reshape", &t(), "[2,3];[2,1]").is_err());
    }

    #[test]
    fn reshape_with_unknown_shape_input() {
        assert_eq!(infer("Reshape", &t(), "[2,3];[3]").unwrap(), "[?,?,?]");
        assert_eq!(infer("Reshape", &t(), "[2,3];[?]").unwrap(), "?");
    }

    #[test]
    fn squeeze() {
        let all = t();
        assert_eq!(infer("Squeeze", &all, "[1,2,1,3]").unwrap(), "[2,3]");
        assert_eq!(infer("Squeeze", &all, "[1,?,3]").unwrap(), "?");
        assert_eq!(infer("Squeeze", &all, "?").unwrap(), "?");
        let some = attrs(&[
            ("T", DType::F32.into()),
            ("squeeze_dims", AttrValue::IntList(vec![0, -1])),
        ]);
        assert_eq!(infer("Squeeze", &some, "[1,2,1]").unwrap(), "[2]");
        assert_eq!(infer("Squeeze", &some, "[?,1,?]").unwrap(), "[1]");
        let e = infer("Squeeze", &some, "[1,2,3]").unwrap_err();
        assert!(
            e.message.contains("dimension 2") && e.message.contains("[1,2,3]"),
            "{e}"
        );
        assert!(infer("Squeeze", &some, "[1]").is_ok());
        let far = attrs(&[
            ("T", DType::F32.into()),
            ("squeeze_dims", AttrValue::IntList(vec![3])),
        ]);
        assert!(infer("Squeeze", &far, "[1,1]").is_err());
    }

    #[test]
    fn expand_dims() {
        let a = t();
        let at = |axis: i32, input: &str| {
            infer_with_values(
                "ExpandDims",
                &a,
                &format!("{input};[]"),
                &[None, Some(Tensor::scalar(axis))],
            )
        };
        assert_eq!(at(0, "[2,3]").unwrap(), "[1,2,3]");
        assert_eq!(at(2, "[2,3]").unwrap(), "[2,3,1]");
        assert_eq!(at(-1, "[2,3]").unwrap(), "[2,3,1]");
        assert_eq!(at(-3, "[2,3]").unwrap(), "[1,2,3]");
        assert_eq!(at(0, "[]").unwrap(), "[1]");
        assert_eq!(at(0, "?").unwrap(), "?");
        assert!(at(3, "[2,3]").is_err());
        assert!(at(-4, "[2,3]").is_err());
        assert_eq!(infer("ExpandDims", &a, "[2,3];[]").unwrap(), "[?,?,?]");
        let two = Tensor::vector(vec![0i32, 1]);
        assert!(infer_with_values("ExpandDims", &a, "[2];[2]", &[None, Some(two)]).is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3, 4]).unwrap();
        let r = b.reshape_to(x, &[-1, 12]).unwrap();
        assert_eq!(b.shape(r).to_string(), "[?,12]");
        // A shape that comes from a Shape op keeps what is known.
        let like = b.reshape(r, b.shape_of(x).unwrap()).unwrap();
        assert_eq!(b.shape(like).to_string(), "[?,3,4]");
        let e = b.expand_dims(x, -1).unwrap();
        assert_eq!(b.shape(e).to_string(), "[?,3,4,1]");
        assert_eq!(b.shape(b.squeeze(e, &[-1]).unwrap()).to_string(), "[?,3,4]");
        let err = b.reshape_to(x, &[5, 5]).unwrap_err();
        assert!(err.to_string().contains("Reshape"), "{err}");
    }
}
