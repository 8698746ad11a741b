//! Gradient checks of the math ops: elementwise unary and binary (with broadcasting),
//! n-ary, reductions, scans and matrix products.

use rill::prelude::*;

use super::{away, check, check_with, pos, t, uniform, Mode, Opts, DEFAULT};

fn unary(op: &'static str, x: Tensor) {
    check(op, &[x], |b, p| b.unary(op, p[0]))
}

/// `op(x, y)` with `x` `[2,3]` and `y` `[3]` (broadcast), then `[2,1]` and `[1,3]`.
fn binary(op: &'static str, make: impl Fn(&[usize], u64) -> Tensor) {
    check(op, &[make(&[2, 3], 1), make(&[3], 2)], |b, p| {
        b.binary(op, p[0], p[1])
    });
    check(op, &[make(&[2, 1], 3), make(&[1, 3], 4)], |b, p| {
        b.binary(op, p[0], p[1])
    });
}

fn bools(dims: &[usize], values: &[bool]) -> Tensor {
    Tensor::new(dims, values.to_vec()).unwrap()
}

/// The second derivative through gradient helper `op(y, dy)`, at outputs `y`.
fn grad_of_grad(op: &str, y: Tensor) {
    check(op, &[y, t(&[2, 3], 7)], |b, p| {
        b.op(op).input(p[0]).input(p[1]).build_output()
    });
}

cases! {
    neg: "Neg" => { unary("Neg", t(&[2, 3], 1)) }
    abs: "Abs" => { unary("Abs", away(&[2, 3], 1)) }
    sign: "Sign" => { unary("Sign", away(&[2, 3], 1)) }
    square: "Square" => { unary("Square", t(&[2, 3], 1)) }
    sqrt: "Sqrt" => { unary("Sqrt", pos(&[2, 3], 1)) }
    rsqrt: "Rsqrt" => { unary("Rsqrt", pos(&[2, 3], 1)) }
    exp: "Exp" => { unary("Exp", t(&[2, 3], 1)) }
    expm1: "Expm1" => { unary("Expm1", t(&[2, 3], 1)) }
    log: "Log" => { unary("Log", pos(&[2, 3], 1)) }
    log1p: "Log1p" => { unary("Log1p", pos(&[2, 3], 1)) }
    tanh: "Tanh" => { unary("Tanh", t(&[2, 3], 1)) }
    sigmoid: "Sigmoid" => { unary("Sigmoid", t(&[2, 3], 1)) }
    tanh_grad: "TanhGrad" => { grad_of_grad("TanhGrad", t(&[2, 3], 1)) }
    sigmoid_grad: "SigmoidGrad" => { grad_of_grad("SigmoidGrad", uniform(&[2, 3], 1, 0.1, 0.9)) }
    rsqrt_grad: "RsqrtGrad" => { grad_of_grad("RsqrtGrad", pos(&[2, 3], 1)) }
    sqrt_grad: "SqrtGrad" => { grad_of_grad("SqrtGrad", pos(&[2, 3], 1)) }
    reciprocal_grad: "ReciprocalGrad" => { grad_of_grad("ReciprocalGrad", away(&[2, 3], 1)) }
    inv_grad: "InvGrad" => { grad_of_grad("InvGrad", away(&[2, 3], 1)) }
    reciprocal: "Reciprocal" => { unary("Reciprocal", away(&[2, 3], 1)) }
    inv: "Inv" => { unary("Inv", away(&[2, 3], 1)) }
    sin: "Sin" => { unary("Sin", t(&[2, 3], 1)) }
    cos: "Cos" => { unary("Cos", t(&[2, 3], 1)) }
    tan: "Tan" => { unary("Tan", t(&[2, 3], 1)) }
    erf: "Erf" => { unary("Erf", t(&[2, 3], 1)) }
    erfc: "Erfc" => { unary("Erfc", t(&[2, 3], 1)) }

    add: "Add" => { binary("Add", t) }
    add_v2: "AddV2" => { binary("AddV2", t) }
    sub: "Sub" => { binary("Sub", t) }
    mul: "Mul" => { binary("Mul", t) }
    div: "Div" => { binary("Div", away) }
    real_div: "RealDiv" => { binary("RealDiv", away) }
    div_no_nan: "DivNoNan" => { binary("DivNoNan", away) }
    maximum: "Maximum" => { binary("Maximum", t) }
    minimum: "Minimum" => { binary("Minimum", t) }
    pow: "Pow" => {
        check("Pow", &[pos(&[2, 3], 1), t(&[3], 2)], |b, p| b.pow(p[0], p[1]));
    }
    squared_difference: "SquaredDifference" => { binary("SquaredDifference", t) }
    floor_mod: "FloorMod" => {
        // x / y stays strictly between integers, away from FloorMod's jumps.
        check("FloorMod", &[uniform(&[2, 3], 1, 0.2, 0.8), uniform(&[3], 2, 1.5, 2.0)], |b, p| {
            b.floor_mod(p[0], p[1])
        });
    }
    atan2: "Atan2" => { binary("Atan2", away) }

    add_n: "AddN" => {
        check("AddN", &[t(&[2, 3], 1), t(&[2, 3], 2), t(&[2, 3], 3)], |b, p| {
            b.add_n(&[p[0], p[1], p[2], p[0]])
        });
    }
    select: "Select" => {
        let cond = bools(&[2, 3], &[true, false, true, false, false, true]);
        check("Select", &[cond, t(&[2, 3], 1), t(&[2, 3], 2)], |b, p| {
            b.select(p[0], p[1], p[2])
        });
        let rows = bools(&[2], &[false, true]);
        check("Select", &[rows, t(&[2, 3], 1), t(&[2, 3], 2)], |b, p| {
            b.select(p[0], p[1], p[2])
        });
    }
    select_v2: "SelectV2" => {
        let cond = bools(&[3], &[true, false, true]);
        check("SelectV2", &[cond, t(&[2, 1], 1), t(&[2, 3], 2)], |b, p| {
            b.select_v2(p[0], p[1], p[2])
        });
    }
    clip_by_value: "ClipByValue" => {
        let lo = Tensor::scalar(-0.4f64);
        let hi = uniform(&[2, 3], 3, 0.2, 0.6);
        check("ClipByValue", &[t(&[2, 3], 1), lo, hi], |b, p| {
            b.clip_by_value(p[0], p[1], p[2])
        });
    }

    sum: "Sum" => {
        check("Sum", &[t(&[2, 3, 2], 1)], |b, p| b.sum(p[0], &[1], false));
        check("Sum", &[t(&[2, 3, 2], 1)], |b, p| b.sum(p[0], &[0, -1], true));
        check("Sum", &[t(&[2, 3], 1)], |b, p| b.sum(p[0], &[0, 1], false));
        // Axes fed at run time: the DynamicStitch form of the reduced shape.
        let axes = Tensor::vector(vec![-1i32]);
        check("Sum", &[t(&[2, 3], 1), axes], |b, p| {
            b.op("Sum").input(p[0]).input(p[1]).build_output()
        });
    }
    mean: "Mean" => {
        check("Mean", &[t(&[2, 3, 2], 1)], |b, p| b.mean(p[0], &[0, 2], false));
        check("Mean", &[t(&[4], 1)], |b, p| b.mean(p[0], &[0], true));
    }
    max: "Max" => {
        check("Max", &[t(&[2, 3, 2], 1)], |b, p| b.reduce_max(p[0], &[1], false));
        check("Max", &[t(&[3, 4], 1)], |b, p| b.reduce_max(p[0], &[0, 1], true));
    }
    min: "Min" => {
        check("Min", &[t(&[2, 3, 2], 1)], |b, p| b.reduce_min(p[0], &[-1], false));
    }
    prod: "Prod" => {
        check("Prod", &[t(&[2, 3, 2], 1)], |b, p| b.prod(p[0], &[1], false));
        check("Prod", &[t(&[2, 3, 2], 1)], |b, p| b.prod(p[0], &[0, 2], true));
        // With zeros (one, then two in a group): the exact rule, not y / x.
        let x = Tensor::new(&[2, 3], vec![0.5f64, 0.0, -1.5, 0.0, 0.0, 2.0]).unwrap();
        check("Prod", &[x], |b, p| b.prod(p[0], &[1], false));
    }
    cumsum: "Cumsum" => {
        for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
            check("Cumsum", &[t(&[2, 4], 1)], |b, p| b.cumsum(p[0], 1, exclusive, reverse));
        }
    }
    cumprod: "Cumprod" => {
        for (exclusive, reverse) in [(false, false), (true, true)] {
            check("Cumprod", &[away(&[3, 2], 1)], |b, p| b.cumprod(p[0], 0, exclusive, reverse));
        }
    }

    matmul: "MatMul" => {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = t(if ta { &[4, 3] } else { &[3, 4] }, 1);
            let w = t(if tb { &[2, 4] } else { &[4, 2] }, 2);
            check("MatMul", &[a, w], |b, p| b.matmul_t(p[0], p[1], ta, tb));
        }
    }
    batch_matmul: "BatchMatMul" => {
        check("BatchMatMul", &[t(&[2, 3, 4], 1), t(&[2, 4, 2], 2)], |b, p| {
            b.op("BatchMatMul").input(p[0]).input(p[1]).attr("adj_x", false).build_output()
        });
    }
    batch_matmul_v2: "BatchMatMulV2" => {
        for (ax, ay) in [(false, false), (false, true), (true, false), (true, true)] {
            let x = t(if ax { &[2, 1, 4, 3] } else { &[2, 1, 3, 4] }, 1);
            let y = t(if ay { &[3, 2, 4] } else { &[3, 4, 2] }, 2);
            check("BatchMatMulV2", &[x, y], |b, p| b.batch_matmul(p[0], p[1], ax, ay));
        }
        // A plain matrix broadcast against a batch.
        check("BatchMatMulV2", &[t(&[2, 3, 4], 1), t(&[4, 2], 2)], |b, p| {
            b.batch_matmul(p[0], p[1], false, false)
        });
    }
}

/// Reductions over an input of unknown rank take the fully dynamic reduced-shape path.
#[test]
fn reductions_of_unknown_rank() {
    let opts = Opts {
        modes: &[Mode::UnknownRank],
        ..DEFAULT
    };
    check_with("Sum", &[t(&[2, 3], 5)], opts, |b, p| {
        b.sum(p[0], &[1], false)
    });
    check_with("Mean", &[t(&[2, 3], 5)], opts, |b, p| {
        b.mean(p[0], &[0], true)
    });
    check_with("Max", &[t(&[2, 3], 5)], opts, |b, p| {
        b.reduce_max(p[0], &[-1], false)
    });
}
