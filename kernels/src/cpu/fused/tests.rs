//! Tests of `_FusedElementwise`: every op of the table against its unfused kernel, bit for
//! bit, in every float dtype; programs with broadcasting, scalars, shared registers, large
//! (parallel, natively compiled) outputs and in-place outputs against the unfused ops run
//! one by one; errors.

use half::{bf16, f16};
use rill_graph::{AttrValue, DType, Element, Tensor};

use super::elementwise::JIT_MIN_ELEMENTS;
use super::program::{BINARY_OPS, UNARY_OPS};
use crate::cpu::math::test_util::{node, random};
use crate::{DeviceType, KernelContext, OutputMemory, ResourceMgr};

/// Runs `op` (any registered kernel) once with `memory` as the output plan.
pub(super) fn run_with(
    op: &str,
    attrs: &[(&str, AttrValue)],
    inputs: Vec<Tensor>,
    memory: &[OutputMemory],
) -> rill_graph::Result<Tensor> {
    let n = node(op, attrs, &inputs);
    let kernel = crate::registry().create(&n, DeviceType::Cpu)?;
    let resources = ResourceMgr::new();
    let mut cx = KernelContext::new(&n.name, &resources);
    cx.output_memory = memory;
    Ok(kernel.compute(&cx, inputs)?.remove(0))
}

pub(super) fn run(op: &str, attrs: &[(&str, AttrValue)], inputs: Vec<Tensor>) -> Tensor {
    run_with(op, attrs, inputs, &[]).unwrap_or_else(|e| panic!("{op}: {e}"))
}

fn program(n: usize, ops: &[&str]) -> Vec<(&'static str, AttrValue)> {
    vec![
        ("N", AttrValue::Int(n as i64)),
        (
            "ops",
            AttrValue::StringList(ops.iter().map(|s| s.as_bytes().to_vec()).collect()),
        ),
    ]
}

pub(crate) fn fused(ops: &[&str], inputs: Vec<Tensor>) -> Tensor {
    run("_FusedElementwise", &program(inputs.len(), ops), inputs)
}

/// Values as f64 bits-comparable: NaNs are equal, zeros keep their sign.
fn values(t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|&x| x as f64)
            .collect(),
        DType::F64 => t.as_slice::<f64>().unwrap().to_vec(),
        DType::F16 => t
            .as_slice::<f16>()
            .unwrap()
            .iter()
            .map(|x| x.to_f64())
            .collect(),
        DType::BF16 => t
            .as_slice::<bf16>()
            .unwrap()
            .iter()
            .map(|x| x.to_f64())
            .collect(),
        d => panic!("unexpected dtype {d}"),
    }
}

pub(crate) fn assert_same(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert_eq!(got.dims(), want.dims(), "{what}: dims");
    for (i, (g, w)) in values(got).iter().zip(values(want)).enumerate() {
        let same = (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits();
        assert!(same, "{what}[{i}]: fused {g}, unfused {w}");
    }
}

/// A tensor of `dtype` from f64 values.
pub(crate) fn tensor(dtype: DType, dims: &[usize], v: &[f64]) -> Tensor {
    fn make<T: Element>(dims: &[usize], v: Vec<T>) -> Tensor {
        Tensor::new(dims, v).unwrap()
    }
    match dtype {
        DType::F32 => make(dims, v.iter().map(|&x| x as f32).collect()),
        DType::F64 => make(dims, v.to_vec()),
        DType::F16 => make(dims, v.iter().map(|&x| f16::from_f64(x)).collect()),
        DType::BF16 => make(dims, v.iter().map(|&x| bf16::from_f64(x)).collect()),
        d => panic!("unexpected dtype {d}"),
    }
}

/// Values every op is checked on: signed zeros and infinities, NaN, tiny, huge, and the
/// points where Relu6 and LeakyRelu change.
pub(super) const SPECIAL: [f64; 16] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -2.5,
    6.0,
    7.5,
    1e-30,
    -1e-8,
    90.0,
    -90.0,
    1e30,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
];

/// `n` values: special ones first, then random ones in [-scale, scale).
pub(crate) fn data(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut v: Vec<f64> = SPECIAL.iter().copied().cycle().take(n.min(48)).collect();
    v.extend(random(n - v.len(), seed).iter().map(|&x| x as f64 * scale));
    v
}

/// The benchmark's chain (`rill::bench_graphs::elementwise_chain`) over registers x, y and
/// the scalar 0.5.
pub(crate) const BENCH_CHAIN: [&str; 8] = [
    "Mul 0 2",
    "AddV2 3 1",
    "Relu 4",
    "Sub 5 0",
    "Square 6",
    "Mul 7 1",
    "Maximum 8 0",
    "Neg 9",
];

const FLOATS: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];

#[test]
fn every_op_matches_its_kernel() {
    for dtype in FLOATS {
        for (len, seed) in [(37usize, 1u64), (2500, 2)] {
            let x = tensor(dtype, &[len], &data(len, seed, 4.0));
            let y = tensor(dtype, &[len], &data(len, seed + 7, 3.0));
            for op in UNARY_OPS {
                let want = run(op, &[], vec![x.clone()]);
                let got = fused(&[&format!("{op} 0")], vec![x.clone()]);
                assert_same(&got, &want, &format!("{op} {dtype} [{len}]"));
            }
            for op in BINARY_OPS {
                let want = run(op, &[], vec![x.clone(), y.clone()]);
                let got = fused(&[&format!("{op} 0 1")], vec![x.clone(), y.clone()]);
                assert_same(&got, &want, &format!("{op} {dtype} [{len}]"));
            }
            let want = run(
                "LeakyRelu",
                &[("alpha", AttrValue::Float(0.3))],
                vec![x.clone()],
            );
            let got = fused(&["LeakyRelu 0 0.3"], vec![x.clone()]);
            assert_same(&got, &want, &format!("LeakyRelu {dtype}"));
        }
    }
}

/// Runs a program the slow way: each instruction as its own unfused kernel.
fn unfused(ops: &[&str], inputs: &[Tensor]) -> Tensor {
    let mut regs: Vec<Tensor> = inputs.to_vec();
    for text in ops {
        let t: Vec<&str> = text.split_whitespace().collect();
        let r = |i: usize| regs[t[i].parse::<usize>().unwrap()].clone();
        let out = match t.as_slice() {
            ["LeakyRelu", _, a] => run(
                "LeakyRelu",
                &[("alpha", AttrValue::Float(a.parse().unwrap()))],
                vec![r(1)],
            ),
            [op, _] => run(op, &[], vec![r(1)]),
            [op, _, _] => run(op, &[], vec![r(1), r(2)]),
            _ => panic!("bad instruction {text}"),
        };
        regs.push(out);
    }
    regs.pop().unwrap()
}

fn check_program(ops: &[&str], shapes: &[&[usize]]) {
    for dtype in FLOATS {
        let inputs: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let n = d.iter().product();
                tensor(dtype, d, &data(n, 10 + i as u64, 2.0))
            })
            .collect();
        let want = unfused(ops, &inputs);
        let got = fused(ops, inputs);
        assert_same(&got, &want, &format!("{ops:?} {dtype} {shapes:?}"));
    }
}

#[test]
fn programs_with_broadcasting_match_the_unfused_ops() {
    let chain = [
        "Mul 0 1",
        "Relu 3",
        "AddV2 4 2",
        "Tanh 5",
        "SquaredDifference 6 1",
        "LeakyRelu 7 0.1",
    ];
    check_program(&chain, &[&[4, 1, 300], &[5, 1], &[300]]);
    check_program(&chain, &[&[3, 700], &[3, 700], &[3, 700]]);
    check_program(&chain, &[&[2, 1, 3], &[], &[1, 3]]);
    // Scalars only, mixed with a dense input at the end.
    check_program(&["Mul 0 1", "Exp 3", "Sub 4 2"], &[&[], &[], &[4, 1030]]);
    check_program(&["Mul 0 1", "Exp 2"], &[&[], &[1]]);
    // A register read by several instructions, and one read twice by one.
    check_program(
        &[
            "Sigmoid 0",
            "Mul 2 2",
            "Mul 0 2",
            "Maximum 3 4",
            "RealDiv 5 1",
        ],
        &[&[1500], &[1]],
    );
    // Large outputs run in parallel blocks.
    check_program(
        &["AddV2 0 1", "Relu6 3", "Mul 4 2", "Rsqrt 5"],
        &[&[64, 1024], &[1024], &[64, 1]],
    );
    // Empty outputs.
    check_program(&["AddV2 0 1", "Neg 2"], &[&[0, 3], &[3]]);
    // A result computed from scalars alone fills a large fresh output (every element
    // written, though the output is never zeroed first).
    for dtype in FLOATS {
        let got = fused(
            &["Mul 0 1", "Neg 3"],
            vec![
                tensor(dtype, &[], &[1.5]),
                tensor(dtype, &[], &[-2.0]),
                tensor(dtype, &[3, 1500], &data(4500, 7, 2.0)),
            ],
        );
        assert_eq!(got.dims(), &[3, 1500], "{dtype}");
        assert!(values(&got).iter().all(|&v| v == 3.0), "{dtype}");
    }
}

#[test]
fn outputs_go_over_inputs_the_plan_gives() {
    let ops = ["Mul 0 1", "AddV2 2 0", "Elu 3"];
    let x = tensor(DType::F32, &[3, 2000], &data(6000, 3, 2.0));
    let y = tensor(DType::F32, &[2000], &data(2000, 4, 2.0));
    let want = unfused(&ops, &[x.clone(), y.clone()]);
    let plan = [OutputMemory::InPlace {
        input: 0,
        offset: 0,
        bytes: 24000,
    }];
    let got = run_with(
        "_FusedElementwise",
        &program(2, &ops),
        vec![x, y.clone()],
        &plan,
    );
    assert_same(&got.unwrap(), &want, "in place over input 0");
    // A shared input is copied, never written.
    let x = tensor(DType::F64, &[3, 2000], &data(6000, 5, 2.0));
    let keep = x.clone();
    let got = run_with(
        "_FusedElementwise",
        &program(1, &["Neg 0", "Exp 1"]),
        vec![x],
        &[],
    );
    assert_same(
        &got.unwrap(),
        &unfused(&["Neg 0", "Exp 1"], std::slice::from_ref(&keep)),
        "shared",
    );
    let original = tensor(DType::F64, &[3, 2000], &data(6000, 5, 2.0));
    assert_same(&keep, &original, "the shared input");
}

/// Outputs of at least `JIT_MIN_ELEMENTS` with dense and scalar inputs run as native code
/// (f32, f64) with a tail shorter than a vector interpreted; f16 and bf16, and programs
/// with an op that has no vector form, stay in the interpreter. All match the unfused ops.
#[test]
fn large_dense_programs_match_the_unfused_ops() {
    let n = JIT_MIN_ELEMENTS + 3;
    check_program(&BENCH_CHAIN, &[&[n], &[n], &[]]);
    check_program(&["Mul 0 1", "Tanh 2", "Sign 3"], &[&[n], &[n]]);
    // The output over input 0, which the compiled loop reads before it writes.
    for dtype in [DType::F32, DType::F64] {
        let ops = ["Mul 0 1", "AddV2 2 0", "Relu6 3", "Minimum 4 1"];
        let x = tensor(dtype, &[n], &data(n, 3, 8.0));
        let y = tensor(dtype, &[n], &data(n, 4, 8.0));
        let want = unfused(&ops, &[x.clone(), y.clone()]);
        let plan = [OutputMemory::InPlace {
            input: 0,
            offset: 0,
            bytes: n * dtype.size().unwrap(),
        }];
        let got = run_with("_FusedElementwise", &program(2, &ops), vec![x, y], &plan);
        assert_same(&got.unwrap(), &want, &format!("in place {dtype}"));
    }
}

#[test]
fn bad_programs_and_inputs_are_errors() {
    let x = || tensor(DType::F32, &[4], &[1.0, 2.0, 3.0, 4.0]);
    for (ops, n) in [
        (vec!["Nope 0"], 1),
        (vec!["Relu 1"], 1),
        (vec!["AddV2 0"], 1),
        (vec!["Relu 0 1"], 2),
        (vec!["LeakyRelu 0"], 1),
        (vec!["LeakyRelu 0 x"], 1),
        (vec![], 1),
    ] {
        let inputs = vec![x(); n];
        let e = run_with("_FusedElementwise", &program(n, &ops), inputs, &[]).unwrap_err();
        assert_eq!(e.code, rill_graph::Code::InvalidArgument, "{ops:?}: {e}");
    }
    let e = run_with(
        "_FusedElementwise",
        &program(2, &["AddV2 0 1"]),
        vec![x(), tensor(DType::F32, &[3], &[0.0; 3])],
        &[],
    )
    .unwrap_err();
    assert!(e.message.contains("Incompatible shapes"), "{e}");
    let e = run_with(
        "_FusedElementwise",
        &program(2, &["AddV2 0 1"]),
        vec![x()],
        &[],
    );
    assert!(e.is_err());
    let ints = Tensor::vector(vec![1i32, 2]);
    let attrs = [
        program(1, &["Neg 0"]),
        vec![("T", AttrValue::Type(DType::I32))],
    ]
    .concat();
    assert!(run_with("_FusedElementwise", &attrs, vec![ints], &[]).is_err());
}

/// Throughput of the benchmark chain (`rill::bench_graphs::elementwise_chain`) as one
/// kernel, as the same chain written by hand in one loop (the ceiling), and as its ops run
/// one by one; ignored by default, run with
/// `cargo test -p rill-kernels --release -- --ignored perf_fused --nocapture`.
#[test]
#[ignore]
fn perf_fused_chain() {
    let n = 1 << 20;
    let x = Tensor::new(&[n], random(n, 1)).unwrap();
    let y = Tensor::new(&[n], random(n, 2)).unwrap();
    let half = Tensor::scalar(0.5f32);
    let ops = BENCH_CHAIN;
    let time = |label: &str, f: &dyn Fn() -> Tensor| {
        let _ = f();
        let reps = 100;
        let us = (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(f());
                }
                start.elapsed().as_secs_f64() / reps as f64 * 1e6
            })
            .fold(f64::INFINITY, f64::min);
        println!("{label:<20} {us:>9.1} µs");
    };
    time("fused", &|| {
        run(
            "_FusedElementwise",
            &program(3, &ops),
            vec![x.clone(), y.clone(), half.clone()],
        )
    });
    time("hand-written loop", &|| {
        let mut out = Tensor::zeros(DType::F32, &[n]).unwrap();
        let (xs, ys) = (x.as_slice::<f32>().unwrap(), y.as_slice::<f32>().unwrap());
        crate::cpu::math::simd::widest(
            #[inline(always)]
            || {
                for ((o, &a), &b) in out
                    .as_mut_slice::<f32>()
                    .unwrap()
                    .iter_mut()
                    .zip(xs)
                    .zip(ys)
                {
                    let t = (a * 0.5 + b).max(0.0) - a;
                    *o = -((t * t * b).max(a));
                }
            },
        );
        out
    });
    time("unfused", &|| {
        let t = run("Mul", &[], vec![x.clone(), half.clone()]);
        let t = run("AddV2", &[], vec![t, y.clone()]);
        let t = run("Relu", &[], vec![t]);
        let t = run("Sub", &[], vec![t, x.clone()]);
        let t = run("Square", &[], vec![t]);
        let t = run("Mul", &[], vec![t, y.clone()]);
        let t = run("Maximum", &[], vec![t, x.clone()]);
        run("Neg", &[], vec![t])
    });
}
