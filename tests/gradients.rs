//! Numeric checks of every gradient function: for each op, a small graph over f64
//! placeholders is differentiated with `rill_autodiff` and its full Jacobian compared with
//! central differences (`check_gradient`), run through a `Session`. Each case runs twice:
//! with fully known input shapes (the constant-shape paths of the gradient helpers) and
//! with unknown dims (the dynamic `Shape`/`BroadcastGradientArgs` paths).
//!
//! Inputs avoid kinks (Relu at 0, ties in Max/Maximum/MaxPool, |x| at 0) so that the
//! numeric derivative is well defined. The cases live in `gradients/{math,nn,array,control}.rs`;
//! `every_gradient_function_is_checked` ties them to the op registry.

/// Defines one `#[test]` per case and the list of ops the cases cover.
macro_rules! cases {
    ($($name:ident: $op:literal => $body:block)*) => {
        $(
            #[test]
            fn $name() $body
        )*
        pub const COVERED: &[&str] = &[$($op),*];
    };
}

#[path = "gradients/array.rs"]
mod array;
#[path = "gradients/control.rs"]
mod control;
#[path = "gradients/math.rs"]
mod math;
#[path = "gradients/nn.rs"]
mod nn;

use rill::graph::{Graph, Result as RillResult, Shape};
use rill::prelude::*;
use rill_autodiff::{check_gradient, CheckOptions, Runner};

/// Runs graphs through a `Session`, rebuilt whenever the graph gained nodes.
pub fn runner() -> Box<Runner<'static>> {
    let mut cache: Option<(usize, Session)> = None;
    Box::new(
        move |g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]| {
            if cache.as_ref().map(|(n, _)| *n) != Some(g.len()) {
                cache = Some((g.len(), Session::new(g.clone(), SessionOptions::default())?));
            }
            let session = &cache.as_ref().expect("just set").1;
            let names: Vec<String> = feeds.iter().map(|(o, _)| g.tensor_name(*o)).collect();
            let feeds: Vec<(&str, Tensor)> = names
                .iter()
                .zip(feeds)
                .map(|(n, (_, t))| (n.as_str(), t.clone()))
                .collect();
            let fetch_names: Vec<String> = fetches.iter().map(|&o| g.tensor_name(o)).collect();
            let fetches: Vec<&str> = fetch_names.iter().map(String::as_str).collect();
            session.run(&feeds, &fetches, &[])
        },
    )
}

/// A small xorshift generator, so the inputs are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn sample(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An f64 tensor with elements uniform in `[lo, hi)`.
pub fn uniform(dims: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n = dims.iter().product();
    Tensor::new(
        dims,
        (0..n).map(|_| lo + (hi - lo) * rng.sample()).collect(),
    )
    .unwrap()
}

/// Uniform in `[-1, 1)`.
pub fn t(dims: &[usize], seed: u64) -> Tensor {
    uniform(dims, seed, -1.0, 1.0)
}

/// Elements of either sign with magnitude in `[0.2, 1)`: away from kinks at 0.
pub fn away(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed ^ 0xABCD);
    let n = dims.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            let m = 0.2 + 0.8 * rng.sample();
            if rng.sample() < 0.5 {
                -m
            } else {
                m
            }
        })
        .collect();
    Tensor::new(dims, v).unwrap()
}

/// Positive elements in `[0.5, 2)`.
pub fn pos(dims: &[usize], seed: u64) -> Tensor {
    uniform(dims, seed, 0.5, 2.0)
}

/// What the placeholders declare about the inputs' shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// The exact shapes.
    Static,
    /// The rank, no dims.
    UnknownDims,
    /// Nothing.
    UnknownRank,
}

/// How to check one case.
#[derive(Clone, Copy)]
pub struct Opts {
    /// Largest allowed `|symbolic - numeric| / max(1, |numeric|)`.
    pub tol: f64,
    /// The shape modes to run in.
    pub modes: &'static [Mode],
}

pub const DEFAULT: Opts = Opts {
    tol: 1e-6,
    modes: &[Mode::Static, Mode::UnknownDims],
};

/// Checks the gradient of `build(b, placeholders)` with respect to every float input, at
/// `inputs`; non-float inputs are fed as they are. The graph must contain an `op` node.
pub fn check(
    op: &str,
    inputs: &[Tensor],
    build: impl Fn(&Builder, &[Output]) -> RillResult<Output>,
) {
    check_with(op, inputs, DEFAULT, build)
}

pub fn check_with(
    op: &str,
    inputs: &[Tensor],
    opts: Opts,
    build: impl Fn(&Builder, &[Output]) -> RillResult<Output>,
) {
    for &mode in opts.modes {
        let b = Builder::new();
        let ps: Vec<Output> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let shape = match mode {
                    Mode::Static => t.shape(),
                    Mode::UnknownDims => Shape::unknown_dims(t.rank()),
                    Mode::UnknownRank => Shape::unknown(),
                };
                b.placeholder(&format!("in{i}"), t.dtype(), shape).unwrap()
            })
            .collect();
        let y = build(&b, &ps).unwrap_or_else(|e| panic!("{op}: building the graph: {e}"));
        assert!(
            b.graph().nodes().any(|(_, n)| n.op_name() == op),
            "{op}: the graph has no {op} node"
        );
        let (xs, feeds): (Vec<_>, Vec<_>) = ps
            .iter()
            .zip(inputs)
            .map(|(&p, t)| (p, t.clone()))
            .partition(|(_, t)| t.dtype().is_float());
        let mut run = runner();
        let r = check_gradient(&b, y, &xs, &feeds, &CheckOptions::default(), &mut *run)
            .unwrap_or_else(|e| panic!("{op} ({mode:?}): {e}"));
        if r.max_rel_error >= opts.tol {
            let worst: Vec<String> = r
                .jacobians
                .iter()
                .enumerate()
                .map(|(k, j)| {
                    let (i, err) = j
                        .symbolic
                        .iter()
                        .zip(&j.numeric)
                        .map(|(s, n)| (s - n).abs())
                        .enumerate()
                        .fold((0, 0.0), |a, (i, e)| if e > a.1 { (i, e) } else { a });
                    format!(
                        "input {k}: worst at row {}, col {}: symbolic {} numeric {} (error {err:.3e})",
                        i / j.cols.max(1),
                        i % j.cols.max(1),
                        j.symbolic.get(i).copied().unwrap_or(0.0),
                        j.numeric.get(i).copied().unwrap_or(0.0)
                    )
                })
                .collect();
            panic!(
                "{op} ({mode:?}): gradient error {:.3e} (abs {:.3e})\n{}",
                r.max_rel_error,
                r.max_abs_error,
                worst.join("\n")
            );
        }
    }
}

/// Ops whose gradient function is checked some other way, with where.
const CHECKED_ELSEWHERE: &[(&str, &str)] = &[
    ("PreventGradient", "array::prevent_gradient_is_an_error"),
    (
        "ReadVariableOp",
        "array::read_variable_passes_its_gradient_to_the_handle",
    ),
];

#[test]
fn every_gradient_function_is_checked() {
    let covered: Vec<&str> = [math::COVERED, nn::COVERED, array::COVERED, control::COVERED]
        .concat()
        .into_iter()
        .chain(CHECKED_ELSEWHERE.iter().map(|(op, _)| *op))
        .collect();
    let missing: Vec<&str> = rill::ops::ops_with_gradients()
        .into_iter()
        .filter(|op| rill::ops::gradient_fn(op).is_some())
        .filter(|op| !covered.contains(op))
        .collect();
    assert!(
        missing.is_empty(),
        "gradient functions without a check: {missing:?}"
    );
}
