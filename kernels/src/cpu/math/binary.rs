//! Elementwise binary arithmetic kernels with broadcasting, one declarative line per op:
//! the per-element function for floats (f32/f64 natively, f16/bf16 through f32) and, where
//! TensorFlow registers one, for integers. Also the activation gradients (`TanhGrad`,
//! `ReluGrad`, ...), which TensorFlow defines elementwise on (output or feature, gradient).
//!
//! Invariants: both inputs have the same dtype (InvalidArgument otherwise); integer
//! arithmetic wraps; integer `Div`, `FloorDiv`, `FloorMod`, `Mod`, `TruncateDiv`,
//! `TruncateMod` by zero are InvalidArgument "Integer division by zero", and integer `Pow`
//! with a negative exponent is InvalidArgument, as in TensorFlow.

use std::marker::PhantomData;

use rill_graph::{element_count, DType, Error, Node, Result, Tensor};

use super::broadcast::{binary_ref, binary_same, binary_same_in, broadcast_dims};
use super::num::{division_by_zero, is_half, max_nan, min_nan, via_f32, Float, Int};
use super::util::{attr_float, match_float, match_int, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// What an integer kernel must check on its second operand first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    /// No zero divisor.
    Divisor,
    /// No negative exponent.
    Exponent,
}

/// An elementwise binary op.
pub(crate) trait BinaryOp: Send + Sync + 'static {
    const NAME: &'static str;
    const INT: bool = false;
    const CHECK: Check = Check::None;
    fn float<T: Float>(a: T, b: T) -> T;
    fn int<T: Int>(a: T, _b: T) -> T {
        a
    }
}

const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

macro_rules! binary_ops {
    ($($name:ident: float($a:ident, $b:ident) => $f:expr
        $(, int $([$check:ident])? ($ia:ident, $ib:ident) => $g:expr)?;)*) => {
        pub(crate) mod op {
            #![allow(clippy::neg_multiply)]
            use super::*;
            $(
                pub(crate) struct $name;
                impl BinaryOp for $name {
                    const NAME: &'static str = stringify!($name);
                    $(
                        const INT: bool = { let _ = stringify!($ia); true };
                        $(const CHECK: Check = Check::$check;)?
                        #[inline(always)]
                        fn int<T: Int>($ia: T, $ib: T) -> T { $g }
                    )?
                    #[inline(always)]
                    fn float<T: Float>($a: T, $b: T) -> T { $f }
                }
            )*
        }
        fn register_table(r: &mut KernelRegistry) {
            $(r.cpu(stringify!($name), Binary::<op::$name>::factory);)*
        }
    };
}

binary_ops! {
    Add: float(a, b) => a + b, int(a, b) => a.wrapping_add(b);
    AddV2: float(a, b) => a + b, int(a, b) => a.wrapping_add(b);
    Sub: float(a, b) => a - b, int(a, b) => a.wrapping_sub(b);
    Mul: float(a, b) => a * b, int(a, b) => a.wrapping_mul(b);
    Div: float(a, b) => a / b, int[Divisor](a, b) => a.wrapping_div(b);
    RealDiv: float(a, b) => a / b;
    DivNoNan: float(a, b) => if b == T::ZERO { T::ZERO } else { a / b };
    MulNoNan: float(a, b) => if b == T::ZERO { T::ZERO } else { a * b };
    FloorDiv: float(a, b) => (a / b).floor(), int[Divisor](a, b) => a.floor_div(b);
    FloorMod: float(a, b) => {
        let r = a % b;
        if r != T::ZERO && ((r < T::ZERO) != (b < T::ZERO)) { r + b } else { r }
    }, int[Divisor](a, b) => a.floor_mod(b);
    Mod: float(a, b) => a % b, int[Divisor](a, b) => a.wrapping_rem(b);
    TruncateMod: float(a, b) => a % b, int[Divisor](a, b) => a.wrapping_rem(b);
    TruncateDiv: float(a, b) => (a / b).trunc(), int[Divisor](a, b) => a.wrapping_div(b);
    Pow: float(a, b) => a.powf(b), int[Exponent](a, b) => a.wrapping_pow_int(b);
    SquaredDifference: float(a, b) => (a - b) * (a - b),
        int(a, b) => a.wrapping_sub(b).wrapping_mul(a.wrapping_sub(b));
    Maximum: float(a, b) => max_nan(a, b), int(a, b) => a.max(b);
    Minimum: float(a, b) => min_nan(a, b), int(a, b) => a.min(b);
    Atan2: float(a, b) => a.atan2(b);
    Xlogy: float(a, b) => if a == T::ZERO { T::ZERO } else { a * b.ln() };
    Xlog1py: float(a, b) => if a == T::ZERO { T::ZERO } else { a * b.ln_1p() };
    Xdivy: float(a, b) => if a == T::ZERO { T::ZERO } else { a / b };
    TanhGrad: float(y, dy) => dy * (T::ONE - y * y);
    SigmoidGrad: float(y, dy) => dy * (y * (T::ONE - y));
    RsqrtGrad: float(y, dy) => T::from_f64(-0.5) * (dy * y) * (y * y);
    SqrtGrad: float(y, dy) => T::from_f64(0.5) * dy / y;
    ReciprocalGrad: float(y, dy) => -(y * y) * dy;
    InvGrad: float(y, dy) => -(y * y) * dy;
    ReluGrad: float(g, x) => if x > T::ZERO { g } else { T::ZERO },
        int(g, x) => if x > T::ZERO { g } else { T::ZERO };
    Relu6Grad: float(g, x) => if x > T::ZERO && x < T::from_f64(6.0) { g } else { T::ZERO },
        int(g, x) => if x > T::ZERO && x < T::from_i64(6) { g } else { T::ZERO };
    EluGrad: float(g, y) => if y < T::ZERO { g * (y + T::ONE) } else { g };
    SeluGrad: float(g, y) => if y < T::ZERO {
        g * (y + T::from_f64(SELU_SCALE * SELU_ALPHA))
    } else {
        g * T::from_f64(SELU_SCALE)
    };
    SoftplusGrad: float(g, x) => g / ((-x).exp() + T::ONE);
    SoftsignGrad: float(g, x) => g / ((T::ONE + x.abs()) * (T::ONE + x.abs()));
}

/// The kernel of a [`BinaryOp`].
struct Binary<Op>(PhantomData<Op>);

impl<Op: BinaryOp> Binary<Op> {
    fn factory(node: &Node) -> Result<Box<dyn Kernel>> {
        match KernelRegistry::kernel_dtype(node) {
            Some(DType::String) if Op::NAME == "Add" => Ok(Box::new(Binary::<Op>(PhantomData))),
            Some(d) if !(d.is_float() || (Op::INT && d.is_integer())) => {
                Err(unsupported_dtype(Op::NAME, d))
            }
            _ => Ok(Box::new(Binary::<Op>(PhantomData))),
        }
    }
}

/// Both operands of a binary op must share a dtype.
pub(crate) fn same_dtype(op: &str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::invalid_argument(format!(
            "{op}: operands have different dtypes {} and {}",
            a.dtype(),
            b.dtype()
        )));
    }
    Ok(())
}

fn check_int<T: Int>(check: Check, a: &Tensor, b: &Tensor) -> Result<()> {
    if check == Check::None || element_count(&broadcast_dims(&[a.dims(), b.dims()])?)? == 0 {
        return Ok(());
    }
    let v = b.as_slice::<T>()?;
    match check {
        Check::Divisor if v.contains(&T::ZERO) => Err(division_by_zero()),
        Check::Exponent if v.iter().any(|x| x.is_negative()) => Err(Error::invalid_argument(
            "Integers to negative integer powers are not allowed",
        )),
        _ => Ok(()),
    }
}

/// `Op(a, b)` with broadcasting (any dtype the op supports).
/// Writes over an input the kernel holds alone, else into a new output (where `cx`'s
/// memory plan says, when there is a context).
pub(crate) fn apply_in<Op: BinaryOp>(
    cx: Option<&KernelContext>,
    a: Tensor,
    b: Tensor,
) -> Result<Tensor> {
    same_dtype(Op::NAME, &a, &b)?;
    let dt = a.dtype();
    match_float!(dt, T => binary_same_in::<T>(cx, a, b, Op::float::<T>), d => {
        if is_half(d) {
            let mut out = via_f32(d, vec![a, b], |v| {
                let [a, b] = take(Op::NAME, v)?;
                Ok(vec![binary_same::<f32>(a, b, Op::float::<f32>)?])
            })?;
            Ok(out.remove(0))
        } else if Op::INT {
            match_int!(d, T => {
                check_int::<T>(Op::CHECK, &a, &b)?;
                binary_same_in::<T>(cx, a, b, Op::int::<T>)
            }, d => Err(unsupported_dtype(Op::NAME, d)))
        } else {
            Err(unsupported_dtype(Op::NAME, d))
        }
    })
}

impl<Op: BinaryOp> Kernel for Binary<Op> {
    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::ELEMENTWISE
    }

    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [a, b] = take(Op::NAME, inputs)?;
        if Op::NAME == "Add" && a.dtype() == DType::String && b.dtype() == DType::String {
            // TensorFlow's Add concatenates strings (with broadcasting).
            let cat = |x: &Vec<u8>, y: &Vec<u8>| [x.as_slice(), y.as_slice()].concat();
            return Ok(vec![binary_ref::<Vec<u8>, Vec<u8>, Vec<u8>>(&a, &b, cat)?]);
        }
        Ok(vec![apply_in::<Op>(Some(cx), a, b)?])
    }
}

/// `LeakyReluGrad(gradients, features)`: `features > 0 ? g : g * alpha`.
struct LeakyReluGrad {
    alpha: f64,
}

impl Kernel for LeakyReluGrad {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [g, x] = take("LeakyReluGrad", inputs)?;
        same_dtype("LeakyReluGrad", &g, &x)?;
        fn grad<T: Float>(g: Tensor, x: Tensor, alpha: T) -> Result<Tensor> {
            binary_same::<T>(g, x, move |g, x| if x > T::ZERO { g } else { g * alpha })
        }
        let dt = g.dtype();
        let alpha = self.alpha;
        let out = match_float!(dt, T => grad::<T>(g, x, T::from_f64(alpha))?, d => {
            if !is_half(d) {
                return Err(unsupported_dtype("LeakyReluGrad", d));
            }
            let mut out = via_f32(d, vec![g, x], |v| {
                let [g, x] = take("LeakyReluGrad", v)?;
                Ok(vec![grad::<f32>(g, x, alpha as f32)?])
            })?;
            out.remove(0)
        });
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    register_table(r);
    r.cpu("LeakyReluGrad", |node| {
        Ok(Box::new(LeakyReluGrad {
            alpha: attr_float(node, "alpha", 0.2)? as f64,
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, run, run1};
    use half::bf16;
    use rill_graph::{Code, Tensor};

    fn ints(op: &str, a: &[i32], b: &[i32]) -> Vec<i32> {
        let out = run1(op, &[], vec![i32s(&[a.len()], a), i32s(&[b.len()], b)]);
        out.as_slice::<i32>().unwrap().to_vec()
    }

    #[test]
    fn integer_division_semantics() {
        let a = [7, -7, 7, -7];
        let b = [2, 2, -2, -2];
        assert_eq!(ints("FloorDiv", &a, &b), [3, -4, -4, 3]);
        assert_eq!(ints("FloorMod", &a, &b), [1, 1, -1, -1]);
        assert_eq!(ints("Div", &a, &b), [3, -3, -3, 3]);
        assert_eq!(ints("TruncateDiv", &a, &b), [3, -3, -3, 3]);
        assert_eq!(ints("Mod", &a, &b), [1, -1, 1, -1]);
        for op in ["Div", "FloorDiv", "FloorMod", "Mod", "TruncateDiv"] {
            let e = run(op, &[], vec![i32s(&[2], &[1, 2]), i32s(&[2], &[1, 0])]).unwrap_err();
            assert_eq!(
                (e.code, e.message.as_str()),
                (Code::InvalidArgument, "Integer division by zero")
            );
        }
        // A zero divisor that no output element uses is fine.
        let out = run1("Div", &[], vec![i32s(&[0, 2], &[]), i32s(&[2], &[0, 1])]);
        assert_eq!(out.dims(), &[0, 2]);
        assert_eq!(ints("Pow", &[2, -3, 5], &[10, 3, 0]), [1024, -27, 1]);
        assert!(run("Pow", &[], vec![i32s(&[1], &[2]), i32s(&[1], &[-1])]).is_err());
    }

    #[test]
    fn add_concatenates_strings() {
        let a = Tensor::vector(vec![b"a".to_vec(), b"b".to_vec()]);
        let out = run1("Add", &[], vec![a, Tensor::scalar(b"!".to_vec())]);
        assert_eq!(
            out.as_slice::<Vec<u8>>().unwrap(),
            &[b"a!".to_vec(), b"b!".to_vec()]
        );
    }

    #[test]
    fn integer_overflow_wraps() {
        assert_eq!(ints("Add", &[i32::MAX], &[1]), [i32::MIN]);
        assert_eq!(ints("Mul", &[1 << 20], &[1 << 12]), [0]);
        assert_eq!(ints("Sub", &[i32::MIN], &[1]), [i32::MAX]);
        assert_eq!(ints("Div", &[i32::MIN], &[-1]), [i32::MIN]);
    }

    #[test]
    fn float_ops_and_broadcasting() {
        let a = f32s(&[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = f32s(&[4, 1], &[0.0, 1.0, 2.0, 3.0]);
        let out = run1("Sub", &[], vec![a, b]);
        assert_eq!(out.dims(), &[2, 4, 3]);
        assert_eq!(
            &out.as_slice::<f32>().unwrap()[..6],
            &[1.0, 2.0, 3.0, 0.0, 1.0, 2.0]
        );
        let fm = run1(
            "FloorMod",
            &[],
            vec![f32s(&[3], &[7.0, -7.0, 7.5]), f32s(&[3], &[-2.0, 2.0, 2.0])],
        );
        assert_close(&fm, &[3], &[-1.0, 1.0, 1.5], 0.0);
        let m = run1(
            "Maximum",
            &[],
            vec![f32s(&[3], &[1.0, f32::NAN, 3.0]), f32s(&[], &[2.0])],
        );
        let m = m.as_slice::<f32>().unwrap();
        assert!(m[0] == 2.0 && m[1].is_nan() && m[2] == 3.0);
        let d = run1(
            "DivNoNan",
            &[],
            vec![f32s(&[2], &[1.0, 1.0]), f32s(&[2], &[0.0, 4.0])],
        );
        assert_close(&d, &[2], &[0.0, 0.25], 0.0);
        let x = run1(
            "Xlogy",
            &[],
            vec![f32s(&[2], &[0.0, 2.0]), f32s(&[2], &[0.0, 1.0])],
        );
        assert_close(&x, &[2], &[0.0, 0.0], 0.0);
        let sq = run1(
            "SquaredDifference",
            &[],
            vec![f32s(&[2], &[1.0, 5.0]), f32s(&[], &[3.0])],
        );
        assert_close(&sq, &[2], &[4.0, 4.0], 0.0);
        let e = run(
            "Add",
            &[],
            vec![f32s(&[2, 3], &[0.0; 6]), f32s(&[4], &[0.0; 4])],
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(run("Add", &[], vec![f32s(&[1], &[0.0]), i32s(&[1], &[0])]).is_err());
        let h = vec![bf16::from_f32(1.5), bf16::from_f32(2.0)];
        let out = run1(
            "Mul",
            &[],
            vec![Tensor::vector(h.clone()), Tensor::vector(h)],
        );
        assert_eq!(
            out.as_slice::<bf16>().unwrap(),
            &[bf16::from_f32(2.25), bf16::from_f32(4.0)]
        );
    }

    #[test]
    fn activation_gradients() {
        let y = f32s(&[3], &[0.5, -0.5, 0.0]);
        let dy = f32s(&[3], &[2.0, 2.0, 2.0]);
        assert_close(
            &run1("TanhGrad", &[], vec![y.clone(), dy.clone()]),
            &[3],
            &[1.5, 1.5, 2.0],
            1e-7,
        );
        assert_close(
            &run1("SigmoidGrad", &[], vec![y.clone(), dy.clone()]),
            &[3],
            &[0.5, -1.5, 0.0],
            1e-7,
        );
        assert_close(
            &run1("ReluGrad", &[], vec![dy.clone(), y.clone()]),
            &[3],
            &[2.0, 0.0, 0.0],
            0.0,
        );
        let r6 = run1(
            "Relu6Grad",
            &[],
            vec![dy.clone(), f32s(&[3], &[6.0, 5.9, -1.0])],
        );
        assert_close(&r6, &[3], &[0.0, 2.0, 0.0], 0.0);
        let sq = run1(
            "SqrtGrad",
            &[],
            vec![f32s(&[1], &[2.0]), f32s(&[1], &[4.0])],
        );
        assert_close(&sq, &[1], &[1.0], 0.0);
        let rs = run1(
            "RsqrtGrad",
            &[],
            vec![f32s(&[1], &[2.0]), f32s(&[1], &[1.0])],
        );
        assert_close(&rs, &[1], &[-4.0], 0.0);
        let rc = run1(
            "ReciprocalGrad",
            &[],
            vec![f32s(&[1], &[2.0]), f32s(&[1], &[3.0])],
        );
        assert_close(&rc, &[1], &[-12.0], 0.0);
        let lr = run1("LeakyReluGrad", &[], vec![dy, y]);
        assert_close(&lr, &[3], &[2.0, 0.4, 0.4], 1e-7);
    }
}
