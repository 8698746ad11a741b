//! The `_FusedMatMul` kernel: `MatMul` (with `transpose_a`/`transpose_b`) whose output
//! rows get the `fused_ops` epilogue block by block, right after the GEMM wrote them
//! ([`gemm_rows`](super::gemm::gemm_rows)), instead of one full pass per op.
//!
//! f32, f64 and f16 multiply natively (f16 like `MatMul`, the epilogue widening a few rows
//! at a time); bf16 multiplies in f32 like `MatMul` and rounds after every step. The
//! output comes from the step's memory plan for the native dtypes.
//!
//! Invariants: shape errors carry `MatMul`'s and `BiasAdd`'s messages; results equal
//! `MatMul` followed by the unfused ops (same GEMM, same per-element functions, same
//! rounding).

use half::{bf16, f16};
use rill_graph::{DType, Error, Node, Result, Tensor};

use super::epilogue::{Epilogue, FusedOps};
use super::gemm::gemm_rows;
use super::lane::Lane;
use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::matmul::{Mat, MatElem};
use crate::cpu::math::num::{narrow, widen};
use crate::cpu::math::util::attr_bool;
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// Checks that a fused contraction got `want` inputs of one dtype; returns that dtype.
pub(crate) fn fused_inputs_dtype(op: &str, inputs: &[Tensor], want: usize) -> Result<DType> {
    if inputs.len() != want {
        return Err(Error::invalid_argument(format!(
            "{op} expects {want} inputs, got {}",
            inputs.len()
        )));
    }
    let dtype = inputs[0].dtype();
    match inputs.iter().position(|t| t.dtype() != dtype) {
        Some(i) => Err(Error::invalid_argument(format!(
            "{op}: input {i} has dtype {}, expected {dtype}",
            inputs[i].dtype()
        ))),
        None => Ok(dtype),
    }
}

/// Checks the bias (a vector of `channels`) and the added tensor (of `out_dims`).
pub(crate) fn check_args(args: &[Tensor], channels: usize, out_dims: &[usize]) -> Result<()> {
    let bias = &args[0];
    if bias.rank() != 1 {
        return Err(Error::invalid_argument(format!(
            "Biases must be 1D: {}",
            bias.shape()
        )));
    }
    if bias.dims()[0] != channels {
        return Err(Error::invalid_argument(format!(
            "Must provide as many biases as the channel dimension of the input tensor: {} vs. \
             {channels} channels",
            bias.shape()
        )));
    }
    if let Some(side) = args.get(1) {
        if side.dims() != out_dims {
            return Err(Error::invalid_argument(format!(
                "the tensor added after BiasAdd must have the output's shape {out_dims:?}, got {}",
                side.shape()
            )));
        }
    }
    Ok(())
}

/// Runs a float kernel on f16/bf16 inputs in f32 (rounding each step to `dtype`), and
/// narrows the result: how the unfused kernels compute halves.
pub(crate) fn via_f32_rounded(
    dtype: DType,
    inputs: Vec<Tensor>,
    f: impl FnOnce(Vec<Tensor>, fn(&mut [f32])) -> Result<Tensor>,
) -> Result<Tensor> {
    let round: fn(&mut [f32]) = match dtype {
        DType::F16 => <f16 as Lane>::round,
        DType::BF16 => <bf16 as Lane>::round,
        d => return Err(Error::internal(format!("{d} is not a half type"))),
    };
    let wide = inputs.into_iter().map(widen).collect::<Result<Vec<_>>>()?;
    narrow(f(wide, round)?, dtype)
}

struct FusedMatMul {
    ta: bool,
    tb: bool,
    ops: FusedOps,
}

impl FusedMatMul {
    /// The product of `a` and `b` and the epilogue, storage `T`; the output comes from
    /// `cx`'s plan when given.
    fn run<T: MatElem + Lane>(
        &self,
        cx: Option<&KernelContext>,
        inputs: &[Tensor],
        round: fn(&mut [T::C]),
    ) -> Result<Tensor> {
        let (a, b, args) = (&inputs[0], &inputs[1], &inputs[2..]);
        let (ad, bd) = (a.dims(), b.dims());
        let (m, k) = if self.ta {
            (ad[1], ad[0])
        } else {
            (ad[0], ad[1])
        };
        let (k2, n) = if self.tb {
            (bd[1], bd[0])
        } else {
            (bd[0], bd[1])
        };
        if k != k2 {
            return Err(Error::invalid_argument(format!(
                "Matrix size-incompatible: In[0]: {}, In[1]: {}",
                a.shape(),
                b.shape()
            )));
        }
        check_args(args, n, &[m, n])?;
        let mut out_t = match cx {
            Some(cx) => cx.alloc_output::<T>(0, &[m, n])?,
            None => Tensor::new(&[m, n], alloc(m * n, T::default())?)?,
        };
        let widened = |t: &Tensor| -> Result<Vec<T::C>> {
            let v = t.as_slice::<T>()?;
            let mut c = alloc(v.len(), T::to_c(T::default()))?;
            T::widen(v, &mut c);
            Ok(c)
        };
        let bias = widened(&args[0])?;
        let side = args.get(1).map(widened).transpose()?;
        let epi = Epilogue {
            bias: &bias,
            side: side.as_deref(),
            act: self.ops.act,
            round,
        };
        let av = if self.ta {
            Mat {
                data: a.as_slice::<T>()?,
                rs: 1,
                cs: m,
            }
        } else {
            Mat {
                data: a.as_slice::<T>()?,
                rs: k,
                cs: 1,
            }
        };
        let bv = if self.tb {
            Mat {
                data: b.as_slice::<T>()?,
                rs: 1,
                cs: k,
            }
        } else {
            Mat {
                data: b.as_slice::<T>()?,
                rs: n,
                cs: 1,
            }
        };
        let after = |r0: usize, rows: &mut [T]| epi.apply_stored(r0, rows);
        gemm_rows((m, n, k), av, bv, out_t.as_mut_slice::<T>()?, &after)?;
        Ok(out_t)
    }
}

impl Kernel for FusedMatMul {
    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::PLANNED
    }

    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let dtype = fused_inputs_dtype("_FusedMatMul", &inputs, 2 + self.ops.num_args())?;
        for (i, t) in inputs[..2].iter().enumerate() {
            if t.rank() != 2 {
                return Err(Error::invalid_argument(format!(
                    "In[{i}] is not a matrix. Instead it has shape {}",
                    t.shape()
                )));
            }
        }
        let out = match dtype {
            DType::F32 => self.run::<f32>(Some(cx), &inputs, <f32 as Lane>::round)?,
            DType::F64 => self.run::<f64>(Some(cx), &inputs, <f64 as Lane>::round)?,
            DType::F16 => self.run::<f16>(Some(cx), &inputs, <f16 as Lane>::round)?,
            DType::BF16 => {
                via_f32_rounded(dtype, inputs, |v, round| self.run::<f32>(None, &v, round))?
            }
            d => return Err(unsupported_dtype("_FusedMatMul", d)),
        };
        Ok(vec![out])
    }
}

fn factory(node: &Node) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(FusedMatMul {
        ta: attr_bool(node, "transpose_a", false)?,
        tb: attr_bool(node, "transpose_b", false)?,
        ops: FusedOps::parse(node)?,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("_FusedMatMul", factory);
}
