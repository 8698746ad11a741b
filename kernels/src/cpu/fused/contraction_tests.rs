//! Tests of `_FusedMatMul` and `_FusedConv2D` against `MatMul` / `Conv2D` followed by the
//! unfused `BiasAdd`, `AddV2` and activation kernels, for every supported `fused_ops`,
//! transposes, layouts, paddings, groups and float dtypes; and their errors.

use rill_graph::{AttrValue, DType, Tensor};

use super::tests::{run, run_with, tensor};
use crate::cpu::math::test_util::random;

const ACTS: [Option<&str>; 7] = [
    None,
    Some("Relu"),
    Some("Relu6"),
    Some("Elu"),
    Some("LeakyRelu"),
    Some("Tanh"),
    Some("Sigmoid"),
];

fn strings(v: &[&str]) -> AttrValue {
    AttrValue::StringList(v.iter().map(|s| s.as_bytes().to_vec()).collect())
}

fn values(t: &Tensor) -> Vec<f64> {
    let wide = crate::cpu::math::num::widen(t.clone()).unwrap();
    match wide.dtype() {
        DType::F32 => wide
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|&x| x as f64)
            .collect(),
        _ => wide.as_slice::<f64>().unwrap().to_vec(),
    }
}

fn assert_close(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    assert_eq!(
        (got.dtype(), got.dims()),
        (want.dtype(), want.dims()),
        "{what}"
    );
    for (i, (g, w)) in values(got).iter().zip(values(want)).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: fused {g}, unfused {w}"
        );
    }
}

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 | DType::F64 => 1e-5,
        _ => 1e-2,
    }
}

/// `value` through BiasAdd (with `format`), an optional Add of `side` and `act`, unfused.
fn epilogue(
    value: Tensor,
    bias: &Tensor,
    side: Option<&Tensor>,
    act: Option<&str>,
    format: &str,
) -> Tensor {
    let mut v = run(
        "BiasAdd",
        &[("data_format", format.into())],
        vec![value, bias.clone()],
    );
    if let Some(s) = side {
        v = run("AddV2", &[], vec![v, s.clone()]);
    }
    match act {
        None => v,
        Some("LeakyRelu") => run("LeakyRelu", &[("alpha", AttrValue::Float(0.15))], vec![v]),
        Some(a) => run(a, &[], vec![v]),
    }
}

fn fused_ops(add: bool, act: Option<&str>) -> Vec<&str> {
    let mut ops = vec!["BiasAdd"];
    if add {
        ops.push("Add");
    }
    ops.extend(act);
    ops
}

fn rand(dtype: DType, dims: &[usize], seed: u64) -> Tensor {
    let n = dims.iter().product();
    let v: Vec<f64> = random(n, seed).iter().map(|&x| x as f64).collect();
    tensor(dtype, dims, &v)
}

#[test]
fn fused_matmul_matches_matmul_bias_add_and_activation() {
    let shapes = [
        (3, 4, 5),
        (65, 130, 70),
        (1, 7, 1),
        (2000, 64, 48),
        (300, 0, 9),
    ];
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        for (si, &(m, k, n)) in shapes.iter().enumerate() {
            if si == 3 && !matches!(dtype, DType::F32) {
                continue; // the large case once is enough
            }
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = rand(dtype, &if ta { [k, m] } else { [m, k] }, si as u64 * 8 + 1);
                let b = rand(dtype, &if tb { [n, k] } else { [k, n] }, si as u64 * 8 + 2);
                let bias = rand(dtype, &[n], 3);
                let side = rand(dtype, &[m, n], 4);
                let t = [("transpose_a", ta.into()), ("transpose_b", tb.into())];
                let product = run("MatMul", &t, vec![a.clone(), b.clone()]);
                for act in ACTS {
                    for add in [false, true] {
                        let s = add.then_some(&side);
                        let want = epilogue(product.clone(), &bias, s, act, "NHWC");
                        let ops = fused_ops(add, act);
                        let mut attrs = t.to_vec();
                        attrs.push(("fused_ops", strings(&ops)));
                        attrs.push(("num_args", AttrValue::Int(1 + add as i64)));
                        attrs.push(("leakyrelu_alpha", AttrValue::Float(0.15)));
                        let mut inputs = vec![a.clone(), b.clone(), bias.clone()];
                        inputs.extend(s.cloned());
                        let got = run("_FusedMatMul", &attrs, inputs);
                        let what = format!("{dtype} {m}x{k}x{n} t=({ta},{tb}) {ops:?}");
                        assert_close(&got, &want, tolerance(dtype), &what);
                    }
                }
            }
        }
    }
}

struct ConvCase {
    x: &'static [usize],
    f: &'static [usize],
    strides: [i64; 4],
    dilations: [i64; 4],
    padding: &'static str,
    explicit: &'static [i64],
    format: &'static str,
}

const CONVS: &[ConvCase] = &[
    ConvCase {
        x: &[2, 9, 7, 6],
        f: &[3, 3, 6, 8],
        strides: [1, 2, 1, 1],
        dilations: [1, 1, 2, 1],
        padding: "SAME",
        explicit: &[],
        format: "NHWC",
    },
    ConvCase {
        x: &[2, 6, 9, 7],
        f: &[3, 2, 6, 5],
        strides: [1, 1, 1, 2],
        dilations: [1, 1, 1, 1],
        padding: "VALID",
        explicit: &[],
        format: "NCHW",
    },
    ConvCase {
        x: &[1, 8, 8, 4],
        f: &[3, 3, 2, 6],
        strides: [1, 1, 1, 1],
        dilations: [1, 1, 1, 1],
        padding: "SAME",
        explicit: &[],
        format: "NHWC",
    },
    ConvCase {
        x: &[3, 40, 30, 8],
        f: &[1, 1, 8, 16],
        strides: [1, 1, 1, 1],
        dilations: [1, 1, 1, 1],
        padding: "VALID",
        explicit: &[],
        format: "NHWC",
    },
    ConvCase {
        x: &[2, 11, 10, 3],
        f: &[4, 2, 3, 4],
        strides: [1, 1, 2, 1],
        dilations: [1, 1, 1, 1],
        padding: "EXPLICIT",
        explicit: &[0, 0, 2, 1, 0, 3, 0, 0],
        format: "NHWC",
    },
    ConvCase {
        x: &[4, 64, 64, 3],
        f: &[3, 3, 3, 32],
        strides: [1, 1, 1, 1],
        dilations: [1, 1, 1, 1],
        padding: "SAME",
        explicit: &[],
        format: "NHWC",
    },
];

#[test]
fn fused_conv2d_matches_conv2d_bias_add_and_activation() {
    for dtype in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        for (ci, c) in CONVS.iter().enumerate() {
            if ci == CONVS.len() - 1 && !matches!(dtype, DType::F32) {
                continue; // the large case once is enough
            }
            let x = rand(dtype, c.x, ci as u64 * 4 + 1);
            let f = rand(dtype, c.f, ci as u64 * 4 + 2);
            let bias = rand(dtype, &[c.f[3]], 3);
            let attrs = vec![
                ("strides", AttrValue::from(c.strides.to_vec())),
                ("dilations", c.dilations.to_vec().into()),
                ("padding", c.padding.into()),
                ("explicit_paddings", c.explicit.to_vec().into()),
                ("data_format", c.format.into()),
            ];
            let conv = run("Conv2D", &attrs, vec![x.clone(), f.clone()]);
            let side = rand(dtype, conv.dims(), 4);
            for act in ACTS {
                for add in [false, true] {
                    let s = add.then_some(&side);
                    let want = epilogue(conv.clone(), &bias, s, act, c.format);
                    let ops = fused_ops(add, act);
                    let mut a = attrs.clone();
                    a.push(("fused_ops", strings(&ops)));
                    a.push(("num_args", AttrValue::Int(1 + add as i64)));
                    a.push(("leakyrelu_alpha", AttrValue::Float(0.15)));
                    let mut inputs = vec![x.clone(), f.clone(), bias.clone()];
                    inputs.extend(s.cloned());
                    let got = run("_FusedConv2D", &a, inputs);
                    let what = format!("{dtype} case {ci} {ops:?}");
                    assert_close(&got, &want, tolerance(dtype), &what);
                }
            }
        }
    }
}

#[test]
fn unsupported_fused_ops_and_bad_args_are_errors() {
    let a = rand(DType::F32, &[2, 3], 1);
    let b = rand(DType::F32, &[3, 4], 2);
    let bias = rand(DType::F32, &[4], 3);
    for (ops, num_args) in [
        (vec!["Relu"], 1),
        (vec!["BiasAdd", "Gelu"], 1),
        (vec!["BiasAdd", "Relu", "Tanh"], 1),
        (vec![], 0),
        (vec!["BiasAdd"], 2),
    ] {
        let attrs = [
            ("fused_ops", strings(&ops)),
            ("num_args", AttrValue::Int(num_args)),
        ];
        let mut inputs = vec![a.clone(), b.clone(), bias.clone()];
        inputs.truncate(2 + num_args as usize);
        let e = run_with("_FusedMatMul", &attrs, inputs, &[]).unwrap_err();
        assert_eq!(e.code, rill_graph::Code::InvalidArgument, "{ops:?}: {e}");
        assert!(e.message.contains("fused_ops"), "{ops:?}: {e}");
    }
    let ok = [
        ("fused_ops", strings(&["BiasAdd"])),
        ("num_args", AttrValue::Int(1)),
    ];
    let e = run_with(
        "_FusedMatMul",
        &ok,
        vec![a.clone(), b.clone(), rand(DType::F32, &[5], 1)],
        &[],
    );
    assert!(e.unwrap_err().message.contains("biases"));
    let e = run_with(
        "_FusedMatMul",
        &ok,
        vec![a.clone(), a.clone(), bias.clone()],
        &[],
    );
    assert!(e.unwrap_err().message.contains("Matrix size-incompatible"));
    let x = rand(DType::F32, &[1, 4, 4, 3], 5);
    let conv = [
        ("fused_ops", strings(&["BiasAdd", "Add"])),
        ("num_args", AttrValue::Int(2)),
        ("strides", vec![1i64, 1, 1, 1].into()),
        ("padding", "SAME".into()),
    ];
    let f = rand(DType::F32, &[3, 3, 3, 4], 6);
    let e = run_with("_FusedConv2D", &conv, vec![x, f, bias.clone(), bias], &[]);
    assert!(e.unwrap_err().message.contains("output's shape"));
}
