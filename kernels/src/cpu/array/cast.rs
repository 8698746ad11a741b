//! `Cast` between every pair of numeric and bool dtypes (and string to string).
//!
//! Semantics are C++ `static_cast` as TensorFlow's CPU kernels compute it on x86-64:
//! - integer to integer wraps (two's complement truncation); bool to number is 0/1;
//!   number to bool is `x != 0` (NaN is true);
//! - integer to float rounds to nearest; float to narrower float rounds to nearest even;
//!   half and bfloat16 go through f32 (as Eigen does, so f64 -> f16 rounds twice);
//! - float to integer truncates toward zero (-1.7 -> -1). A NaN or out-of-range value is
//!   undefined in C++; Rill reproduces what x86's `cvttss2si`/`cvttsd2si` give, which is
//!   what TensorFlow returns there: int32/int64 get their minimum (NaN, ±Inf and 3e9 all
//!   cast to -2147483648 in int32); int8/int16/uint8/uint16 convert through int32 and then
//!   wrap (100000.0 -> int16 is -31072); uint32 converts through int64 and wraps; uint64
//!   uses the compiler's two-step sequence (values >= 2^63 have 2^63 subtracted first).
//! - `Truncate = true` on a float narrowing (f64 -> f32, f32 -> half/bfloat16, ...) zeroes
//!   the source mantissa bits the target cannot hold before converting (TensorFlow's
//!   `LSBZeroSetter`), so the conversion truncates instead of rounding; NaNs are untouched.
//!
//! Invariant: casting to the input's own dtype forwards the input's buffer.

use rayon::prelude::*;
use rill_graph::{DType, Element, Node, Result, Tensor};

use super::util::{attr_bool, attr_type, kernel, take};
use crate::{unsupported_dtype, Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Cast", cast_kernel);
}

/// A source value, widened without loss.
#[derive(Clone, Copy)]
enum Repr {
    F32(f32),
    F64(f64),
    I(i64),
    U(u64),
    B(bool),
}

/// x86's `cvtt*2si` with a 32-bit destination: truncation, or `i32::MIN` when out of range.
fn cvtt32(f: f64) -> i32 {
    let t = f.trunc();
    if (-2147483648.0..=2147483647.0).contains(&t) {
        t as i32
    } else {
        i32::MIN
    }
}

/// x86's `cvtt*2si` with a 64-bit destination.
fn cvtt64(f: f64) -> i64 {
    let t = f.trunc();
    if (-9223372036854775808.0..9223372036854775808.0).contains(&t) {
        t as i64
    } else {
        i64::MIN
    }
}

/// The x86-64 compiler sequence for float -> uint64.
fn cvtt_u64(f: f64) -> u64 {
    const TWO_63: f64 = 9223372036854775808.0;
    if f >= TWO_63 {
        (cvtt64(f - TWO_63) as u64) ^ (1u64 << 63)
    } else {
        cvtt64(f) as u64
    }
}

trait Castable: Element + Copy {
    fn to_repr(self) -> Repr;
    fn from_repr(r: Repr) -> Self;
}

macro_rules! int_castable {
    ($($t:ty => $wide:ident as $w:ty, |$f:ident| $from_float:expr;)*) => {$(
        impl Castable for $t {
            fn to_repr(self) -> Repr { Repr::$wide(self as $w) }
            fn from_repr(r: Repr) -> Self {
                match r {
                    Repr::I(i) => i as $t,
                    Repr::U(u) => u as $t,
                    Repr::B(b) => b as $t,
                    Repr::F32(x) => { let $f = x as f64; $from_float }
                    Repr::F64($f) => $from_float,
                }
            }
        }
    )*};
}

int_castable! {
    i8 => I as i64, |f| cvtt32(f) as i8;
    i16 => I as i64, |f| cvtt32(f) as i16;
    i32 => I as i64, |f| cvtt32(f);
    i64 => I as i64, |f| cvtt64(f);
    u8 => U as u64, |f| cvtt32(f) as u8;
    u16 => U as u64, |f| cvtt32(f) as u16;
    u32 => U as u64, |f| cvtt64(f) as u32;
    u64 => U as u64, |f| cvtt_u64(f);
}

fn repr_f32(r: Repr) -> f32 {
    match r {
        Repr::F32(x) => x,
        Repr::F64(x) => x as f32,
        Repr::I(i) => i as f32,
        Repr::U(u) => u as f32,
        Repr::B(b) => u8::from(b) as f32,
    }
}

impl Castable for f32 {
    fn to_repr(self) -> Repr {
        Repr::F32(self)
    }
    fn from_repr(r: Repr) -> Self {
        repr_f32(r)
    }
}

impl Castable for f64 {
    fn to_repr(self) -> Repr {
        Repr::F64(self)
    }
    fn from_repr(r: Repr) -> Self {
        match r {
            Repr::F32(x) => x as f64,
            Repr::F64(x) => x,
            Repr::I(i) => i as f64,
            Repr::U(u) => u as f64,
            Repr::B(b) => u8::from(b) as f64,
        }
    }
}

impl Castable for half::f16 {
    fn to_repr(self) -> Repr {
        Repr::F32(self.to_f32())
    }
    fn from_repr(r: Repr) -> Self {
        half::f16::from_f32(repr_f32(r))
    }
}

impl Castable for half::bf16 {
    fn to_repr(self) -> Repr {
        Repr::F32(self.to_f32())
    }
    fn from_repr(r: Repr) -> Self {
        half::bf16::from_f32(repr_f32(r))
    }
}

impl Castable for bool {
    fn to_repr(self) -> Repr {
        Repr::B(self)
    }
    fn from_repr(r: Repr) -> Self {
        match r {
            Repr::F32(x) => x != 0.0,
            Repr::F64(x) => x != 0.0,
            Repr::I(i) => i != 0,
            Repr::U(u) => u != 0,
            Repr::B(b) => b,
        }
    }
}

/// Runs `$body` with `$T` aliased to a castable element type.
macro_rules! with_castable {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {{
        match $dtype {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            DType::F16 => {
                type $T = half::f16;
                $body
            }
            DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            DType::I8 => {
                type $T = i8;
                $body
            }
            DType::I16 => {
                type $T = i16;
                $body
            }
            DType::I32 => {
                type $T = i32;
                $body
            }
            DType::I64 => {
                type $T = i64;
                $body
            }
            DType::U8 => {
                type $T = u8;
                $body
            }
            DType::U16 => {
                type $T = u16;
                $body
            }
            DType::U32 => {
                type $T = u32;
                $body
            }
            DType::U64 => {
                type $T = u64;
                $body
            }
            DType::Bool => {
                type $T = bool;
                $body
            }
            other => Err(unsupported_dtype($op, other)),
        }
    }};
}

fn cast_slice<S: Castable, D: Castable>(src: &[S]) -> Vec<D> {
    if src.len() >= 1 << 16 {
        src.par_iter().map(|&s| D::from_repr(s.to_repr())).collect()
    } else {
        src.iter().map(|&s| D::from_repr(s.to_repr())).collect()
    }
}

/// Mantissa bits of a float dtype.
fn mantissa_bits(d: DType) -> Option<u32> {
    match d {
        DType::F64 => Some(52),
        DType::F32 => Some(23),
        DType::F16 => Some(10),
        DType::BF16 => Some(7),
        _ => None,
    }
}

/// `x` with its low `k` mantissa bits zeroed (NaNs untouched): TensorFlow's `LSBZeroSetter`.
fn zero_low_bits(x: &Tensor, k: u32) -> Result<Tensor> {
    let mask64 = !((1u64 << k) - 1);
    Ok(match x.dtype() {
        DType::F64 => Tensor::new(
            x.dims(),
            x.as_slice::<f64>()?
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        *v
                    } else {
                        f64::from_bits(v.to_bits() & mask64)
                    }
                })
                .collect(),
        )?,
        DType::F32 => Tensor::new(
            x.dims(),
            x.as_slice::<f32>()?
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        *v
                    } else {
                        f32::from_bits(v.to_bits() & mask64 as u32)
                    }
                })
                .collect(),
        )?,
        DType::F16 => Tensor::new(
            x.dims(),
            x.as_slice::<half::f16>()?
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        *v
                    } else {
                        half::f16::from_bits(v.to_bits() & mask64 as u16)
                    }
                })
                .collect(),
        )?,
        _ => x.clone(),
    })
}

/// `x` cast to `dst` (see the module docs); `truncate` is the `Truncate` attr.
pub(super) fn cast_tensor(x: &Tensor, dst: DType, truncate: bool) -> Result<Tensor> {
    let src = x.dtype();
    if src == dst {
        return Ok(x.clone());
    }
    if src == DType::String || dst == DType::String {
        return Err(rill_graph::Error::unimplemented(format!(
            "Cast {src} to {dst} is not supported"
        )));
    }
    let x = match (truncate, mantissa_bits(src), mantissa_bits(dst)) {
        (true, Some(ms), Some(md)) if md < ms => zero_low_bits(x, ms - md)?,
        _ => x.clone(),
    };
    with_castable!(src, "Cast", S => {
        let s = x.as_slice::<S>()?;
        with_castable!(dst, "Cast", D => Tensor::new(x.dims(), cast_slice::<S, D>(s)))
    })
}

fn cast_kernel(node: &Node) -> Result<Box<dyn Kernel>> {
    let dst = attr_type(node, "DstT", None)?;
    let truncate = attr_bool(node, "Truncate", false)?;
    if let Ok(src) = attr_type(node, "SrcT", None) {
        for d in [src, dst] {
            if d != DType::String
                && mantissa_bits(d).is_none()
                && !d.is_integer()
                && d != DType::Bool
            {
                return Err(unsupported_dtype("Cast", d));
            }
        }
    }
    kernel(move |inputs| {
        let [x] = take(inputs)?;
        Ok(vec![cast_tensor(&x, dst, truncate)?])
    })
}

#[cfg(test)]
#[path = "cast_tests.rs"]
mod tests;
