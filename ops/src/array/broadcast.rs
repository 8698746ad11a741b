//! Broadcasting arithmetic on shape vectors: `BroadcastArgs` (the broadcast shape) and
//! `BroadcastGradientArgs` (the axes each operand's gradient is summed over).
//!
//! When both shape vectors are known at graph time (constants, or `Shape` ops of fully
//! defined tensors) the output lengths are exact and incompatible shapes are errors.
//!
//! Neither is differentiable.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{known_shape_vector, name, vector, vector_len};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("BroadcastArgs")
            .input("s0: T")
            .input("s1: T")
            .output("r0: T")
            .attr("T: {int32, int64} = DT_INT32")
            .shape_fn(broadcast_args_shape),
    )?;
    r.register(
        OpDef::build("BroadcastGradientArgs")
            .input("s0: T")
            .input("s1: T")
            .output("r0: T")
            .output("r1: T")
            .attr("T: {int32, int64} = DT_INT32")
            .shape_fn(broadcast_gradient_args_shape),
    )?;
    r.no_gradient("BroadcastArgs")?;
    r.no_gradient("BroadcastGradientArgs")?;
    Ok(())
}

/// The broadcast of two shape vectors and the axes each operand's gradient is summed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastReduction {
    /// The broadcast shape.
    pub shape: Vec<i64>,
    /// Output axes where the first shape's (1-padded) dim is 1.
    pub r0: Vec<i64>,
    /// Output axes where the second shape's (1-padded) dim is 1.
    pub r1: Vec<i64>,
}

/// Broadcasts two shape vectors and finds the axes where each operand's (1-padded) dim is
/// 1 — the axes its gradient is reduced over, as TensorFlow's BCast computes them. `None`
/// when the shapes are incompatible.
pub fn broadcast_with_reduction(a: &[i64], b: &[i64]) -> Option<BroadcastReduction> {
    let rank = a.len().max(b.len());
    let padded = |s: &[i64], i: usize| {
        if i + s.len() >= rank {
            s[i + s.len() - rank]
        } else {
            1
        }
    };
    let (mut out, mut ra, mut rb) = (vec![], vec![], vec![]);
    for i in 0..rank {
        let (x, y) = (padded(a, i), padded(b, i));
        out.push(match (x, y) {
            (1, y) => y,
            (x, 1) => x,
            (x, y) if x == y => x,
            _ => return None,
        });
        if x == 1 {
            ra.push(i as i64);
        }
        if y == 1 {
            rb.push(i as i64);
        }
    }
    Some(BroadcastReduction {
        shape: out,
        r0: ra,
        r1: rb,
    })
}

fn known_pair(cx: &InferenceContext) -> Result<Option<BroadcastReduction>> {
    let (Some(a), Some(b)) = (known_shape_vector(cx, 0)?, known_shape_vector(cx, 1)?) else {
        return Ok(None);
    };
    broadcast_with_reduction(&a, &b).map(Some).ok_or_else(|| {
        cx.error(format!(
            "incompatible shapes for broadcasting: '{}' holds {a:?} and '{}' holds {b:?}",
            name(cx, 0),
            name(cx, 1)
        ))
    })
}

fn broadcast_args_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let (a, b) = (vector_len(cx, 0)?, vector_len(cx, 1)?);
    known_pair(cx)?;
    Ok(vec![match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => vector(x.max(y)),
        _ => vector(Dim::Unknown),
    }])
}

fn broadcast_gradient_args_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    vector_len(cx, 0)?;
    vector_len(cx, 1)?;
    Ok(match known_pair(cx)? {
        Some(r) => vec![vector(r.r0.len()), vector(r.r1.len())],
        None => vec![vector(Dim::Unknown), vector(Dim::Unknown)],
    })
}

impl Builder {
    /// `tf.broadcast_dynamic_shape`: the broadcast of two shape vectors.
    pub fn broadcast_args(&self, s0: Output, s1: Output) -> Result<Output> {
        self.op("BroadcastArgs").input(s0).input(s1).build_output()
    }

    /// `BroadcastGradientArgs`: for shape vectors `s0` and `s1`, the axes to sum each
    /// operand's gradient over, as `(r0, r1)`.
    pub fn broadcast_gradient_args(&self, s0: Output, s1: Output) -> Result<(Output, Output)> {
        let id = self
            .op("BroadcastGradientArgs")
            .input(s0)
            .input(s1)
            .build()?;
        Ok((id.output(0), id.output(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    fn with_values(op: &str, a: Vec<i32>, b: Vec<i32>) -> Result<String> {
        let (n, m) = (a.len(), b.len());
        let v = [Some(Tensor::vector(a)), Some(Tensor::vector(b))];
        infer_with_values(op, &attrs(&[]), &format!("[{n}];[{m}]"), &v)
    }

    #[test]
    fn reduction_axes_follow_tensorflow() {
        let r = broadcast_with_reduction(&[2, 3, 5], &[1]).unwrap();
        assert_eq!((r.r0, r.r1), (vec![], vec![0, 1, 2]));
        let r = broadcast_with_reduction(&[2, 1, 5], &[3, 1]).unwrap();
        assert_eq!(r.shape, vec![2, 3, 5]);
        assert_eq!((r.r0, r.r1), (vec![1], vec![0, 2]));
        let r = broadcast_with_reduction(&[1, 1], &[]).unwrap();
        assert_eq!((r.r0, r.r1), (vec![0, 1], vec![0, 1]));
        assert!(broadcast_with_reduction(&[2], &[3]).is_none());
    }

    #[test]
    fn shapes() {
        assert_eq!(
            with_values("BroadcastGradientArgs", vec![8, 32], vec![32]).unwrap(),
            "[0];[1]"
        );
        assert_eq!(
            with_values("BroadcastArgs", vec![8, 1], vec![5]).unwrap(),
            "[2]"
        );
        assert_eq!(
            infer("BroadcastGradientArgs", &attrs(&[]), "[2];[1]").unwrap(),
            "[?];[?]"
        );
        assert_eq!(
            infer("BroadcastArgs", &attrs(&[]), "[2];[3]").unwrap(),
            "[3]"
        );
        assert_eq!(
            infer("BroadcastArgs", &attrs(&[]), "[?];[3]").unwrap(),
            "[?]"
        );
        let e = with_values("BroadcastGradientArgs", vec![2, 3], vec![4]).unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[2, 3]"),
            "{e}"
        );
        assert!(infer("BroadcastArgs", &attrs(&[]), "[2,1];[3]").is_err());
    }

    #[test]
    fn builder_with_shape_ops() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [4i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [3i64]).unwrap();
        let (r0, r1) = b
            .broadcast_gradient_args(b.shape_of(x).unwrap(), b.shape_of(y).unwrap())
            .unwrap();
        assert_eq!(b.shape(r0).to_string(), "[0]");
        assert_eq!(b.shape(r1).to_string(), "[1]");
        let u = b.placeholder("u", DType::F32, [-1i64, 3]).unwrap();
        let (r0, _) = b
            .broadcast_gradient_args(b.shape_of(u).unwrap(), b.shape_of(y).unwrap())
            .unwrap();
        assert_eq!(b.shape(r0).to_string(), "[?]");
        let s = b
            .broadcast_args(b.shape_of(x).unwrap(), b.shape_of(y).unwrap())
            .unwrap();
        assert_eq!(b.shape(s).to_string(), "[2]");
    }
}
