//! Elementwise unary kernels, one declarative line per op: its per-element function for
//! floats (f32/f64 natively, f16/bf16 through f32) and, where TensorFlow registers them, for
//! integers (wrapping, so `Abs`/`Neg` of `i32::MIN` is `i32::MIN`). Also the float
//! predicates (`IsNan`, `IsInf`, `IsFinite`), `LogicalNot` and `LeakyRelu`.
//!
//! Invariants: outputs have the input's dtype and shape (bool for predicates); the input's
//! buffer is reused for the output; formulas follow TensorFlow's CPU functors (e.g. `Round`
//! rounds half to even, `Softplus` uses TF's thresholds, `Sign(NaN)` is NaN).

use std::marker::PhantomData;

use rill_graph::{DType, Node, Result, Tensor};

use super::broadcast::{unary, unary_same, unary_same_in};
use super::num::{is_half, via_f32, Float, Int};
use super::util::{attr_float, match_float, match_int, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// An elementwise unary op.
pub(crate) trait UnaryOp: Send + Sync + 'static {
    const NAME: &'static str;
    /// Whether the op has an integer kernel.
    const INT: bool = false;
    fn float<T: Float>(x: T) -> T;
    fn int<T: Int>(x: T) -> T {
        x
    }
}

pub(crate) const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
pub(crate) const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

/// Softplus's cut-off `log(eps) + 2` in `T`.
#[inline(always)]
pub(crate) fn softplus_threshold<T: Float>() -> T {
    T::EPSILON.ln() + T::from_f64(2.0)
}

/// TensorFlow's Softplus: `x` above `-log(eps) - 2`, `exp(x)` below `log(eps) + 2`.
#[inline(always)]
fn softplus<T: Float>(x: T) -> T {
    let threshold = softplus_threshold::<T>();
    if x > -threshold {
        x
    } else if x < threshold {
        x.exp()
    } else {
        (x.exp() + T::ONE).ln()
    }
}

macro_rules! unary_ops {
    ($($name:ident: float($x:ident) => $f:expr $(, int($y:ident) => $g:expr)?;)*) => {
        pub(crate) mod op {
            #![allow(clippy::neg_multiply)]
            use super::*;
            $(
                pub(crate) struct $name;
                impl UnaryOp for $name {
                    const NAME: &'static str = stringify!($name);
                    $(const INT: bool = { let _ = stringify!($y); true };)?
                    #[inline(always)]
                    fn float<T: Float>($x: T) -> T { $f }
                    $(#[inline(always)] fn int<T: Int>($y: T) -> T { $g })?
                }
            )*
        }
        fn register_table(r: &mut KernelRegistry) {
            $(r.cpu(stringify!($name), Unary::<op::$name>::factory);)*
        }
    };
}

unary_ops! {
    Abs: float(x) => x.abs(), int(x) => x.wrapping_abs();
    Neg: float(x) => -x, int(x) => x.wrapping_neg();
    Sign: float(x) => if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else if x.is_nan() {
        x
    } else {
        T::ZERO
    },
        int(x) => x.signum();
    Reciprocal: float(x) => T::ONE / x;
    Inv: float(x) => T::ONE / x;
    Square: float(x) => x * x, int(x) => x.wrapping_mul(x);
    Sqrt: float(x) => x.sqrt();
    Rsqrt: float(x) => T::ONE / x.sqrt();
    Exp: float(x) => x.exp();
    Expm1: float(x) => x.exp_m1();
    Log: float(x) => x.ln();
    Log1p: float(x) => x.ln_1p();
    Sin: float(x) => x.sin();
    Cos: float(x) => x.cos();
    Tan: float(x) => x.tan();
    Asin: float(x) => x.asin();
    Acos: float(x) => x.acos();
    Atan: float(x) => x.atan();
    Sinh: float(x) => x.sinh();
    Cosh: float(x) => x.cosh();
    Asinh: float(x) => x.asinh();
    Acosh: float(x) => x.acosh();
    Atanh: float(x) => x.atanh();
    Tanh: float(x) => x.tanh();
    Sigmoid: float(x) => T::ONE / (T::ONE + (-x).exp());
    Floor: float(x) => x.floor();
    Ceil: float(x) => x.ceil();
    Round: float(x) => x.round_ties_even(), int(x) => x;
    Rint: float(x) => x.round_ties_even();
    Erf: float(x) => x.erf();
    Erfc: float(x) => x.erfc();
    Relu: float(x) => if x < T::ZERO { T::ZERO } else { x },
        int(x) => if x < T::ZERO { T::ZERO } else { x };
    Relu6: float(x) => {
        let six = T::from_f64(6.0);
        let y = if x < T::ZERO { T::ZERO } else { x };
        if six < y { six } else { y }
    }, int(x) => {
        let six = T::from_i64(6);
        x.max(T::ZERO).min(six)
    };
    Elu: float(x) => if x < T::ZERO { x.exp() - T::ONE } else { x };
    Selu: float(x) => if x < T::ZERO {
        T::from_f64(SELU_SCALE * SELU_ALPHA) * (x.exp() - T::ONE)
    } else {
        T::from_f64(SELU_SCALE) * x
    };
    Softplus: float(x) => softplus(x);
    Softsign: float(x) => x / (T::ONE + x.abs());
}

/// The kernel of a [`UnaryOp`].
struct Unary<Op>(PhantomData<Op>);

fn supports<Op: UnaryOp>(d: DType) -> bool {
    d.is_float() || (Op::INT && d.is_integer())
}

impl<Op: UnaryOp> Unary<Op> {
    fn factory(node: &Node) -> Result<Box<dyn Kernel>> {
        match KernelRegistry::kernel_dtype(node) {
            Some(d) if !supports::<Op>(d) => Err(unsupported_dtype(Op::NAME, d)),
            _ => Ok(Box::new(Unary::<Op>(PhantomData))),
        }
    }
}

/// Applies `Op` to `x` (any supported dtype): in place when `x` is held alone, else into
/// a new output (where `cx`'s memory plan says, when there is a context).
pub(crate) fn apply_in<Op: UnaryOp>(cx: Option<&KernelContext>, x: Tensor) -> Result<Tensor> {
    let dt = x.dtype();
    match_float!(dt, T => unary_same_in::<T>(cx, x, Op::float::<T>), d => {
        if is_half(d) {
            let mut out = via_f32(d, vec![x], |v| {
                let [x] = take(Op::NAME, v)?;
                Ok(vec![unary_same::<f32>(x, Op::float::<f32>)?])
            })?;
            Ok(out.remove(0))
        } else if Op::INT {
            match_int!(d, T => unary_same_in::<T>(cx, x, Op::int::<T>), d => Err(unsupported_dtype(Op::NAME, d)))
        } else {
            Err(unsupported_dtype(Op::NAME, d))
        }
    })
}

impl<Op: UnaryOp> Kernel for Unary<Op> {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x] = take(Op::NAME, inputs)?;
        Ok(vec![apply_in::<Op>(Some(cx), x)?])
    }

    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::ELEMENTWISE
    }
}

/// A float predicate: `IsNan`, `IsInf`, `IsFinite`.
struct Predicate {
    name: &'static str,
    f32: fn(f32) -> bool,
    f64: fn(f64) -> bool,
}

impl Kernel for Predicate {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x] = take(self.name, inputs)?;
        let x = super::num::widen(x)?;
        let out = match x.dtype() {
            DType::F32 => unary::<f32, bool>(&x, self.f32)?,
            DType::F64 => unary::<f64, bool>(&x, self.f64)?,
            d => return Err(unsupported_dtype(self.name, d)),
        };
        Ok(vec![out])
    }
}

macro_rules! predicate {
    ($r:ident, $name:literal, |$x:ident| $e:expr) => {
        $r.cpu($name, |_| {
            Ok(Box::new(Predicate {
                name: $name,
                f32: |$x| $e,
                f64: |$x| $e,
            }))
        });
    };
}

/// `LogicalNot` on bool.
struct LogicalNot;

impl Kernel for LogicalNot {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x] = take("LogicalNot", inputs)?;
        Ok(vec![unary_same::<bool>(x, |b| !b)?])
    }
}

/// `LeakyRelu` with slope `alpha` (TensorFlow: `x > 0 ? x : x * alpha`).
#[inline(always)]
pub(crate) fn leaky_relu<T: Float>(x: T, alpha: T) -> T {
    if x > T::ZERO {
        x
    } else {
        x * alpha
    }
}

/// `LeakyRelu`: `x` where positive, `alpha * x` elsewhere (TF: `x > 0 ? x : x * alpha`).
struct LeakyRelu {
    alpha: f64,
}

impl Kernel for LeakyRelu {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [x] = take("LeakyRelu", inputs)?;
        fn leaky<T: Float>(x: Tensor, alpha: T) -> Result<Tensor> {
            unary_same::<T>(x, move |v| leaky_relu(v, alpha))
        }
        let dt = x.dtype();
        let out = match_float!(dt, T => leaky::<T>(x, T::from_f64(self.alpha))?, d => {
            if !is_half(d) {
                return Err(unsupported_dtype("LeakyRelu", d));
            }
            let a = self.alpha as f32;
            let mut out = via_f32(d, vec![x], |v| {
                let [x] = take("LeakyRelu", v)?;
                Ok(vec![leaky::<f32>(x, a)?])
            })?;
            out.remove(0)
        });
        Ok(vec![out])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    register_table(r);
    predicate!(r, "IsNan", |x| x.is_nan());
    predicate!(r, "IsInf", |x| x.is_infinite());
    predicate!(r, "IsFinite", |x| x.is_finite());
    r.cpu("LogicalNot", |_| Ok(Box::new(LogicalNot)));
    r.cpu("LeakyRelu", |node| {
        Ok(Box::new(LeakyRelu {
            alpha: attr_float(node, "alpha", 0.2)? as f64,
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_close, f32s, i32s, run, run1};
    use half::f16;
    use rill_graph::{AttrValue, Tensor};

    fn un(op: &str, x: &[f32]) -> Vec<f32> {
        run1(op, &[], vec![f32s(&[x.len()], x)])
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn float_formulas() {
        // Inverse hyperbolics stay finite and accurate for huge inputs and near -1.
        let x = [-3e38, 0.5, -0.9942694, 1.5, 0.25, -0.0];
        let want = [
            -89.28995, 0.48121184, -2.926_104, 0.9624237, 0.25541282, -0.0,
        ];
        let asinh = un("Asinh", &x);
        assert!((asinh[0] - want[0]).abs() < 1e-4 && (asinh[1] - want[1]).abs() < 1e-7);
        assert_eq!(asinh[5].to_bits(), (-0.0f32).to_bits());
        let acosh = un("Acosh", &[3e38, 1.5, 0.5]);
        assert!((acosh[0] - 89.28995).abs() < 1e-4 && (acosh[1] - want[3]).abs() < 1e-7);
        assert!(acosh[2].is_nan());
        let atanh = un("Atanh", &[x[2], x[4], -x[4], 1.0, -1.0]);
        // Within 2 ulps of the true -2.9261038700.
        assert!((atanh[0] - want[2]).abs() <= 2.0 * 2.4e-7, "{}", atanh[0]);
        assert_eq!((atanh[1], atanh[2]), (want[4], -want[4]));
        assert_eq!((atanh[3], atanh[4]), (f32::INFINITY, f32::NEG_INFINITY));
        assert_eq!(
            un("Round", &[0.5, 1.5, 2.5, -0.5, -1.5, 2.6]),
            [0.0, 2.0, 2.0, -0.0, -2.0, 3.0]
        );
        let s = un("Sign", &[-3.0, 0.0, 2.0, f32::NAN]);
        assert_eq!(&s[..3], &[-1.0, 0.0, 1.0]);
        assert!(s[3].is_nan());
        assert_eq!(un("Relu6", &[-1.0, 3.0, 7.0]), [0.0, 3.0, 6.0]);
        assert!(un("Relu", &[f32::NAN])[0].is_nan());
        let t = f32s(&[4], &[-1.0, 0.0, 1.0, 30.0]);
        assert_close(
            &run1("Softplus", &[], vec![t.clone()]),
            &[4],
            &[0.31326166, std::f32::consts::LN_2, 1.3132616, 30.0],
            1e-6,
        );
        assert_close(
            &run1("Sigmoid", &[], vec![t.clone()]),
            &[4],
            &[0.26894143, 0.5, 0.7310586, 1.0],
            1e-6,
        );
        assert_close(
            &run1("Elu", &[], vec![t.clone()]),
            &[4],
            &[-0.63212055, 0.0, 1.0, 30.0],
            1e-6,
        );
        assert_close(
            &run1("Selu", &[], vec![t.clone()]),
            &[4],
            &[-1.1113307, 0.0, 1.050701, 31.52103],
            1e-6,
        );
        assert_close(
            &run1("Erf", &[], vec![t.clone()]),
            &[4],
            &[-0.8427008, 0.0, 0.8427008, 1.0],
            1e-6,
        );
        assert_close(
            &run1("Softsign", &[], vec![t.clone()]),
            &[4],
            &[-0.5, 0.0, 0.5, 30.0 / 31.0],
            1e-6,
        );
        let lr = run1("LeakyRelu", &[("alpha", AttrValue::Float(0.1))], vec![t]);
        assert_close(&lr, &[4], &[-0.1, 0.0, 1.0, 30.0], 1e-7);
        assert_close(
            &run1("Rsqrt", &[], vec![f32s(&[], &[4.0])]),
            &[],
            &[0.5],
            0.0,
        );
    }

    #[test]
    fn integers_wrap_and_floats_only_ops_reject_ints() {
        let x = i32s(&[3], &[i32::MIN, -5, 7]);
        assert_eq!(
            run1("Abs", &[], vec![x.clone()]).as_slice::<i32>().unwrap(),
            &[i32::MIN, 5, 7]
        );
        assert_eq!(
            run1("Neg", &[], vec![x.clone()]).as_slice::<i32>().unwrap(),
            &[i32::MIN, 5, -7]
        );
        assert_eq!(
            run1("Sign", &[], vec![x.clone()])
                .as_slice::<i32>()
                .unwrap(),
            &[-1, -1, 1]
        );
        assert_eq!(
            run1("Square", &[], vec![i32s(&[1], &[65536])])
                .as_slice::<i32>()
                .unwrap(),
            &[0]
        );
        let e = run("Sqrt", &[], vec![x]).unwrap_err();
        assert_eq!(e.code, rill_graph::Code::Unimplemented);
    }

    #[test]
    fn empty_scalar_half_and_predicates() {
        let e = run1("Exp", &[], vec![f32s(&[0, 3], &[])]);
        assert_eq!(e.dims(), &[0, 3]);
        let h = Tensor::new(&[2], vec![f16::from_f32(4.0), f16::from_f32(0.25)]).unwrap();
        let out = run1("Sqrt", &[], vec![h]);
        assert_eq!(
            out.as_slice::<f16>().unwrap(),
            &[f16::from_f32(2.0), f16::from_f32(0.5)]
        );
        let p = run1(
            "IsNan",
            &[],
            vec![f32s(&[3], &[f32::NAN, 1.0, f32::INFINITY])],
        );
        assert_eq!(p.as_slice::<bool>().unwrap(), &[true, false, false]);
        let p = run1(
            "IsFinite",
            &[],
            vec![Tensor::vector(vec![f64::NAN, 1.0, f64::INFINITY])],
        );
        assert_eq!(p.as_slice::<bool>().unwrap(), &[false, true, false]);
        let n = run1("LogicalNot", &[], vec![Tensor::scalar(true)]);
        assert_eq!(n.as_slice::<bool>().unwrap(), &[false]);
    }
}
