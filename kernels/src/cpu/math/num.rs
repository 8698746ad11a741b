//! Numeric element traits shared by the math and nn kernels: [`Float`] (f32, f64) and
//! [`Int`] (every integer dtype), TensorFlow's special functions (`erf`, `erfc`), and the
//! f16/bf16 bridge (half-precision tensors are computed in f32 and stored back).
//!
//! Invariants: integer arithmetic wraps (as TensorFlow's does on CPU); callers check
//! divisors for zero before calling the integer division methods, which then never panic.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Rem, Sub, SubAssign};

use half::{bf16, f16, slice::HalfFloatSliceExt, vec::HalfFloatVecExt};
use rill_graph::{Buffer, DType, Element, Error, Result, Tensor};

/// A floating-point element type computed natively (f32, f64).
pub(crate) trait Float:
    Element
    + Copy
    + PartialOrd
    + Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Rem<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    const EPSILON: Self;
    /// The largest finite value (its negation is the lowest).
    const MAX: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn abs(self) -> Self;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn exp_m1(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn trunc(self) -> Self;
    fn round_ties_even(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn atan2(self, x: Self) -> Self;
    fn is_nan(self) -> bool;
    fn erf(self) -> Self {
        Self::from_f64(erf_f64(self.to_f64()))
    }
    fn erfc(self) -> Self {
        Self::from_f64(erfc_f64(self.to_f64()))
    }
}

/// Where [`Float::asinh`] and [`Float::acosh`] switch to `ln(2|x|)`.
const ASINH_LARGE: f64 = (1u64 << 28) as f64;

macro_rules! float_impl {
    ($($t:ident: $exp:path, $tanh:path),*) => {$(
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = $t::INFINITY;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            const EPSILON: Self = $t::EPSILON;
            const MAX: Self = $t::MAX;
            #[inline(always)]
            fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            float_impl!(@unary $t: abs sqrt exp_m1 ln ln_1p sin cos tan asin acos atan sinh
                cosh floor ceil trunc round_ties_even);
            // Rust's asinh and acosh overflow to infinity for |x| near MAX (their forms
            // add x to about x); past 2^28, sqrt(x^2 ± 1) is x to rounding, so both are
            // ln(2|x|), as C's and TensorFlow's are.
            #[inline(always)]
            fn asinh(self) -> Self {
                let a = self.abs();
                if a > ASINH_LARGE as $t {
                    (a.ln() + std::f64::consts::LN_2 as $t).copysign(self)
                } else {
                    $t::asinh(self)
                }
            }
            // Rust's atanh takes log1p(2x / (1 - x)) of x itself, which loses up to ~60 ulps
            // for x near -1 (log1p near -1); the odd symmetry keeps its argument positive.
            #[inline(always)]
            fn atanh(self) -> Self {
                let a = self.abs();
                (0.5 * ((a + a) / (1.0 - a)).ln_1p()).copysign(self)
            }
            #[inline(always)]
            fn acosh(self) -> Self {
                if self > ASINH_LARGE as $t {
                    self.ln() + std::f64::consts::LN_2 as $t
                } else {
                    $t::acosh(self)
                }
            }
            #[inline(always)]
            fn exp(self) -> Self { $exp(self) }
            #[inline(always)]
            fn tanh(self) -> Self { $tanh(self) }
            #[inline(always)]
            fn powf(self, e: Self) -> Self { $t::powf(self, e) }
            #[inline(always)]
            fn atan2(self, x: Self) -> Self { $t::atan2(self, x) }
            #[inline(always)]
            fn is_nan(self) -> bool { $t::is_nan(self) }
        }
    )*};
    (@unary $t:ident: $($m:ident)*) => {$(
        #[inline(always)]
        fn $m(self) -> Self { $t::$m(self) }
    )*};
}
float_impl!(f32: exp_f32, tanh_f32, f64: f64::exp, f64::tanh);

/// `exp` for f32 as Cephes/Eigen compute it: range reduction by ln 2 and a degree-6
/// polynomial, branch-free so loops over it vectorise (about 1 ulp; TensorFlow's own CPU
/// `exp` is this kind of approximation, not libm).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const HI: f32 = 88.722_84;
    const LO: f32 = -103.972_08;
    let xc = x.clamp(LO, HI);
    // Round to nearest with the 1.5 * 2^23 trick (vectorises without SSE4.1).
    let fx = (xc * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = xc - fx * 0.693_359_4 - fx * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2^n as two halves so every factor is a normal number (n is in [-150, 128]).
    let n = fx as i32;
    let n1 = n >> 1;
    let scale1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let scale2 = f32::from_bits(((n - n1 + 127) as u32) << 23);
    let out = y * scale1 * scale2;
    if x > HI {
        f32::INFINITY
    } else if x < LO {
        0.0
    } else {
        out
    }
}

/// `tanh` for f32 as Eigen computes it: a [13/6] rational approximation on [-7.9, 7.9]
/// (`x` itself below 4e-4), branch-free.
#[inline(always)]
pub(crate) fn tanh_f32(a: f32) -> f32 {
    let x = a.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = x2 * -2.760_768_5e-16 + 2.000_188e-13;
    p = x2 * p + -8.604_672e-11;
    p = x2 * p + 5.122_297e-8;
    p = x2 * p + 1.485_722_4e-5;
    p = x2 * p + 6.372_619_3e-4;
    p = x2 * p + 4.893_524_6e-3;
    p *= x;
    let mut q = x2 * 1.198_258_4e-6 + 1.185_347_1e-4;
    q = x2 * q + 2.268_434_6e-3;
    q = x2 * q + 4.893_525e-3;
    if a.abs() < 4e-4 {
        a
    } else {
        p / q
    }
}

/// An integer element type; arithmetic wraps.
pub(crate) trait Int: Element + Copy + Ord + Debug {
    const ZERO: Self;
    const ONE: Self;
    const MIN: Self;
    const MAX: Self;
    fn wrapping_add(self, b: Self) -> Self;
    fn wrapping_sub(self, b: Self) -> Self;
    fn wrapping_mul(self, b: Self) -> Self;
    fn wrapping_neg(self) -> Self;
    fn wrapping_abs(self) -> Self;
    /// Truncating division; `b` must not be zero.
    fn wrapping_div(self, b: Self) -> Self;
    /// Truncating remainder (C `%`); `b` must not be zero.
    fn wrapping_rem(self, b: Self) -> Self;
    /// `self` to the power `e` (`e >= 0`), wrapping.
    fn wrapping_pow_int(self, e: Self) -> Self;
    fn signum(self) -> Self;
    fn is_negative(self) -> bool;
    fn to_i128(self) -> i128;
    /// The low bits of `v` (a C cast).
    fn from_i128(v: i128) -> Self;
    /// The low bits of `v` (a C cast).
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        Self::from_i128(v as i128)
    }

    /// Floor division (Python `//`); `b` must not be zero.
    #[inline(always)]
    fn floor_div(self, b: Self) -> Self {
        let q = self.wrapping_div(b);
        let r = self.wrapping_rem(b);
        if r != Self::ZERO && (r.is_negative() != b.is_negative()) {
            q.wrapping_sub(Self::ONE)
        } else {
            q
        }
    }

    /// Floor modulo (Python `%`, sign of the divisor); `b` must not be zero.
    #[inline(always)]
    fn floor_mod(self, b: Self) -> Self {
        let r = self.wrapping_rem(b);
        if r != Self::ZERO && (r.is_negative() != b.is_negative()) {
            r.wrapping_add(b)
        } else {
            r
        }
    }
}

macro_rules! int_impl {
    ($($t:ident: $signed:expr),*) => {$(
        impl Int for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const MIN: Self = $t::MIN;
            const MAX: Self = $t::MAX;
            #[inline(always)]
            fn wrapping_add(self, b: Self) -> Self { $t::wrapping_add(self, b) }
            #[inline(always)]
            fn wrapping_sub(self, b: Self) -> Self { $t::wrapping_sub(self, b) }
            #[inline(always)]
            fn wrapping_mul(self, b: Self) -> Self { $t::wrapping_mul(self, b) }
            #[inline(always)]
            fn wrapping_neg(self) -> Self { $t::wrapping_neg(self) }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn wrapping_abs(self) -> Self {
                if self < 0 { $t::wrapping_neg(self) } else { self }
            }
            #[inline(always)]
            fn wrapping_div(self, b: Self) -> Self { $t::wrapping_div(self, b) }
            #[inline(always)]
            fn wrapping_rem(self, b: Self) -> Self { $t::wrapping_rem(self, b) }
            #[inline]
            fn wrapping_pow_int(self, e: Self) -> Self {
                let mut e = e as u64;
                let (mut base, mut acc) = (self, 1 as $t);
                while e > 0 {
                    if e & 1 == 1 { acc = acc.wrapping_mul(base); }
                    base = base.wrapping_mul(base);
                    e >>= 1;
                }
                acc
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn signum(self) -> Self {
                if self > 0 { 1 } else if self < 0 { (0 as $t).wrapping_sub(1) } else { 0 }
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn is_negative(self) -> bool { $signed && self < 0 }
            #[inline(always)]
            fn to_i128(self) -> i128 { self as i128 }
            #[inline(always)]
            fn from_i128(v: i128) -> Self { v as $t }
        }
    )*};
}
int_impl!(i8: true, i16: true, i32: true, i64: true, u8: false, u16: false, u32: false, u64: false);

/// NaN-propagating maximum (TensorFlow's `Maximum`).
#[inline(always)]
pub(crate) fn max_nan<T: Float>(a: T, b: T) -> T {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}

/// NaN-propagating minimum (TensorFlow's `Minimum`).
#[inline(always)]
pub(crate) fn min_nan<T: Float>(a: T, b: T) -> T {
    if a.is_nan() || a < b {
        a
    } else {
        b
    }
}

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// The error function, to about 1e-15 relative accuracy.
pub(crate) fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)):
        // every term is positive, so there is no cancellation.
        let x2 = a * a;
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        FRAC_2_SQRT_PI * (-x2).exp() * sum
    } else {
        1.0 - erfc_cf(a)
    };
    r.copysign(x)
}

/// The complementary error function `1 - erf(x)`, accurate in the far tail.
pub(crate) fn erfc_f64(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x < 0.0 {
        2.0 - erfc_f64(-x)
    } else if x < 2.5 {
        1.0 - erf_f64(x)
    } else {
        erfc_cf(x)
    }
}

/// erfc for x >= 2.5 by its continued fraction, evaluated backwards (stable).
fn erfc_cf(x: f64) -> f64 {
    if x > 27.3 {
        return 0.0;
    }
    let mut t = x;
    for k in (1..=120).rev() {
        t = x + (k as f64 * 0.5) / t;
    }
    (-x * x).exp() / (std::f64::consts::PI.sqrt() * t)
}

/// Whether `d` is computed through f32 (f16 and bf16).
pub(crate) fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

/// An f16/bf16 tensor widened to f32 (other tensors unchanged).
pub(crate) fn widen(t: Tensor) -> Result<Tensor> {
    let v: Vec<f32> = match t.buffer() {
        Buffer::F16(v) => v.to_f32_vec(),
        Buffer::BF16(v) => v.to_f32_vec(),
        _ => return Ok(t),
    };
    Tensor::new(t.dims(), v)
}

/// An f32 tensor narrowed to `dtype` when that is f16/bf16 (other cases unchanged).
pub(crate) fn narrow(t: Tensor, dtype: DType) -> Result<Tensor> {
    let v = match (t.buffer(), dtype) {
        (Buffer::F32(v), DType::F16) => Buffer::F16(Vec::<f16>::from_f32_slice(v)),
        (Buffer::F32(v), DType::BF16) => Buffer::BF16(Vec::<bf16>::from_f32_slice(v)),
        _ => return Ok(t),
    };
    Tensor::from_buffer(t.dims(), v)
}

/// Runs `f` with every `dtype` (f16/bf16) input widened to f32 and narrows every f32
/// output back to `dtype`: how half-precision kernels are computed.
pub(crate) fn via_f32(
    dtype: DType,
    inputs: Vec<Tensor>,
    f: impl FnOnce(Vec<Tensor>) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    let inputs = inputs
        .into_iter()
        .map(|t| if t.dtype() == dtype { widen(t) } else { Ok(t) })
        .collect::<Result<Vec<_>>>()?;
    f(inputs)?.into_iter().map(|t| narrow(t, dtype)).collect()
}

/// The error for integer division or modulo by zero (TensorFlow's message).
pub(crate) fn division_by_zero() -> Error {
    Error::invalid_argument("Integer division by zero")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        let cases = [
            (0.0, 0.0),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.4, 0.9993114861033549),
            (3.0, 0.9999779095030014),
            (-1.0, -0.8427007929497149),
        ];
        for (x, want) in cases {
            assert!(
                (erf_f64(x) - want).abs() < 1e-15,
                "erf({x}) = {}",
                erf_f64(x)
            );
        }
        let tails = [
            (2.5, 4.06952017444959e-4),
            (3.0, 2.209049699858544e-5),
            (5.0, 1.537459794428035e-12),
            (10.0, 2.088487583762545e-45),
        ];
        for (x, want) in tails {
            let got = erfc_f64(x);
            assert!(((got - want) / want).abs() < 1e-13, "erfc({x}) = {got}");
        }
        assert!((erfc_f64(-1.0) - 1.8427007929497148).abs() < 1e-15);
        assert!(erf_f64(f64::NAN).is_nan());
    }

    #[test]
    fn fast_f32_exp_and_tanh_are_accurate() {
        let mut worst = (0f64, 0f64);
        for i in -17_400..=17_700 {
            let x = i as f32 * 0.005;
            let e = (exp_f32(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            let t = (tanh_f32(x) as f64 - (x as f64).tanh()).abs();
            worst = (worst.0.max(e), worst.1.max(t));
        }
        // About 1.5 ulp for exp; a few ulp for tanh (as Eigen's).
        assert!(worst.0 < 1.5e-7 && worst.1 < 5e-7, "worst errors {worst:?}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert!(exp_f32(88.7) > 3.3e38 && exp_f32(-100.0) > 0.0);
        assert!(exp_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(20.0), 1.0);
        assert_eq!(tanh_f32(-1e-5), -1e-5);
    }

    #[test]
    fn integer_floor_semantics() {
        assert_eq!(7i32.floor_div(-2), -4);
        assert_eq!((-7i32).floor_div(2), -4);
        assert_eq!(7i32.floor_mod(-2), -1);
        assert_eq!((-7i32).floor_mod(2), 1);
        assert_eq!(7u8.floor_div(2), 3);
        assert_eq!(i32::MIN.wrapping_abs(), i32::MIN);
        assert_eq!(3i64.wrapping_pow_int(4), 81);
        assert_eq!(0u8.signum(), 0);
    }

    #[test]
    fn half_round_trip() {
        let t = Tensor::new(&[2], vec![f16::from_f32(1.5), f16::from_f32(-2.0)]).unwrap();
        let w = widen(t.clone()).unwrap();
        assert_eq!(w.as_slice::<f32>().unwrap(), &[1.5, -2.0]);
        assert_eq!(narrow(w, DType::F16).unwrap(), t);
    }
}
