//! The `_FusedConv2D` kernel: `Conv2D` (NHWC or NCHW, any padding, strides, dilations,
//! groups) whose output rows get the `fused_ops` epilogue block by block as the im2col
//! GEMM finishes them ([`forward`]), instead of one full pass per op.
//!
//! Computed in NHWC like `Conv2D` (NCHW is transposed in and out, and so is the tensor
//! `Add`ed); f16/bf16 in f32, rounding after every step as the unfused kernels do. An NHWC
//! output comes from the step's memory plan.
//!
//! Invariants: shape errors carry `Conv2D`'s and `BiasAdd`'s messages; results equal
//! `Conv2D` followed by the unfused ops.

use rayon::prelude::*;
use rill_graph::{DType, Error, Node, Result, Tensor};

use super::epilogue::{Epilogue, FusedOps};
use super::gemm::{gemm_rows, parallel_row_blocks, RowsDone, MIN_BLOCK_ROWS};
use super::lane::Lane;
use super::matmul::{check_args, fused_inputs_dtype, via_f32_rounded};
use crate::cpu::math::broadcast::alloc;
use crate::cpu::math::matmul::{gemm_into_serial, Mat, MatElem};
use crate::cpu::math::num::Float;
use crate::cpu::math::par::for_rows;
use crate::cpu::nn::conv::{conv_forward_into, im2col_rows, rank4, ConvGeom};
use crate::cpu::nn::window::{from_nhwc, to_nhwc, Format, WindowAttrs};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// im2col scratch one task of the row-block-parallel pass may use, in elements.
const TASK_COL_BUDGET: usize = 1 << 19;

/// The convolution of NHWC `x` by HWIO `f` into NHWC `out`, with `after` run once on every
/// output row right after it is computed.
///
/// A 1x1 convolution is a product ([`gemm_rows`]). Large convolutions whose row blocks
/// are big enough to amortise repacking the filter run as parallel row blocks: each task
/// builds its patches, multiplies on its thread and calls `after` on its block. Others
/// run as `Conv2D` does (blocks in order, each built and multiplied on all cores) with
/// `after` on each finished block, split across cores.
fn forward<T: MatElem>(
    x: &[T],
    f: &[T],
    g: &ConvGeom,
    out: &mut [T],
    after: RowsDone<T>,
) -> Result<()> {
    let (rows, kdim, o, og) = (g.rows(), g.kdim(), g.o, g.og());
    if rows == 0 || o == 0 {
        return Ok(());
    }
    if g.pointwise() {
        let xm = Mat {
            data: x,
            rs: g.c,
            cs: 1,
        };
        let fm = Mat {
            data: f,
            rs: o,
            cs: 1,
        };
        return gemm_rows((rows, o, g.c), xm, fm, out, after);
    }
    let task_rows = parallel_row_blocks(rows, rows.saturating_mul(kdim).saturating_mul(o))
        .map(|mb| mb.min(TASK_COL_BUDGET / kdim.max(1)))
        .filter(|&mb| mb >= MIN_BLOCK_ROWS);
    let Some(mb) = task_rows else {
        let mut each = |r0: usize, block: &mut [T]| {
            for_rows(block, o, o, |r, rows| after(r0 + r, rows));
        };
        return conv_forward_into(x, f, g, out, Some(&mut each));
    };
    if out.len() != rows * o {
        return Err(Error::internal("fused conv output of the wrong size"));
    }
    out.par_chunks_mut(mb * o)
        .enumerate()
        .try_for_each(|(i, block)| {
            let (r0, rb) = (i * mb, block.len() / o);
            let mut col = alloc(rb * kdim, T::default())?;
            for gi in 0..g.groups {
                im2col_rows(x, g, gi, r0, &mut col);
                let a = Mat {
                    data: &col[..],
                    rs: kdim,
                    cs: 1,
                };
                let b = Mat {
                    data: &f[gi * og..],
                    rs: o,
                    cs: 1,
                };
                gemm_into_serial(rb, og, kdim, a, b, &mut block[gi * og..], o)?;
            }
            after(r0, block);
            Ok(())
        })
}

struct FusedConv {
    attrs: WindowAttrs,
    ops: FusedOps,
}

impl FusedConv {
    /// The convolution and the epilogue in `T` (f32/f64), rounding with `round`; the
    /// output comes from `cx`'s plan when given and NHWC.
    fn run<T: MatElem + Float + Lane<C = T>>(
        &self,
        cx: Option<&KernelContext>,
        inputs: Vec<Tensor>,
        round: fn(&mut [T]),
    ) -> Result<Tensor> {
        let mut it = inputs.into_iter();
        let (Some(x), Some(f)) = (it.next(), it.next()) else {
            return Err(Error::internal("_FusedConv2D without input and filter"));
        };
        let args: Vec<Tensor> = it.collect();
        rank4(&x, "input")?;
        rank4(&f, "filter")?;
        let fmt = self.attrs.format;
        let x = to_nhwc(x, fmt)?;
        let d = x.dims();
        let g = ConvGeom::new(&self.attrs, [d[0], d[1], d[2], d[3]], f.dims())?;
        let dims = g.out_nhwc();
        check_args(&args, g.o, &fmt.dims_from_nhwc(dims))?;
        let side = args.get(1).map(|s| to_nhwc(s.clone(), fmt)).transpose()?;
        let mut out = match (cx, fmt) {
            (Some(cx), Format::Nhwc) => cx.alloc_output::<T>(0, &dims)?,
            _ => Tensor::new(&dims, alloc(g.rows() * g.o, T::default())?)?,
        };
        let epi = Epilogue {
            bias: args[0].as_slice::<T>()?,
            side: side.as_ref().map(|s| s.as_slice::<T>()).transpose()?,
            act: self.ops.act,
            round,
        };
        let after = |r0: usize, rows: &mut [T]| epi.apply(r0, rows);
        forward(
            x.as_slice::<T>()?,
            f.as_slice::<T>()?,
            &g,
            out.as_mut_slice::<T>()?,
            &after,
        )?;
        from_nhwc(out, fmt)
    }
}

impl Kernel for FusedConv {
    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::PLANNED
    }

    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let dtype = fused_inputs_dtype("_FusedConv2D", &inputs, 2 + self.ops.num_args())?;
        let out = match dtype {
            DType::F32 => self.run::<f32>(Some(cx), inputs, <f32 as Lane>::round)?,
            DType::F64 => self.run::<f64>(Some(cx), inputs, <f64 as Lane>::round)?,
            DType::F16 | DType::BF16 => {
                via_f32_rounded(dtype, inputs, |v, round| self.run::<f32>(None, v, round))?
            }
            d => return Err(unsupported_dtype("_FusedConv2D", d)),
        };
        Ok(vec![out])
    }
}

fn factory(node: &Node) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(FusedConv {
        attrs: WindowAttrs::parse(node, false)?,
        ops: FusedOps::parse(node)?,
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("_FusedConv2D", factory);
}
