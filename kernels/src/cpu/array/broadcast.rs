//! `BroadcastArgs` and `BroadcastGradientArgs`: broadcasting arithmetic on shape vectors.
//!
//! `BroadcastGradientArgs(s0, s1)` returns, for each input, the (ascending) output dims its
//! gradient must be summed over, exactly as TensorFlow's `BCast::grad_{x,y}_reduce_idx`:
//! with both shapes right-aligned and padded with ones, input `i` reduces every dim where
//! its size is 1 — except that identical shapes reduce nothing at all (BCast's fast path,
//! so `[1,2]` vs `[1,2]` gives two empty vectors).
//!
//! Invariant: incompatible shapes are InvalidArgument `Incompatible shapes: [a] vs. [b]`;
//! outputs have the inputs' dtype (int32 or int64).

use rill_graph::{Error, Node, Result};

use super::util::{index_tensor, int_vector, kernel, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("BroadcastArgs", broadcast_args);
    r.cpu("BroadcastGradientArgs", broadcast_gradient_args);
}

fn show(v: &[i64]) -> String {
    let parts: Vec<String> = v.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(","))
}

fn incompatible(a: &[i64], b: &[i64]) -> Error {
    Error::invalid_argument(format!("Incompatible shapes: {} vs. {}", show(a), show(b)))
}

/// The broadcast shape of `a` and `b`.
pub(super) fn broadcast_shape(a: &[i64], b: &[i64]) -> Result<Vec<i64>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for j in 0..rank {
        let da = if j < a.len() { a[a.len() - 1 - j] } else { 1 };
        let db = if j < b.len() { b[b.len() - 1 - j] } else { 1 };
        out[rank - 1 - j] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(incompatible(a, b));
        };
    }
    Ok(out)
}

/// TensorFlow's gradient reduction indices of `a` and `b`.
pub(super) fn gradient_reduce_indices(a: &[i64], b: &[i64]) -> Result<(Vec<i64>, Vec<i64>)> {
    broadcast_shape(a, b)?;
    if a == b {
        return Ok((vec![], vec![]));
    }
    let rank = a.len().max(b.len());
    let ones = |s: &[i64]| -> Vec<i64> {
        let lead = rank - s.len();
        (0..rank)
            .filter(|&k| k < lead || s[k - lead] == 1)
            .map(|k| k as i64)
            .collect()
    };
    Ok((ones(a), ones(b)))
}

fn broadcast_args(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [s0, s1] = take(inputs)?;
        let a = int_vector(&s0, "s0")?;
        let b = int_vector(&s1, "s1")?;
        let out = broadcast_shape(&a, &b)?;
        Ok(vec![index_tensor(s0.dtype(), &[out.len()], out)?])
    })
}

fn broadcast_gradient_args(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [s0, s1] = take(inputs)?;
        let a = int_vector(&s0, "s0")?;
        let b = int_vector(&s1, "s1")?;
        let (r0, r1) = gradient_reduce_indices(&a, &b)?;
        Ok(vec![
            index_tensor(s0.dtype(), &[r0.len()], r0)?,
            index_tensor(s0.dtype(), &[r1.len()], r1)?,
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::gradient_reduce_indices as g;

    #[test]
    fn broadcast_args() {
        let y = run1(
            "BroadcastArgs",
            &[],
            vec![i(&[3], &[2, 1, 5]), i(&[2], &[3, 1])],
        )
        .unwrap();
        assert_eq!(ints(&y), (vec![3], vec![2, 3, 5]));
        let y = run1("BroadcastArgs", &[], vec![l(&[0], &[]), l(&[2], &[0, 1])]).unwrap();
        assert_eq!(longs(&y), (vec![2], vec![0, 1]));
        let (_, msg) = run_err("BroadcastArgs", &[], vec![i(&[2], &[2, 3]), i(&[1], &[4])]);
        assert_eq!(msg, "Incompatible shapes: [2,3] vs. [4]");
    }

    #[test]
    fn gradient_args_match_tensorflow() {
        assert_eq!(g(&[2, 3, 5], &[1]).unwrap(), (vec![], vec![0, 1, 2]));
        assert_eq!(g(&[2, 1], &[1, 3]).unwrap(), (vec![1], vec![0]));
        assert_eq!(g(&[1, 2], &[1, 2]).unwrap(), (vec![], vec![]));
        assert_eq!(g(&[1, 2], &[3, 1, 2]).unwrap(), (vec![0, 1], vec![1]));
        assert_eq!(g(&[], &[2, 2]).unwrap(), (vec![0, 1], vec![]));
        assert_eq!(g(&[1, 1], &[1]).unwrap(), (vec![0, 1], vec![0, 1]));
        assert!(g(&[2], &[3]).is_err());
        let out = run(
            "BroadcastGradientArgs",
            &[],
            vec![i(&[2], &[2, 1]), i(&[2], &[1, 3])],
        )
        .unwrap();
        assert_eq!(ints(&out[0]), (vec![1], vec![1]));
        assert_eq!(ints(&out[1]), (vec![1], vec![0]));
        let out = run(
            "BroadcastGradientArgs",
            &[],
            vec![l(&[3], &[2, 3, 5]), l(&[1], &[1])],
        )
        .unwrap();
        assert_eq!(longs(&out[0]), (vec![0], vec![]));
        assert_eq!(longs(&out[1]), (vec![3], vec![0, 1, 2]));
    }
}
