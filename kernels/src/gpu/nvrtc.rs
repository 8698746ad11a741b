//! Compiling generated CUDA C to PTX with NVRTC (cudarc, loaded at run time).
//!
//! Invariants: the NVRTC library is looked for before cudarc is asked anything (cudarc
//! panics when it cannot load it), so a machine without it gets an error naming libnvrtc;
//! every source is compiled with contraction off and IEEE division and square root
//! (`fused_source`'s exactness depends on it).

use cudarc::nvrtc::{self, CompileOptions};
use rill_graph::{Error, Result};

/// PTX for `source`, for a GPU of compute capability `(major, minor)`.
pub fn compile_ptx(source: &str, compute_capability: (i32, i32)) -> Result<String> {
    // SAFETY: only tries to open the library by its candidate names.
    if !unsafe { nvrtc::sys::is_culib_present() } {
        return Err(Error::failed_precondition(
            "the NVRTC library (libnvrtc) was not found: GPU kernels cannot be compiled",
        ));
    }
    if source.contains('\0') {
        return Err(Error::invalid_argument("CUDA source with a NUL byte"));
    }
    let (major, minor) = compute_capability;
    let opts = CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(false),
        options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
        ..Default::default()
    };
    let ptx = std::panic::catch_unwind(|| nvrtc::compile_ptx_with_opts(source, opts))
        .map_err(|_| Error::internal("NVRTC lacks functions Rill needs (too old?)"))?
        .map_err(|e| match e {
            nvrtc::CompileError::CompileError { log, .. } => Error::internal(format!(
                "NVRTC rejected the generated CUDA source:\n{}",
                log.to_string_lossy()
            )),
            other => Error::internal(format!("NVRTC failed: {other}")),
        })?;
    Ok(ptx.to_src())
}
