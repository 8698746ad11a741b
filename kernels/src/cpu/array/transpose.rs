//! `Transpose`, `ConjugateTranspose` (the same on Rill's real dtypes) and
//! `InvertPermutation`.
//!
//! Invariants: `perm` is validated exactly as TensorFlow does (a vector of the input's rank,
//! each entry in `[-rank, rank)`, negative entries counting from the end, no entry missing); an identity permutation shares the input's
//! buffer; any other permutation goes through the strided engine (blocked tiles for the
//! 2-D-like cases, parallel for large tensors).

use rill_graph::{Error, Node, Result, Tensor};

use super::strided::{gather_tensor, signed_strides};
use super::util::{index_tensor, kernel, shape_str, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Transpose", transpose);
    r.cpu("ConjugateTranspose", transpose);
    r.cpu("InvertPermutation", invert_permutation);
}

/// Validates `perm` against a tensor of rank `rank` (TensorFlow's `TransposeOp` checks).
pub(super) fn check_perm(perm: &Tensor, rank: usize) -> Result<Vec<usize>> {
    if perm.rank() != 1 {
        return Err(Error::invalid_argument(format!(
            "perm must be rank 1, got shape {}",
            shape_str(perm.dims())
        )));
    }
    let values = perm.to_i64_vec()?;
    if values.len() != rank {
        return Err(Error::invalid_argument(format!(
            "transpose expects a vector of size {rank}. But input(1) is a vector of size {}",
            values.len()
        )));
    }
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    for &d in &values {
        // TensorFlow accepts negative entries, counted from the end (`-1` is the last dim).
        if d < -(rank as i64) || d >= rank as i64 {
            return Err(Error::invalid_argument(format!(
                "{d} is out of range [0 .. {rank})"
            )));
        }
        let d = if d < 0 { d + rank as i64 } else { d } as usize;
        seen[d] = true;
        out.push(d);
    }
    if let Some(missing) = seen.iter().position(|&s| !s) {
        let list: Vec<String> = values.iter().map(i64::to_string).collect();
        return Err(Error::invalid_argument(format!(
            "{missing} is missing from {{{}}}.",
            list.join(",")
        )));
    }
    Ok(out)
}

/// `x` with its dims permuted: output dim `i` is input dim `perm[i]`.
pub(super) fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    let in_strides = signed_strides(x.dims());
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| in_strides[p]).collect();
    gather_tensor(x, 0, &dims, &strides)
}

fn transpose(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x, perm] = take(inputs)?;
        let perm = check_perm(&perm, x.rank())?;
        Ok(vec![permute(&x, &perm)?])
    })
}

fn invert_permutation(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        if x.rank() != 1 {
            return Err(Error::invalid_argument(format!(
                "invert_permutation expects a 1D vector, got shape {}",
                shape_str(x.dims())
            )));
        }
        let values = x.to_i64_vec()?;
        let n = values.len();
        let mut out = vec![-1i64; n];
        for (i, &d) in values.iter().enumerate() {
            if d < 0 || d >= n as i64 {
                return Err(Error::invalid_argument(format!(
                    "{d} is not between 0 and {n}"
                )));
            }
            if out[d as usize] != -1 {
                return Err(Error::invalid_argument(format!(
                    "{d} is duplicated in the input."
                )));
            }
            out[d as usize] = i as i64;
        }
        Ok(vec![index_tensor(x.dtype(), &[n], out)?])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, Tensor};

    #[test]
    fn transpose_2d_3d_4d() {
        let x = iota(&[2, 3]);
        let y = run1("Transpose", &[], vec![x.clone(), i(&[2], &[1, 0])]).unwrap();
        assert_eq!(ints(&y), (vec![3, 2], vec![0, 3, 1, 4, 2, 5]));
        let same = run1("Transpose", &[], vec![x.clone(), l(&[2], &[0, 1])]).unwrap();
        assert!(std::ptr::eq(same.buffer(), x.buffer()));

        // x[a][b][c] = 12a + 4b + c over [2,3,4]; perm [2,0,1] -> out[c][a][b].
        let y = run1(
            "Transpose",
            &[],
            vec![iota(&[2, 3, 4]), i(&[3], &[2, 0, 1])],
        )
        .unwrap();
        let (dims, v) = ints(&y);
        assert_eq!(dims, vec![4, 2, 3]);
        assert_eq!(&v[..8], &[0, 4, 8, 12, 16, 20, 1, 5]);

        // 4-D NHWC -> NCHW on [1,2,2,3]: x[0][h][w][c] = 6h + 3w + c.
        let y = run1(
            "Transpose",
            &[],
            vec![iota(&[1, 2, 2, 3]), i(&[4], &[0, 3, 1, 2])],
        )
        .unwrap();
        assert_eq!(
            ints(&y),
            (vec![1, 3, 2, 2], vec![0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11])
        );
    }

    #[test]
    fn transpose_strings_scalars_and_empty() {
        let s = Tensor::new(&[2, 1], vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
        let y = run1("Transpose", &[], vec![s, i(&[2], &[1, 0])]).unwrap();
        assert_eq!(y.dims(), &[1, 2]);
        let y = run1("Transpose", &[], vec![Tensor::scalar(3i32), i(&[0], &[])]).unwrap();
        assert_eq!(ints(&y), (vec![], vec![3]));
        let y = run1("Transpose", &[], vec![iota(&[0, 3]), i(&[2], &[1, 0])]).unwrap();
        assert_eq!(y.dims(), &[3, 0]);
    }

    #[test]
    fn big_batched_and_4d_transposes_match_naive() {
        let (b, m, n) = (4usize, 130usize, 150usize);
        let y = run1(
            "Transpose",
            &[],
            vec![iota(&[b, m, n]), i(&[3], &[0, 2, 1])],
        )
        .unwrap();
        let (dims, v) = ints(&y);
        assert_eq!(dims, vec![b, n, m]);
        for (k, got) in v.iter().enumerate() {
            let (bi, rest) = (k / (n * m), k % (n * m));
            let (ni, mi) = (rest / m, rest % m);
            assert_eq!(*got as usize, bi * m * n + mi * n + ni);
        }
        let d = [6usize, 20, 30, 25];
        let y = run1("Transpose", &[], vec![iota(&d), i(&[4], &[3, 1, 0, 2])]).unwrap();
        let (dims, v) = ints(&y);
        assert_eq!(dims, vec![25, 20, 6, 30]);
        for (k, got) in v.iter().enumerate() {
            let (a3, r) = (k / (20 * 6 * 30), k % (20 * 6 * 30));
            let (a1, r) = (r / (6 * 30), r % (6 * 30));
            let (a0, a2) = (r / 30, r % 30);
            assert_eq!(*got as usize, ((a0 * 20 + a1) * 30 + a2) * 25 + a3);
        }
    }

    #[test]
    fn bad_perms() {
        let x = iota(&[2, 3, 4]);
        let (code, msg) = run_err("Transpose", &[], vec![x.clone(), i(&[2], &[1, 0])]);
        assert_eq!(code, Code::InvalidArgument);
        assert_eq!(
            msg,
            "transpose expects a vector of size 3. But input(1) is a vector of size 2"
        );
        let (_, msg) = run_err("Transpose", &[], vec![x.clone(), i(&[3], &[0, 1, 3])]);
        assert_eq!(msg, "3 is out of range [0 .. 3)");
        let (_, msg) = run_err("Transpose", &[], vec![x.clone(), i(&[3], &[0, -4, 1])]);
        assert_eq!(msg, "-4 is out of range [0 .. 3)");
        let (_, msg) = run_err("Transpose", &[], vec![x.clone(), i(&[3], &[0, -1, 2])]);
        assert_eq!(msg, "1 is missing from {0,-1,2}.");
        // Negative entries count from the end, as in TensorFlow.
        let y = run1("Transpose", &[], vec![x.clone(), i(&[3], &[-1, 0, -2])]).unwrap();
        assert_eq!(y.dims(), &[4, 2, 3]);
        let (_, msg) = run_err("Transpose", &[], vec![x, i(&[3], &[0, 1, 1])]);
        assert_eq!(msg, "2 is missing from {0,1,1}.");
    }

    #[test]
    fn invert_permutation() {
        let y = run1("InvertPermutation", &[], vec![i(&[5], &[3, 4, 0, 2, 1])]).unwrap();
        assert_eq!(ints(&y), (vec![5], vec![2, 4, 3, 0, 1]));
        assert!(run("InvertPermutation", &[], vec![i(&[2], &[0, 0])]).is_err());
        assert!(run("InvertPermutation", &[], vec![i(&[2], &[0, 2])]).is_err());
    }
}
