//! Support for pass tests: random inputs and a check that two graphs compute the same
//! fetches from the same feeds (both run exactly as written, without optimisation).

use rill_graph::{DType, Graph, Result, Tensor};

use crate::{Session, SessionOptions};

/// A tensor of `dims` with values from a small deterministic generator (`seed`), in
/// [-2, 2) for floats and [-5, 5) for integers.
pub fn random_tensor(dtype: DType, dims: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let floats: Vec<f64> = (0..n).map(|_| next() * 4.0 - 2.0).collect();
    match dtype {
        DType::F32 => Tensor::new(dims, floats.iter().map(|&x| x as f32).collect::<Vec<_>>()),
        DType::F64 => Tensor::new(dims, floats),
        DType::I32 => Tensor::new(
            dims,
            floats
                .iter()
                .map(|&x| (x * 2.5).floor() as i32)
                .collect::<Vec<_>>(),
        ),
        DType::I64 => Tensor::new(
            dims,
            floats
                .iter()
                .map(|&x| (x * 2.5).floor() as i64)
                .collect::<Vec<_>>(),
        ),
        other => Tensor::zeros(other, dims),
    }
}

/// Values of a float or integer tensor as f64, for comparisons.
pub fn values_f64(t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t
            .as_slice::<f32>()
            .map(|v| v.iter().map(|&x| x as f64).collect()),
        DType::F64 => t.as_slice::<f64>().map(|v| v.to_vec()),
        DType::I32 => t
            .as_slice::<i32>()
            .map(|v| v.iter().map(|&x| x as f64).collect()),
        DType::I64 => t
            .as_slice::<i64>()
            .map(|v| v.iter().map(|&x| x as f64).collect()),
        DType::Bool => t
            .as_slice::<bool>()
            .map(|v| v.iter().map(|&x| x as u8 as f64).collect()),
        _ => Ok(vec![]),
    }
    .unwrap_or_default()
}

/// Runs `fetches` from `feeds` in sessions over `before` and `after` (both unoptimised)
/// and panics with the first difference larger than `tolerance` (relative to the value's
/// magnitude, at least 1): dtypes, shapes and values must agree.
pub fn assert_same_results(
    before: &Graph,
    after: &Graph,
    feeds: &[(&str, Tensor)],
    fetches: &[&str],
    tolerance: f64,
) {
    let run = |g: &Graph| {
        Session::new(g.clone(), SessionOptions::unoptimized())
            .and_then(|s| s.run(feeds, fetches, &[]))
            .unwrap_or_else(|e| panic!("running the graph failed: {e}"))
    };
    let (a, b) = (run(before), run(after));
    for ((x, y), name) in a.iter().zip(&b).zip(fetches) {
        assert_eq!(x.dtype(), y.dtype(), "dtype of {name}");
        assert_eq!(x.dims(), y.dims(), "shape of {name}");
        for (i, (p, q)) in values_f64(x).iter().zip(values_f64(y)).enumerate() {
            let same = p == &q
                || (p.is_nan() && q.is_nan())
                || (p - q).abs() <= tolerance * p.abs().max(1.0);
            assert!(same, "{name}[{i}]: {p} before, {q} after");
        }
    }
}
