//! Tests of the compiled `_FusedElementwise` loops (`jit.rs`): every op that compiles
//! against its functor on every pair of special values and on random values, in f32 and
//! f64, with dense and scalar operands; the ops expected to compile do; a program with
//! scalar-only parts and an input that is also the output.

use rill_graph::DType;

use super::jit::{available, compile, Compiled};
use super::lane::Lane;
use super::program::{binary1, leaky_relu, unary1, Op, Program, BINARY_OPS, UNARY_OPS};
use super::tests::SPECIAL;
use crate::cpu::math::num::Float;
use crate::cpu::math::test_util::random;

/// The ops with an exact vector form (all others must fail to compile).
const NATIVE: &[&str] = &[
    "Abs",
    "Neg",
    "Sign",
    "Reciprocal",
    "Inv",
    "Square",
    "Sqrt",
    "Rsqrt",
    "Floor",
    "Ceil",
    "Round",
    "Rint",
    "Relu",
    "Relu6",
    "Softsign",
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "Div",
    "RealDiv",
    "DivNoNan",
    "MulNoNan",
    "FloorDiv",
    "TruncateDiv",
    "SquaredDifference",
    "Maximum",
    "Minimum",
    "LeakyRelu",
];

/// The kernel tests' special values and a few more (a rounding tie, near f32's lowest,
/// a NaN with the sign bit set).
pub(crate) fn special() -> Vec<f64> {
    let more = [2.5, -3.0e38, -f64::NAN];
    SPECIAL.iter().chain(&more).copied().collect()
}

/// Every (x, y) pair of special values, then random pairs; a length that is a multiple of
/// every lane count.
pub(crate) fn pairs() -> (Vec<f64>, Vec<f64>) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let special = special();
    for &a in &special {
        for &b in &special {
            x.push(a);
            y.push(b);
        }
    }
    let r = random(1000, 3);
    x.extend(r[..500].iter().map(|&v| v as f64 * 8.0));
    y.extend(r[500..].iter().map(|&v| v as f64 * 3.0));
    let len = x.len() / 4 * 4;
    x.truncate(len);
    y.truncate(len);
    (x, y)
}

pub(crate) fn same<T: Float>(got: T, want: T) -> bool {
    (got.is_nan() && want.is_nan()) || got.to_f64().to_bits() == want.to_f64().to_bits()
}

/// Runs `code` on `inputs` (a one-element input is passed as the scalar).
fn call<T: Lane<C = T> + Float>(code: &Compiled, inputs: &[&[T]], len: usize) -> Vec<T> {
    let mut out = vec![T::C::ZERO; len];
    let at: Vec<*const u8> = inputs.iter().map(|v| v.as_ptr().cast()).collect();
    // SAFETY: every input has `len` elements or is compiled as scalar; `len` is a multiple
    // of the lane count (`pairs`).
    unsafe { code.call(&at, out.as_mut_ptr().cast(), len) };
    out
}

fn check_ops<T: Lane<C = T> + Float>(dtype: DType) {
    let (xs, ys) = pairs();
    let x: Vec<T> = xs.iter().map(|&v| T::from_f64(v)).collect();
    let y: Vec<T> = ys.iter().map(|&v| T::from_f64(v)).collect();
    let len = x.len();
    let compiles = |text: &str, scalar: &[bool]| {
        let prog = Program::parse(scalar.len(), &[text.as_bytes().to_vec()]).unwrap();
        let code = compile(&prog, dtype, scalar);
        let name = text.split(' ').next().unwrap();
        assert_eq!(code.is_ok(), NATIVE.contains(&name), "{text} {dtype}");
        code.ok()
    };
    for &op in UNARY_OPS {
        let Some(code) = compiles(&format!("{op} 0"), &[false]) else {
            continue;
        };
        let Op::Un(u) = Program::parse(1, &[format!("{op} 0").into_bytes()])
            .unwrap()
            .instrs[0]
            .op
        else {
            unreachable!()
        };
        for (i, (&g, &a)) in call(&code, &[&x], len).iter().zip(&x).enumerate() {
            let w = unary1(u, a);
            assert!(same(g, w), "{op} {dtype} [{i}] of {a:?}: {g:?}, want {w:?}");
        }
    }
    for &op in BINARY_OPS {
        let text = format!("{op} 0 1");
        let Some(code) = compiles(&text, &[false, false]) else {
            continue;
        };
        let Op::Bin(f) = Program::parse(2, &[text.clone().into_bytes()])
            .unwrap()
            .instrs[0]
            .op
        else {
            unreachable!()
        };
        for (i, ((&g, &a), &b)) in call(&code, &[&x, &y], len)
            .iter()
            .zip(&x)
            .zip(&y)
            .enumerate()
        {
            let w = binary1(f, a, b);
            assert!(
                same(g, w),
                "{op} {dtype} [{i}] of {a:?}, {b:?}: {g:?}, want {w:?}"
            );
        }
        // A scalar second operand, broadcast.
        let code = compiles(&text, &[false, true]).unwrap();
        for b in special() {
            let b = T::from_f64(b);
            for (i, (&g, &a)) in call(&code, &[&x, &[b]], len).iter().zip(&x).enumerate() {
                let w = binary1(f, a, b);
                assert!(
                    same(g, w),
                    "{op} {dtype} [{i}] of {a:?}, scalar {b:?}: {g:?}"
                );
            }
        }
    }
    let code = compiles("LeakyRelu 0 0.3", &[false]).unwrap();
    let alpha = T::from_f64(f64::from(0.3f32));
    for (&g, &a) in call(&code, &[&x], len).iter().zip(&x) {
        assert!(
            same(g, leaky_relu(a, alpha)),
            "LeakyRelu {dtype} of {a:?}: {g:?}"
        );
    }
}

#[test]
fn every_compiled_op_matches_its_functor() {
    if !available() {
        eprintln!("skipped: no native code generation on this host (or RILL_NO_JIT is set)");
        return;
    }
    check_ops::<f32>(DType::F32);
    check_ops::<f64>(DType::F64);
}

#[test]
fn scalar_only_parts_and_an_output_over_an_input() {
    if !available() {
        eprintln!("skipped: no native code generation on this host (or RILL_NO_JIT is set)");
        return;
    }
    // (s0 * s1) is computed once before the loop; register 0 is also the output.
    let ops: Vec<Vec<u8>> = ["Mul 1 2", "Neg 3", "AddV2 0 4", "Relu6 5"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let prog = Program::parse(3, &ops).unwrap();
    let code = compile(&prog, DType::F32, &[false, true, true]).unwrap();
    let mut v: Vec<f32> = (0..1024).map(|i| i as f32 / 100.0 - 3.0).collect();
    let want: Vec<f32> = v
        .iter()
        .map(|&x| (x + -(1.5 * 2.0f32)).clamp(0.0, 6.0))
        .collect();
    let (s0, s1) = (1.5f32, 2.0f32);
    let at = [
        v.as_ptr().cast(),
        (&s0 as *const f32).cast(),
        (&s1 as *const f32).cast(),
    ];
    // SAFETY: input 0 is the output itself (1024 elements, read before written); the
    // scalars are one element each; 1024 is a multiple of 4.
    unsafe { code.call(&at, v.as_mut_ptr().cast(), v.len()) };
    assert_eq!(v, want);
    // Wrong dtypes and flag counts are errors, not code.
    assert!(compile(&prog, DType::F16, &[false, true, true]).is_err());
    assert!(compile(&prog, DType::F32, &[false]).is_err());
}
