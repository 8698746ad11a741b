//! The numeric gradient checker: the full Jacobian of `y` with respect to each `x`,
//! symbolically (one run of the gradient graph per element of `y`, seeded with a one-hot
//! `grad_ys`) and numerically (central differences, two forward runs per element of each
//! `x`, computed in f64), and the largest disagreement between them.
//!
//! Graphs run through a [`Runner`] closure, so this crate needs no runtime. Meant for small
//! tensors: the cost is `|y| + 2·Σ|x|` runs.
//!
//! Invariants: the graph gains the gradient nodes and one seed placeholder, nothing else;
//! only f32 and f64 tensors are checked (InvalidArgument otherwise).

use rill_graph::{Buffer, DType, Error, Graph, Output, Result, Tensor};
use rill_ops::Builder;

use crate::gradients;

/// Runs `graph` with `feeds` and returns the values of `fetches`, in order.
pub type Runner<'r> = dyn FnMut(&Graph, &[(Output, Tensor)], &[Output]) -> Result<Vec<Tensor>> + 'r;

/// How to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The central-difference step; default 1e-5 for f64 inputs, 1e-3 for f32.
    pub delta: Option<f64>,
}

/// One Jacobian `d y / d x`, row-major: `rows` = elements of `y`, `cols` = elements of `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Jacobian {
    pub rows: usize,
    pub cols: usize,
    /// From the gradient graph (zeros where the gradient is `None`).
    pub symbolic: Vec<f64>,
    /// From central differences.
    pub numeric: Vec<f64>,
}

/// The outcome of [`check_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradientCheck {
    /// One per `x`, in order.
    pub jacobians: Vec<Jacobian>,
    /// The largest `|symbolic - numeric|` over all entries.
    pub max_abs_error: f64,
    /// The largest `|symbolic - numeric| / max(1, |numeric|)`: absolute for small
    /// entries, relative for large ones.
    pub max_rel_error: f64,
}

fn to_f64s(t: &Tensor) -> Result<Vec<f64>> {
    match t.buffer() {
        Buffer::F64(v) => Ok(v.clone()),
        Buffer::F32(v) => Ok(v.iter().map(|&x| f64::from(x)).collect()),
        _ => Err(Error::invalid_argument(format!(
            "check_gradient: only f32 and f64 tensors can be checked, got {}",
            t.dtype()
        ))),
    }
}

fn from_f64s(dtype: DType, dims: &[usize], v: Vec<f64>) -> Result<Tensor> {
    match dtype {
        DType::F64 => Tensor::new(dims, v),
        DType::F32 => Tensor::new(dims, v.into_iter().map(|x| x as f32).collect()),
        other => Err(Error::invalid_argument(format!(
            "check_gradient: only f32 and f64 tensors can be checked, got {other}"
        ))),
    }
}

/// Runs the builder's graph, checking that one value comes back per fetch.
fn run_graph(
    b: &Builder,
    run: &mut Runner,
    feeds: &[(Output, Tensor)],
    fetches: &[Output],
) -> Result<Vec<Tensor>> {
    let out = {
        let g = b.graph();
        run(&g, feeds, fetches)?
    };
    if out.len() != fetches.len() {
        return Err(Error::internal(format!(
            "check_gradient: the runner returned {} values for {} fetches",
            out.len(),
            fetches.len()
        )));
    }
    Ok(out)
}

/// Compares the symbolic and numeric Jacobians of `y` with respect to each `x`, at the
/// points given in `xs` (fed), with `feeds` held fixed. Adds the gradient graph to `b`.
pub fn check_gradient(
    b: &Builder,
    y: Output,
    xs: &[(Output, Tensor)],
    feeds: &[(Output, Tensor)],
    options: &CheckOptions,
    run: &mut Runner,
) -> Result<GradientCheck> {
    let y_dtype = b.dtype(y);
    let points: Vec<Vec<f64>> = xs
        .iter()
        .map(|(x, t)| {
            if t.dtype() != b.dtype(*x) {
                return Err(Error::invalid_argument(format!(
                    "check_gradient: the value for '{}' is {}, the tensor is {}",
                    b.graph().tensor_name(*x),
                    t.dtype(),
                    b.dtype(*x)
                )));
            }
            to_f64s(t)
        })
        .collect::<Result<_>>()?;
    let seed = b.placeholder("gradient_check_dy", y_dtype, b.shape(y))?;
    let x_outputs: Vec<Output> = xs.iter().map(|(x, _)| *x).collect();
    let grads = gradients(b, &[y], &x_outputs, Some(&[seed]))?;

    let mut base: Vec<(Output, Tensor)> = feeds.to_vec();
    base.extend(xs.iter().cloned());
    let y0 = run_graph(b, run, &base, &[y])?.remove(0);
    let (y_dims, rows) = (y0.dims().to_vec(), y0.num_elements());

    let mut jacobians: Vec<Jacobian> = points
        .iter()
        .map(|p| Jacobian {
            rows,
            cols: p.len(),
            symbolic: vec![0.0; rows * p.len()],
            numeric: vec![0.0; rows * p.len()],
        })
        .collect();

    // Symbolic: row j of every Jacobian from one run seeded with the one-hot e_j.
    let fetched: Vec<(usize, Output)> = grads
        .iter()
        .enumerate()
        .filter_map(|(k, g)| g.map(|g| (k, g)))
        .collect();
    let fetches: Vec<Output> = fetched.iter().map(|&(_, g)| g).collect();
    if !fetches.is_empty() {
        for j in 0..rows {
            let mut onehot = vec![0.0; rows];
            onehot[j] = 1.0;
            let mut feeds = base.clone();
            feeds.push((seed, from_f64s(y_dtype, &y_dims, onehot)?));
            let out = run_graph(b, run, &feeds, &fetches)?;
            for (&(k, _), t) in fetched.iter().zip(&out) {
                let row = to_f64s(t)?;
                let jac = &mut jacobians[k];
                if row.len() != jac.cols {
                    return Err(Error::internal(format!(
                        "check_gradient: the gradient for x {k} has {} elements, x has {}",
                        row.len(),
                        jac.cols
                    )));
                }
                jac.symbolic[j * jac.cols..(j + 1) * jac.cols].copy_from_slice(&row);
            }
        }
    }

    // Numeric: column i of Jacobian k from x_k ± delta at element i.
    for (k, (x, t)) in xs.iter().enumerate() {
        let delta = options
            .delta
            .unwrap_or(if t.dtype() == DType::F64 { 1e-5 } else { 1e-3 });
        let slot = feeds.len() + k;
        for i in 0..points[k].len() {
            let mut value_at = |d: f64| -> Result<Vec<f64>> {
                let mut p = points[k].clone();
                p[i] += d;
                let mut feeds = base.clone();
                feeds[slot] = (*x, from_f64s(t.dtype(), t.dims(), p)?);
                to_f64s(&run_graph(b, run, &feeds, &[y])?[0])
            };
            let (plus, minus) = (value_at(delta)?, value_at(-delta)?);
            let jac = &mut jacobians[k];
            for j in 0..rows {
                jac.numeric[j * jac.cols + i] = (plus[j] - minus[j]) / (2.0 * delta);
            }
        }
    }

    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    for jac in &jacobians {
        for (s, n) in jac.symbolic.iter().zip(&jac.numeric) {
            let err = (s - n).abs();
            let err = if err.is_nan() { f64::INFINITY } else { err };
            max_abs = max_abs.max(err);
            max_rel = max_rel.max(err / n.abs().max(1.0));
        }
    }
    Ok(GradientCheck {
        jacobians,
        max_abs_error: max_abs,
        max_rel_error: max_rel,
    })
}
