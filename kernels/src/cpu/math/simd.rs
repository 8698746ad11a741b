//! Runtime choice of the vector instruction set for elementwise loops.
//!
//! The crate is built for the baseline of its target (SSE2 on x86-64), so a release binary
//! runs on any x86-64 CPU. [`widest`] runs a closure inside a function compiled with AVX2
//! and FMA enabled when the CPU has them, so the plain `for` loops the closure inlines are
//! vectorised eight f32 lanes wide instead of four.
//!
//! Invariant: results do not depend on the path taken. Rust never contracts `a * b + c`
//! into a fused multiply-add on its own, and every lane computes the same IEEE operation,
//! so the AVX2 path gives bit for bit what the baseline path gives.
//!
//! Used by the fused elementwise kernel, whose destination never aliases an operand. The
//! unfused kernels' in-place loops (`*o = f(*o)`) are left on the baseline: compiled for
//! AVX2, LLVM turns an ops' "keep the old value" branch into a masked store
//! (`vmaskmovps`), which is slow on AMD cores (it made the unfused chain 2x slower).

/// Runs `f`, compiled for AVX2+FMA where the CPU has them (checked once per process).
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: `has_avx2` checked that this CPU executes AVX2 and FMA instructions.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::env::var_os("RILL_NO_AVX2").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::widest;

    #[test]
    fn the_vector_path_computes_what_the_scalar_path_computes() {
        let x: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.37).collect();
        let f = |v: f32| (v * 0.5 + 1.25).max(-3.0) * v - v / 7.0;
        let plain: Vec<f32> = x.iter().map(|&v| f(v)).collect();
        let wide = widest(
            #[inline(always)]
            || x.iter().map(|&v| f(v)).collect::<Vec<f32>>(),
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&plain), bits(&wide));
    }
}
