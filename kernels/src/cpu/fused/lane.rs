//! [`Lane`]: how a fused kernel computes a storage dtype. f32 and f64 compute natively
//! (their slices are used as compute slices without a copy); f16 and bf16 compute in f32
//! and are rounded back to their precision after every fused step, because the unfused
//! kernels widen, compute and narrow once per op.
//!
//! Invariant: `round` followed by `narrow` equals `narrow`, and `widen` is exact, so a
//! fused chain of rounded f32 steps gives bit for bit what the separate kernels give.

use std::mem::MaybeUninit;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rill_graph::Element;

use crate::cpu::math::num::Float;

/// A storage element type and the float type fused kernels compute it in.
pub(crate) trait Lane: Element + Copy + Send + Sync {
    type C: Float + Send + Sync;
    /// The values as compute values, when no conversion is needed.
    fn direct(s: &[Self]) -> Option<&[Self::C]>;
    /// The values as mutable compute values, when no conversion is needed.
    fn direct_mut(s: &mut [Self]) -> Option<&mut [Self::C]>;
    /// A fresh output's (uninitialised) values as compute values, when no conversion is
    /// needed.
    fn direct_uninit(s: &mut [MaybeUninit<Self>]) -> Option<&mut [MaybeUninit<Self::C>]>;
    /// `d = s` widened (exact); `d.len() == s.len()`.
    fn widen(s: &[Self], d: &mut [Self::C]);
    /// `d = s` rounded to this type; `d.len() == s.len()`.
    fn narrow(s: &[Self::C], d: &mut [Self]);
    /// Writes `s` rounded to this type into `d` (which may be uninitialised); equals
    /// `narrow`; `d.len() == s.len()`.
    fn narrow_uninit(s: &[Self::C], d: &mut [MaybeUninit<Self>]);
    /// Rounds compute values to this type's precision in place.
    fn round(v: &mut [Self::C]);
    /// One value widened.
    fn to_c(s: Self) -> Self::C;
    /// One value rounded to this type and widened back.
    fn round1(v: Self::C) -> Self::C;
}

macro_rules! native {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            type C = $t;
            #[inline]
            fn direct(s: &[Self]) -> Option<&[Self]> {
                Some(s)
            }
            #[inline]
            fn direct_mut(s: &mut [Self]) -> Option<&mut [Self]> {
                Some(s)
            }
            #[inline]
            fn direct_uninit(s: &mut [MaybeUninit<Self>]) -> Option<&mut [MaybeUninit<Self>]> {
                Some(s)
            }
            #[inline]
            fn widen(s: &[Self], d: &mut [Self]) {
                d.copy_from_slice(s);
            }
            #[inline]
            fn narrow(s: &[Self], d: &mut [Self]) {
                d.copy_from_slice(s);
            }
            #[inline]
            fn narrow_uninit(s: &[Self], d: &mut [MaybeUninit<Self>]) {
                for (d, &v) in d.iter_mut().zip(s) {
                    d.write(v);
                }
            }
            #[inline]
            fn round(_: &mut [Self]) {}
            #[inline(always)]
            fn to_c(s: Self) -> Self {
                s
            }
            #[inline(always)]
            fn round1(v: Self) -> Self {
                v
            }
        }
    )*};
}
native!(f32, f64);

macro_rules! half_lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            type C = f32;
            #[inline]
            fn direct(_: &[Self]) -> Option<&[f32]> {
                None
            }
            #[inline]
            fn direct_mut(_: &mut [Self]) -> Option<&mut [f32]> {
                None
            }
            #[inline]
            fn direct_uninit(_: &mut [MaybeUninit<Self>]) -> Option<&mut [MaybeUninit<f32>]> {
                None
            }
            #[inline]
            fn widen(s: &[Self], d: &mut [f32]) {
                s.convert_to_f32_slice(d);
            }
            #[inline]
            fn narrow(s: &[f32], d: &mut [Self]) {
                d.convert_from_f32_slice(s);
            }
            #[inline]
            fn narrow_uninit(s: &[f32], d: &mut [MaybeUninit<Self>]) {
                for (d, &v) in d.iter_mut().zip(s) {
                    d.write(<$t>::from_f32(v));
                }
            }
            #[inline]
            fn round(v: &mut [f32]) {
                v.iter_mut().for_each(|x| *x = <$t>::from_f32(*x).to_f32());
            }
            #[inline(always)]
            fn to_c(s: Self) -> f32 {
                s.to_f32()
            }
            #[inline(always)]
            fn round1(v: f32) -> f32 {
                <$t>::from_f32(v).to_f32()
            }
        }
    )*};
}
half_lane!(f16, bf16);
