//! Repeating a tensor: `Tile` (whole copies per dim) and `BroadcastTo` (size-1 dims
//! stretched to a target shape).
//!
//! Gradients: both sum `dy` over the repeated copies.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{mul_dims, name, vector_len};
use crate::gradient::{reshape_like, sum_axes, sum_to, GradContext};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Tile")
            .input("input: T")
            .input("multiples: Tmultiples")
            .output("output: T")
            .attr("T: type")
            .attr("Tmultiples: {int32, int64} = DT_INT32")
            .shape_fn(tile_shape),
    )?;
    r.register(
        OpDef::build("BroadcastTo")
            .input("input: T")
            .input("shape: Tidx")
            .output("output: T")
            .attr("T: type")
            .attr("Tidx: {int32, int64} = DT_INT32")
            .shape_fn(broadcast_to_shape),
    )?;
    r.gradient("Tile", tile_grad)?;
    // BroadcastTo: `dy` summed over the broadcast dims.
    r.gradient("BroadcastTo", |c| {
        Ok(vec![Some(sum_to(c.b, c.dy(0)?, c.x(0))?), None])
    })?;
    Ok(())
}

/// `Tile` (TensorFlow's rule): `dy` reshaped to `[m0, d0, m1, d1, ...]` (multiples
/// interleaved with the input dims) and summed over the multiples' axes.
fn tile_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, multiples) = (c.x(0), c.x(1));
    let dy = c.dy(0)?;
    if let (Some(dims), Some(m)) = (c.static_dims(x), c.const_ints(multiples)) {
        if m.len() == dims.len() {
            let split: Vec<i64> = m
                .iter()
                .zip(&dims)
                .flat_map(|(&m, &d)| [m, d as i64])
                .collect();
            let axes: Vec<i64> = (0..dims.len() as i64).map(|i| 2 * i).collect();
            let g = b.sum(b.reshape_to(dy, &split)?, &axes, false)?;
            return Ok(vec![Some(g), None]);
        }
    }
    let shape = b.shape_of_as(x, c.dtype(multiples))?;
    let pairs = b.transpose_perm(b.stack(&[multiples, shape], 0)?, &[1, 0])?;
    let split = b.reshape_to(pairs, &[-1])?;
    let (zero, two) = (b.index_scalar(0)?, b.index_scalar(2)?);
    let axes = b.range(zero, b.size(split)?, two)?;
    let g = sum_axes(b, b.reshape(dy, split)?, axes, false)?;
    Ok(vec![Some(reshape_like(b, g, x)?), None])
}

fn tile_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let len = vector_len(cx, 1)?;
    if let Some(m) = cx.input_ints(1)? {
        if let Some(bad) = m.iter().find(|&&v| v < 0) {
            return Err(cx.error(format!(
                "multiples given by '{}' must be non-negative, got {bad} in {m:?}",
                name(cx, 1)
            )));
        }
    }
    if let (Some(r), Some(n)) = (input.rank(), len.known()) {
        if r != n {
            return Err(cx.error(format!(
                "multiples '{}' has {n} entries but '{}' has shape {input} (rank {r})",
                name(cx, 1),
                name(cx, 0)
            )));
        }
    }
    let multiples = cx.input_as_shape(1)?;
    let rank = multiples.rank().or(input.rank());
    let Some(rank) = rank else {
        return Ok(vec![Shape::unknown()]);
    };
    if input.rank().is_some_and(|r| r != rank) {
        return Err(cx.error(format!(
            "multiples '{}' has {rank} entries but '{}' has shape {input}",
            name(cx, 1),
            name(cx, 0)
        )));
    }
    let dims = (0..rank as i64).map(|i| mul_dims(input.dim(i), multiples.dim(i)));
    Ok(vec![Shape::from_dims(dims)])
}

fn broadcast_to_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    vector_len(cx, 1)?;
    let target = cx.input_as_shape(1)?;
    let input = cx.input(0)?;
    let (Some(out), Some(inp)) = (target.dims(), input.dims()) else {
        return Ok(vec![target]);
    };
    let bad = || {
        cx.error(format!(
            "cannot broadcast '{}' with shape {input} to shape {target} given by '{}'",
            name(cx, 0),
            name(cx, 1)
        ))
    };
    if inp.len() > out.len() {
        return Err(bad());
    }
    let offset = out.len() - inp.len();
    let mut dims = out.to_vec();
    for (o, &i) in dims[offset..].iter_mut().zip(inp) {
        *o = match (*o, i) {
            (o, Dim::Known(1)) => o,
            (Dim::Known(o), Dim::Known(i)) if o == i => Dim::Known(o),
            (Dim::Known(_), Dim::Known(_)) => return Err(bad()),
            (Dim::Unknown, Dim::Known(i)) => Dim::Known(i),
            (o, Dim::Unknown) => o,
        };
    }
    Ok(vec![Shape::from(dims)])
}

impl Builder {
    /// `tf.tile` by the int vector `multiples`.
    pub fn tile(&self, x: Output, multiples: Output) -> Result<Output> {
        self.op("Tile").input(x).input(multiples).build_output()
    }

    /// `tf.tile` by constant `multiples`.
    pub fn tile_const(&self, x: Output, multiples: &[i64]) -> Result<Output> {
        let m = self.index_const(multiples)?;
        self.tile(x, m)
    }

    /// `tf.broadcast_to` the shape held by the int vector `shape`.
    pub fn broadcast_to(&self, x: Output, shape: Output) -> Result<Output> {
        self.op("BroadcastTo").input(x).input(shape).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn with_vector(op: &str, input: &str, v: Vec<i32>) -> Result<String> {
        let a = attrs(&[("T", DType::F32.into())]);
        let n = v.len();
        infer_with_values(
            op,
            &a,
            &format!("{input};[{n}]"),
            &[None, Some(Tensor::vector(v))],
        )
    }

    #[test]
    fn tile() {
        assert_eq!(with_vector("Tile", "[2,3]", vec![2, 1]).unwrap(), "[4,3]");
        assert_eq!(with_vector("Tile", "[?,3]", vec![2, 0]).unwrap(), "[?,0]");
        assert_eq!(with_vector("Tile", "?", vec![2, 1]).unwrap(), "[?,?]");
        assert!(with_vector("Tile", "[2,3]", vec![2]).is_err());
        assert!(with_vector("Tile", "[2,3]", vec![2, -1]).is_err());
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Tile", &a, "[2,3];[2]").unwrap(), "[?,?]");
        assert_eq!(infer("Tile", &a, "[2,3];[?]").unwrap(), "[?,?]");
        assert_eq!(infer("Tile", &a, "?;[?]").unwrap(), "?");
    }

    #[test]
    fn broadcast_to() {
        assert_eq!(
            with_vector("BroadcastTo", "[3]", vec![2, 3]).unwrap(),
            "[2,3]"
        );
        assert_eq!(
            with_vector("BroadcastTo", "[1,3]", vec![4, 2, 3]).unwrap(),
            "[4,2,3]"
        );
        assert_eq!(
            with_vector("BroadcastTo", "?", vec![4, 2]).unwrap(),
            "[4,2]"
        );
        let e = with_vector("BroadcastTo", "[2]", vec![2, 3]).unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[2,3]"),
            "{e}"
        );
        assert!(with_vector("BroadcastTo", "[1,1,1]", vec![2, 3]).is_err());
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("BroadcastTo", &a, "[5,1];[2]").unwrap(), "[5,?]");
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 1]).unwrap();
        assert_eq!(
            b.shape(b.tile_const(x, &[1, 5]).unwrap()).to_string(),
            "[?,5]"
        );
        let like = b.placeholder("like", DType::F32, [3i64, 4]).unwrap();
        let s = b.shape_of(like).unwrap();
        assert_eq!(b.shape(b.broadcast_to(x, s).unwrap()).to_string(), "[3,4]");
        let t = b.tile(x, b.index_const(&[2, 2]).unwrap()).unwrap();
        assert_eq!(b.shape(t).to_string(), "[?,2]");
    }
}
