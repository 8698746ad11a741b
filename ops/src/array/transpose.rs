//! Ops that reorder a tensor's dims or elements: `Transpose`, `InvertPermutation` (used by
//! Transpose's gradient) and `ReverseV2`.
//!
//! Gradients: `Transpose` transposes `dy` by the inverse permutation, `ReverseV2` reverses
//! it; `InvertPermutation` is not differentiable.

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{name, vector_len};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Transpose")
            .input("x: T")
            .input("perm: Tperm")
            .output("y: T")
            .attr("T: type")
            .attr("Tperm: {int32, int64} = DT_INT32")
            .shape_fn(transpose_shape),
    )?;
    r.register(
        OpDef::build("InvertPermutation")
            .input("x: T")
            .output("y: T")
            .attr("T: {int32, int64} = DT_INT32")
            .shape_fn(invert_permutation_shape),
    )?;
    r.register(
        OpDef::build("ReverseV2")
            .input("tensor: T")
            .input("axis: Tidx")
            .output("output: T")
            .attr("Tidx: {int32, int64} = DT_INT32")
            .attr(
                "T: {uint8, int8, uint16, int16, int32, uint32, int64, uint64, bool, bfloat16, half, float, \
                 double, string}",
            )
            .shape_fn(reverse_shape),
    )?;
    r.gradient("Transpose", |c| {
        let b = c.b;
        let inverse = match c.const_ints(c.x(1)).map(|p| normalize_perm(&p)) {
            Some(perm) if is_permutation(&perm) => {
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p as usize] = i as i64;
                }
                b.index_const(&inv)?
            }
            _ => b.invert_permutation(c.x(1))?,
        };
        Ok(vec![Some(b.transpose(c.dy(0)?, inverse)?), None])
    })?;
    r.no_gradient("InvertPermutation")?;
    r.gradient("ReverseV2", |c| {
        let g =
            c.b.op("ReverseV2")
                .input(c.dy(0)?)
                .input(c.x(1))
                .build_output()?;
        Ok(vec![Some(g), None])
    })?;
    Ok(())
}

/// `perm` with negative entries (counted from the end, as TensorFlow allows) made
/// non-negative; entries out of `[-len, len)` are left as they are.
fn normalize_perm(perm: &[i64]) -> Vec<i64> {
    let n = perm.len() as i64;
    perm.iter()
        .map(|&p| if (-n..0).contains(&p) { p + n } else { p })
        .collect()
}

/// Whether `perm` holds each of `0..perm.len()` once.
fn is_permutation(perm: &[i64]) -> bool {
    let mut seen = vec![false; perm.len()];
    perm.iter().all(|&p| {
        let ok = (0..perm.len() as i64).contains(&p) && !seen[p as usize];
        if ok {
            seen[p as usize] = true;
        }
        ok
    })
}

fn transpose_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let perm_len = vector_len(cx, 1)?.known();
    let perm = cx.input_ints(1)?;
    let Some(rank) = input.rank().or(perm_len).or(perm.as_ref().map(Vec::len)) else {
        return Ok(vec![Shape::unknown()]);
    };
    // A one-element perm is ambiguous for an unknown-rank input: scalar or vector.
    if input.rank().is_none() && rank < 2 {
        return Ok(vec![input.clone()]);
    }
    let given = perm.as_ref().map(Vec::len).or(perm_len);
    if let Some(n) = given.filter(|&n| n != rank) {
        return Err(cx.error(format!(
            "perm '{}' has {n} entries but '{}' has shape {input} (rank {rank})",
            name(cx, 1),
            name(cx, 0)
        )));
    }
    let Some(perm) = perm else {
        return Ok(vec![Shape::unknown_dims(rank)]);
    };
    let mut seen = vec![false; rank];
    let mut dims = Vec::with_capacity(rank);
    for &p in &perm {
        let bad = |why: &str| {
            cx.error(format!(
                "perm {perm:?} given by '{}' is not a permutation of 0..{rank} ({why}); '{}' has shape {input}",
                name(cx, 1),
                name(cx, 0)
            ))
        };
        let p = if (-(rank as i64)..0).contains(&p) {
            p + rank as i64
        } else {
            p
        };
        let i = usize::try_from(p)
            .ok()
            .filter(|&i| i < rank)
            .ok_or_else(|| bad("out of range"))?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(bad("repeated entry"));
        }
        dims.push(input.dim(i as i64));
    }
    Ok(vec![Shape::from(dims)])
}

fn invert_permutation_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.with_rank(0, 1)?])
}

fn reverse_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    cx.with_rank(1, 1)?;
    if let (Some(axes), Some(rank)) = (cx.input_ints(1)?, input.rank()) {
        let mut seen = vec![false; rank];
        for &a in &axes {
            let i = cx.canonical_axis(a, rank).map_err(|_| {
                cx.error(format!(
                    "axis {a} given by '{}' is out of range for '{}' with shape {input}",
                    name(cx, 1),
                    name(cx, 0)
                ))
            })?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(cx.error(format!(
                    "axis {i} is given more than once by '{}' ({axes:?})",
                    name(cx, 1)
                )));
            }
        }
    }
    Ok(vec![input.clone()])
}

impl Builder {
    /// `tf.transpose` by the permutation held in the int vector `perm`.
    pub fn transpose(&self, x: Output, perm: Output) -> Result<Output> {
        self.op("Transpose").input(x).input(perm).build_output()
    }

    /// `tf.transpose` by a constant permutation.
    pub fn transpose_perm(&self, x: Output, perm: &[i64]) -> Result<Output> {
        let p = self.index_const(perm)?;
        self.transpose(x, p)
    }

    /// `tf.math.invert_permutation`.
    pub fn invert_permutation(&self, perm: Output) -> Result<Output> {
        self.op("InvertPermutation").input(perm).build_output()
    }

    /// `tf.reverse`: reverses `x` along the constant `axes`.
    pub fn reverse(&self, x: Output, axes: &[i64]) -> Result<Output> {
        let a = self.index_const(axes)?;
        self.op("ReverseV2").input(x).input(a).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn transpose(input: &str, perm: &[i32]) -> Result<String> {
        let a = attrs(&[("T", DType::F32.into())]);
        let p = Tensor::vector(perm.to_vec());
        infer_with_values(
            "Transpose",
            &a,
            &format!("{input};[{}]", perm.len()),
            &[None, Some(p)],
        )
    }

    #[test]
    fn transpose_shapes() {
        assert_eq!(transpose("[2,3,4]", &[2, 0, 1]).unwrap(), "[4,2,3]");
        assert_eq!(transpose("[2,?]", &[1, 0]).unwrap(), "[?,2]");
        assert_eq!(transpose("?", &[1, 0]).unwrap(), "[?,?]");
        assert_eq!(transpose("?", &[0]).unwrap(), "?");
        assert_eq!(transpose("[]", &[]).unwrap(), "[]");
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Transpose", &a, "[2,3];[?]").unwrap(), "[?,?]");
        assert_eq!(infer("Transpose", &a, "?;[3]").unwrap(), "[?,?,?]");
        assert_eq!(infer("Transpose", &a, "?;[?]").unwrap(), "?");
        assert!(infer("Transpose", &a, "[2,3];[3]").is_err());
    }

    #[test]
    fn transpose_errors() {
        let e = transpose("[2,3]", &[0, 2]).unwrap_err();
        assert!(
            e.message.contains("in1:0") && e.message.contains("[2,3]"),
            "{e}"
        );
        assert!(transpose("[2,3]", &[1, 1]).is_err());
        assert!(transpose("[2,3]", &[-3, 0]).is_err());
        // Negative entries count from the end, as in TensorFlow.
        assert_eq!(transpose("[2,3]", &[-1, 0]).unwrap(), "[3,2]");
        assert!(transpose("[2,3]", &[0, 1, 2]).is_err());
    }

    #[test]
    fn invert_permutation() {
        let a = attrs(&[]);
        assert_eq!(infer("InvertPermutation", &a, "[3]").unwrap(), "[3]");
        assert_eq!(infer("InvertPermutation", &a, "?").unwrap(), "[?]");
        assert!(infer("InvertPermutation", &a, "[3,1]").is_err());
    }

    #[test]
    fn reverse() {
        let a = attrs(&[("T", DType::F32.into())]);
        let rev = |input: &str, axes: Vec<i32>| {
            let n = axes.len();
            infer_with_values(
                "ReverseV2",
                &a,
                &format!("{input};[{n}]"),
                &[None, Some(Tensor::vector(axes))],
            )
        };
        assert_eq!(rev("[2,3]", vec![0, -1]).unwrap(), "[2,3]");
        assert_eq!(rev("?", vec![5]).unwrap(), "?");
        assert!(rev("[2,3]", vec![2]).is_err());
        assert!(rev("[2,3]", vec![1, -1]).is_err());
        assert!(infer("ReverseV2", &a, "[2];[]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3, 4]).unwrap();
        let t = b.transpose_perm(x, &[2, 0, 1]).unwrap();
        assert_eq!(b.shape(t).to_string(), "[4,?,3]");
        let p = b.index_const(&[2, 0, 1]).unwrap();
        let inv = b.invert_permutation(p).unwrap();
        assert_eq!(b.shape(b.transpose(t, inv).unwrap()).to_string(), "[?,?,?]");
        assert_eq!(b.shape(b.reverse(x, &[1]).unwrap()).to_string(), "[?,3,4]");
        assert!(b.transpose_perm(x, &[0, 1]).is_err());
    }
}
