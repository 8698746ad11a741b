//! Gradient checks of TF1 conditionals (`Switch`/`Merge`, as `tf.cond` builds them), with the
//! predicate fed either way: only the branch that ran contributes, a branch that does not
//! use an input gives it zeros, and a nested conditional finds its own predicate.

use rill::graph::Result as RillResult;
use rill::prelude::*;

use super::{check, t};

fn pred(value: bool) -> Tensor {
    Tensor::scalar(value)
}

/// `cond(p, tanh(x) * y, square(x) - y)`, as tf.cond: one Switch per branch use, an
/// Identity per branch result, a Merge of (false, true).
fn both_branches_use_x(b: &Builder, p: &[Output]) -> RillResult<Output> {
    let (x, y, pred) = (p[0], p[1], p[2]);
    let (_, x_true) = b.switch(x, pred)?;
    let (_, y_true) = b.switch(y, pred)?;
    let (x_false, _) = b.switch(x, pred)?;
    let (y_false, _) = b.switch(y, pred)?;
    let when_true = b.identity(b.mul(b.tanh(x_true)?, y_true)?)?;
    let when_false = b.identity(b.sub(b.square(x_false)?, y_false)?)?;
    Ok(b.merge(&[when_false, when_true])?.0)
}

/// `cond(p, x * 3, c)` with `c` a constant hanging off the false pivot: x gets zeros when p
/// is false. Then a nested `cond(q, cond(p, ...), ...)` on the result.
fn constant_branch_and_nesting(b: &Builder, p: &[Output]) -> RillResult<Output> {
    let (x, p_, q) = (p[0], p[1], p[2]);
    let (pivot_f, x_t) = b.switch(x, p_)?;
    let pivot_f = b.identity(pivot_f)?;
    let quarter = b
        .op("Const")
        .attr("dtype", DType::F64)
        .attr("value", Tensor::new(&[2, 3], vec![0.25f64; 6])?)
        .control_input(pivot_f.node)
        .build_output()?;
    let three = b.constant(Tensor::scalar(3.0f64))?;
    let a = b.merge(&[quarter, b.mul(x_t, three)?])?.0;
    // Outer on q, inner on p, both reading `a` through their own switches.
    let (a_qf, a_qt) = b.switch(a, q)?;
    let (_, p_t) = b.switch(p_, q)?;
    let (a_pf, a_pt) = b.switch(a_qt, p_t)?;
    let inner = b.merge(&[b.sin(a_pf)?, b.square(a_pt)?])?.0;
    Ok(b.merge(&[b.exp(a_qf)?, inner])?.0)
}

cases! {
    merge: "Merge" => {
        for p in [true, false] {
            check("Merge", &[t(&[2, 3], 1), t(&[2, 3], 2), pred(p)], both_branches_use_x);
        }
    }
    switch: "Switch" => {
        for (p, q) in [(true, true), (false, true), (true, false)] {
            check("Switch", &[t(&[2, 3], 3), pred(p), pred(q)], constant_branch_and_nesting);
        }
    }
}
