//! NVIDIA GPU support: which GPUs this process can use ([`probe`]), and the CUDA backend
//! of the fused elementwise program (`fused_source`: CUDA C generated from the same
//! [`Program`](crate::cpu::fused) description the CPU interpreter and JIT run; `nvrtc`:
//! compiling it to PTX with NVRTC, and `fused_launch`: running it on a GPU, both with the
//! `cuda` feature).
//!
//! Invariants: nothing here panics when CUDA is absent: the driver and NVRTC libraries are
//! looked for before cudarc is asked anything (cudarc panics when it cannot load them),
//! and their absence is an error or an empty device list with the reason.

#[cfg(feature = "cuda")]
mod fused_launch;
mod fused_source;
#[cfg(test)]
mod fused_source_tests;
#[cfg(feature = "cuda")]
mod nvrtc;
mod probe;

#[cfg(feature = "cuda")]
pub use fused_launch::GpuFusedElementwise;
pub use fused_source::{accesses, cuda_source, Access, KERNEL_NAME, MAX_STRIDED_RANK};
#[cfg(feature = "cuda")]
pub use nvrtc::compile_ptx;
pub use probe::{probe, GpuInfo, GpuProbe};
