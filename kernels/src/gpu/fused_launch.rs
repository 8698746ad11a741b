//! Running a `_FusedElementwise` program on an NVIDIA GPU (the `cuda` feature): the
//! generated source (`fused_source`) compiled by NVRTC for the device's compute
//! capability, loaded once into the device's primary context, launched on its default
//! stream as a grid-stride loop.
//!
//! [`GpuFusedElementwise::run`] takes host tensors and returns a host tensor (copies in,
//! launch, copy out): the end-to-end check of the CUDA backend against the CPU kernel,
//! until a GPU device keeps tensors in device memory between kernels.
//!
//! Invariants: a kernel is only launched with inputs that match the accesses it was
//! generated for (shape, dtype and count are checked first, each a typed error); the launch
//! covers every output element (grid-stride loop over `n`).

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use half::{bf16, f16};
use rill_graph::{DType, Error, Result, Tensor};

use super::fused_source::{accesses, cuda_source, Access, KERNEL_NAME, MAX_STRIDED_RANK};
use super::nvrtc::compile_ptx;
use crate::cpu::fused::elementwise::collapsed_broadcast;

/// The kernel's `rill_dims` parameter: collapsed dims or strides, unused entries 0.
#[repr(C)]
#[derive(Clone, Copy)]
struct RillDims {
    v: [i64; MAX_STRIDED_RANK],
}

// SAFETY: a plain C struct of eight `long long`, as `rill_dims` is declared in the source.
unsafe impl DeviceRepr for RillDims {}

impl RillDims {
    fn new(values: &[usize]) -> RillDims {
        let mut v = [0i64; MAX_STRIDED_RANK];
        for (slot, &x) in v.iter_mut().zip(values) {
            *slot = x as i64;
        }
        RillDims { v }
    }
}

fn driver_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("CUDA {what}: {e}"))
}

/// A tensor's elements as bytes (the float dtypes the kernel takes).
fn host_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(match t.dtype() {
        DType::F32 => bytemuck::cast_slice(t.as_slice::<f32>()?).to_vec(),
        DType::F64 => bytemuck::cast_slice(t.as_slice::<f64>()?).to_vec(),
        DType::F16 => bytemuck::cast_slice(t.as_slice::<f16>()?).to_vec(),
        DType::BF16 => bytemuck::cast_slice(t.as_slice::<bf16>()?).to_vec(),
        d => {
            return Err(Error::invalid_argument(format!(
                "not a float tensor: {d:?}"
            )))
        }
    })
}

fn tensor_from_bytes(dtype: DType, dims: &[usize], b: &[u8]) -> Result<Tensor> {
    match dtype {
        DType::F32 => Tensor::new(dims, bytemuck::pod_collect_to_vec::<u8, f32>(b)),
        DType::F64 => Tensor::new(dims, bytemuck::pod_collect_to_vec::<u8, f64>(b)),
        DType::F16 => Tensor::new(dims, bytemuck::pod_collect_to_vec::<u8, f16>(b)),
        _ => Tensor::new(dims, bytemuck::pod_collect_to_vec::<u8, bf16>(b)),
    }
}

/// One `_FusedElementwise` program compiled for one GPU, one dtype and one set of accesses.
pub struct GpuFusedElementwise {
    stream: Arc<CudaStream>,
    function: CudaFunction,
    dtype: DType,
    access: Vec<Access>,
    /// Most blocks worth launching: 32 per multiprocessor.
    max_blocks: u32,
}

/// Threads per block.
const BLOCK_THREADS: u32 = 256;

impl GpuFusedElementwise {
    /// Compiles the program (`ops` attr) for GPU `ordinal`.
    pub fn new(ordinal: usize, ops: &[Vec<u8>], dtype: DType, access: &[Access]) -> Result<Self> {
        let probe = super::probe();
        if ordinal >= probe.gpus.len() {
            return Err(Error::failed_precondition(format!(
                "no GPU:{ordinal} ({})",
                probe.describe()
            )));
        }
        let source = cuda_source(ops, dtype, access)?;
        let ptx = compile_ptx(&source, probe.gpus[ordinal].compute_capability)?;
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_error("context", e))?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| driver_error("module load", e))?;
        let function = module
            .load_function(KERNEL_NAME)
            .map_err(|e| driver_error("function load", e))?;
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| driver_error("attribute", e))?;
        Ok(GpuFusedElementwise {
            stream: ctx.default_stream(),
            function,
            dtype,
            access: access.to_vec(),
            max_blocks: (sms.max(1) as u32).saturating_mul(32),
        })
    }

    /// Copies `inputs` to the GPU, runs the program into an output of `out_dims` and copies
    /// it back.
    pub fn run(&self, inputs: &[Tensor], out_dims: &[usize]) -> Result<Tensor> {
        let dims: Vec<&[usize]> = inputs.iter().map(Tensor::dims).collect();
        if inputs.iter().any(|t| t.dtype() != self.dtype)
            || accesses(&dims, out_dims)? != self.access
        {
            return Err(Error::invalid_argument(format!(
                "inputs {dims:?} of dtypes {:?} do not match the compiled kernel ({:?}, {:?})",
                inputs.iter().map(Tensor::dtype).collect::<Vec<_>>(),
                self.dtype,
                self.access
            )));
        }
        let n: usize = out_dims.iter().product();
        let width = self.dtype.size().unwrap_or(4);
        let s = &self.stream;
        let mut device_inputs = Vec::with_capacity(inputs.len());
        let mut strides = Vec::new();
        for (t, a) in inputs.iter().zip(&self.access) {
            device_inputs.push(
                s.clone_htod(&host_bytes(t)?)
                    .map_err(|e| driver_error("copy to device", e))?,
            );
            if let Access::Strided(_) = a {
                let (d, st) = collapsed_broadcast(t.dims(), out_dims);
                strides.push((RillDims::new(&d), RillDims::new(&st)));
            }
        }
        let mut out = s
            .alloc_zeros::<u8>(n.max(1) * width)
            .map_err(|e| driver_error("allocation", e))?;
        let count = n as i64;
        let mut launch = s.launch_builder(&self.function);
        launch.arg(&count).arg(&mut out);
        let mut next_strides = strides.iter();
        for (buffer, a) in device_inputs.iter().zip(&self.access) {
            launch.arg(buffer);
            if let Access::Strided(_) = a {
                let (d, st) = next_strides
                    .next()
                    .ok_or_else(|| Error::internal("strides of a broadcast input"))?;
                launch.arg(d).arg(st);
            }
        }
        let blocks = n
            .div_ceil(BLOCK_THREADS as usize)
            .clamp(1, self.max_blocks as usize);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments are those of the generated kernel, in its order (`n`, the
        // output, each input and, for a strided one, its dims and strides); every buffer
        // holds the elements the kernel indexes (checked against `access` above).
        unsafe { launch.launch(cfg) }.map_err(|e| driver_error("launch", e))?;
        let bytes = s
            .clone_dtoh(&out)
            .map_err(|e| driver_error("copy to host", e))?;
        tensor_from_bytes(self.dtype, out_dims, &bytes[..n * width])
    }
}
