//! Forwarding ops: `Identity`, `IdentityN`, `StopGradient`, `PreventGradient`, `Snapshot`,
//! `EnsureShape`, and the checks `CheckNumerics` / `CheckNumericsV2`.
//!
//! Invariant: every op here returns its inputs unchanged, sharing their buffers (tensors
//! are copy-on-write, so `Snapshot` needs no copy); the checks only add errors.

use rill_graph::{AttrValue, Buffer, Error, Node, Result, Shape};

use super::util::{attr_string, kernel, shape_str, take};
use crate::{unsupported_dtype, Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    for op in ["Identity", "StopGradient", "PreventGradient", "Snapshot"] {
        r.cpu(op, identity);
    }
    r.cpu("IdentityN", identity_n);
    r.cpu("EnsureShape", ensure_shape);
    r.cpu("CheckNumerics", |n| check_numerics(n, false));
    r.cpu("CheckNumericsV2", |n| check_numerics(n, true));
}

fn identity(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        Ok(vec![x])
    })
}

fn identity_n(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(Ok)
}

fn ensure_shape(node: &Node) -> Result<Box<dyn Kernel>> {
    let expected = node
        .attr("shape")
        .and_then(AttrValue::as_shape)
        .cloned()
        .unwrap_or_else(Shape::unknown);
    let name = node.name.clone();
    kernel(move |inputs| {
        let [x] = take(inputs)?;
        if !expected.is_compatible_with(&x.shape()) {
            return Err(Error::invalid_argument(format!(
                "Shape of tensor {name} {} is not compatible with expected shape {expected}.",
                shape_str(x.dims())
            )));
        }
        Ok(vec![x])
    })
}

/// Which anomalies a float tensor holds.
#[derive(Default)]
struct Anomalies {
    nan: bool,
    neg_inf: bool,
    pos_inf: bool,
}

fn scan<T: Copy>(v: &[T], to_f64: impl Fn(T) -> f64) -> Anomalies {
    let mut a = Anomalies::default();
    for &x in v {
        let x = to_f64(x);
        if x.is_nan() {
            a.nan = true;
        } else if x == f64::INFINITY {
            a.pos_inf = true;
        } else if x == f64::NEG_INFINITY {
            a.neg_inf = true;
        }
    }
    a
}

fn describe(a: &Anomalies, signed: bool) -> Option<String> {
    let mut parts: Vec<&str> = vec![];
    if signed {
        if a.neg_inf {
            parts.push("-Inf");
        }
        if a.pos_inf {
            parts.push("+Inf");
        }
    } else if a.neg_inf || a.pos_inf {
        parts.push("Inf");
    }
    if a.nan {
        parts.push("NaN");
    }
    match parts.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        [a, b] => Some(format!("{a} and {b}")),
        [a, b, c] => Some(format!("{a}, {b}, and {c}")),
        _ => None,
    }
}

fn check_numerics(node: &Node, v2: bool) -> Result<Box<dyn Kernel>> {
    let message = attr_string(node, "message", "")?;
    let op = node.op_name().to_string();
    kernel(move |inputs| {
        let [x] = take::<1>(inputs)?;
        let found = match x.buffer() {
            Buffer::F32(v) => scan(v, |x| x as f64),
            Buffer::F64(v) => scan(v, |x| x),
            Buffer::F16(v) => scan(v, |x| x.to_f64()),
            Buffer::BF16(v) => scan(v, |x| x.to_f64()),
            _ => return Err(unsupported_dtype(&op, x.dtype())),
        };
        if let Some(status) = describe(&found, v2) {
            return Err(Error::invalid_argument(format!(
                "{message} : Tensor had {status} values"
            )));
        }
        Ok(vec![x])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{AttrValue, Code, DType, Shape, Tensor};

    #[test]
    fn forwards_any_dtype() {
        let s = Tensor::vector(vec![b"a".to_vec(), b"bc".to_vec()]);
        for op in ["Identity", "StopGradient", "PreventGradient", "Snapshot"] {
            assert_eq!(run1(op, &[], vec![s.clone()]).unwrap(), s);
        }
        let b = Tensor::scalar(true);
        let out = run(
            "IdentityN",
            &[("T", AttrValue::TypeList(vec![DType::String, DType::Bool]))],
            vec![s.clone(), b.clone()],
        )
        .unwrap();
        assert_eq!(out, vec![s, b]);
    }

    #[test]
    fn ensure_shape() {
        let x = f(&[3, 2], &[0.0; 6]);
        assert!(run1(
            "EnsureShape",
            &[("shape", Shape::from([-1i64, 2]).into())],
            vec![x.clone()]
        )
        .is_ok());
        let (code, msg) = run_err(
            "EnsureShape",
            &[("shape", Shape::from([3i64, 3]).into())],
            vec![x],
        );
        assert_eq!(code, Code::InvalidArgument);
        assert!(
            msg.contains("[3,2] is not compatible with expected shape [3,3]"),
            "{msg}"
        );
    }

    #[test]
    fn check_numerics() {
        let a = [("message", AttrValue::from("bad grad"))];
        let ok = f(&[2], &[1.0, -2.0]);
        assert_eq!(run1("CheckNumerics", &a, vec![ok.clone()]).unwrap(), ok);
        let (code, msg) = run_err("CheckNumerics", &a, vec![f(&[2], &[f32::NAN, 1.0])]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(msg, "bad grad : Tensor had NaN values");
        let (_, msg) = run_err(
            "CheckNumerics",
            &a,
            vec![f(&[3], &[f32::NAN, f32::NEG_INFINITY, 0.0])],
        );
        assert_eq!(msg, "bad grad : Tensor had Inf and NaN values");
        let (_, msg) = run_err(
            "CheckNumericsV2",
            &a,
            vec![f(&[3], &[f32::NAN, f32::NEG_INFINITY, f32::INFINITY])],
        );
        assert_eq!(msg, "bad grad : Tensor had -Inf, +Inf, and NaN values");
        let h = Tensor::vector(vec![half::f16::INFINITY]);
        assert!(run("CheckNumerics", &a, vec![h]).is_err());
        assert_eq!(
            run_err("CheckNumerics", &a, vec![i(&[1], &[1])]).0,
            Code::Unimplemented
        );
    }
}
