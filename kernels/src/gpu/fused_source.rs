//! The CUDA backend of `_FusedElementwise`: CUDA C source for a [`Program`], the same
//! instruction list the CPU interpreter (`cpu::fused::elementwise`) and JIT run. NVRTC
//! compiles it (`nvrtc.rs`); one thread computes one output element at a time in a
//! grid-stride loop, the whole program in registers.
//!
//! The source has two parts:
//! - `rill_apply`, the program as one function of its input registers. It is plain C
//!   (also valid C++), one statement per instruction, each the exact IEEE expression of
//!   the op's CPU functor (`math::unary`, `math::binary`): the same compares and selects
//!   for the NaN rules of Maximum/Minimum/Relu/Sign, `rint` for Round (ties to even),
//!   `fmod` for Mod. The tests compile this part with the host C compiler and check it
//!   against the functors, bit for bit where the op is exact.
//! - the `__global__` kernel [`KERNEL_NAME`]: loads (dense, one scalar hoisted out of the
//!   loop, or strided for a broadcast input), `rill_apply`, one store. Outside NVRTC it is
//!   a plain C function over `blockIdx`/`threadIdx`/`blockDim`/`gridDim` that the includer
//!   defines: the tests run it on the host with one block of one thread.
//!
//! Invariants: f16/bf16 are computed in f32 and rounded to the storage type after every
//! instruction, as the unfused kernels round them; the source must be compiled with
//! `--fmad=false` (no contraction of a multiply and an add) and precise division and
//! square root, so exact ops give the CPU's bits; an output may alias an input (each
//! thread reads its element before writing it; no pointer is `__restrict__`).

use std::fmt::Write;

use rill_graph::{DType, Error, Result};

use crate::cpu::fused::elementwise::collapsed_broadcast;

use crate::cpu::fused::program::{Bin, Instr, Op, Program, Un};
use crate::cpu::math::unary::{softplus_threshold, SELU_ALPHA, SELU_SCALE};

/// The name of the generated `__global__` function.
pub const KERNEL_NAME: &str = "rill_fused_elementwise";

/// The most collapsed dimensions a strided (broadcast) input may have.
pub const MAX_STRIDED_RANK: usize = 8;

/// How the kernel reads one input register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// One element per output element, at the same index.
    Dense,
    /// One value for every element (read once per thread).
    Scalar,
    /// A broadcast input over `rank` collapsed output dimensions: two `rill_dims`
    /// parameters follow its pointer, the dimensions and the input's stride along each
    /// (0 where it is broadcast).
    Strided(usize),
}

/// How each input of these shapes is read for an output of `out_dims`; an input that
/// does not broadcast to `out_dims` is an error.
pub fn accesses(input_dims: &[&[usize]], out_dims: &[usize]) -> Result<Vec<Access>> {
    input_dims
        .iter()
        .map(|dims| {
            let pad = out_dims.len().checked_sub(dims.len());
            let broadcasts = pad.is_some_and(|pad| {
                dims.iter()
                    .zip(&out_dims[pad..])
                    .all(|(&d, &o)| d == o || d == 1)
            });
            if !broadcasts {
                return Err(Error::invalid_argument(format!(
                    "an input of shape {dims:?} does not broadcast to the output's {out_dims:?}"
                )));
            }
            Ok(if *dims == out_dims {
                Access::Dense
            } else if dims.iter().product::<usize>() == 1 {
                Access::Scalar
            } else {
                Access::Strided(collapsed_broadcast(dims, out_dims).0.len())
            })
        })
        .collect()
}

/// The type the program computes in: f32 (also for f16/bf16) or f64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compute {
    F32,
    F64,
}

impl Compute {
    fn of(dtype: DType) -> Result<Compute> {
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => Ok(Compute::F32),
            DType::F64 => Ok(Compute::F64),
            d => Err(Error::unimplemented(format!(
                "the CUDA fused elementwise kernel takes floats, not {d:?}"
            ))),
        }
    }

    /// The C math function `name` for this type (`expf` or `exp`).
    fn math(self, name: &str) -> String {
        match self {
            Compute::F32 => format!("{name}f"),
            Compute::F64 => name.to_string(),
        }
    }

    /// `v` rounded to this type, as a C literal that parses back to exactly that value
    /// (in parentheses when negative, so that `-` before it stays a negation).
    fn literal(self, v: f64) -> Result<String> {
        let (text, finite) = match self {
            Compute::F32 => (format!("{:?}f", v as f32), (v as f32).is_finite()),
            Compute::F64 => (format!("{v:?}"), v.is_finite()),
        };
        if !finite {
            return Err(Error::invalid_argument(format!(
                "the CUDA fused elementwise kernel takes finite constants, not {v}"
            )));
        }
        Ok(if text.starts_with('-') {
            format!("({text})")
        } else {
            text
        })
    }

    /// The C literal of a constant the CPU functor computes in `T` itself.
    fn computed(self, f32_value: f32, f64_value: f64) -> Result<String> {
        match self {
            Compute::F32 => self.literal(f64::from(f32_value)),
            Compute::F64 => self.literal(f64_value),
        }
    }
}

/// The storage type's C declarations: `rill_s`, `rill_widen`, `rill_narrow`, `rill_round`.
fn storage(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => concat!(
            "typedef float rill_s;\n",
            "#define rill_widen(v) (v)\n#define rill_narrow(v) (v)\n#define rill_round(v) (v)\n"
        ),
        DType::F64 => concat!(
            "typedef double rill_s;\n",
            "#define rill_widen(v) (v)\n#define rill_narrow(v) (v)\n#define rill_round(v) (v)\n"
        ),
        // The hardware's conversions (round to nearest even), device code only.
        DType::F16 => concat!(
            "typedef unsigned short rill_s;\n",
            "RILL_DEVICE float rill_widen(rill_s h) {\n",
            "  float f; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h)); return f;\n}\n",
            "RILL_DEVICE rill_s rill_narrow(float f) {\n",
            "  rill_s h; asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(f)); return h;\n}\n",
            "#define rill_round(v) rill_widen(rill_narrow(v))\n"
        ),
        // bf16 is f32's top half: widening is a shift; narrowing rounds to nearest even
        // and keeps NaNs NaN (as the `half` crate does on the CPU).
        _ => concat!(
            "typedef unsigned short rill_s;\n",
            "RILL_DEVICE float rill_widen(rill_s h) { return __uint_as_float(((unsigned int)h) << 16); }\n",
            "RILL_DEVICE rill_s rill_narrow(float f) {\n",
            "  unsigned int u = __float_as_uint(f);\n",
            "  if ((u & 0x7fffffffu) > 0x7f800000u) return (rill_s)((u >> 16) | 0x40u);\n",
            "  u += 0x7fffu + ((u >> 16) & 1u);\n",
            "  return (rill_s)(u >> 16);\n}\n",
            "#define rill_round(v) rill_widen(rill_narrow(v))\n"
        ),
    }
}

/// The C statements of one instruction writing register `out`; `x`, `y` are its operands.
fn statements(c: Compute, op: Op, out: &str, x: &str, y: &str) -> Result<String> {
    let m = |name: &str| c.math(name);
    let (zero, one) = (c.literal(0.0)?, c.literal(1.0)?);
    let value = match op {
        Op::Un(u) => match u {
            Un::Abs => format!("{}({x})", m("fabs")),
            Un::Neg => format!("-{x}"),
            Un::Sign => format!(
                "{x} > {zero} ? {one} : ({x} < {zero} ? -{one} : ({x} != {x} ? {x} : {zero}))"
            ),
            Un::Reciprocal | Un::Inv => format!("{one} / {x}"),
            Un::Square => format!("{x} * {x}"),
            Un::Sqrt => format!("{}({x})", m("sqrt")),
            Un::Rsqrt => format!("{one} / {}({x})", m("sqrt")),
            Un::Sigmoid => format!("{one} / ({one} + {}(-{x}))", m("exp")),
            Un::Round | Un::Rint => format!("{}({x})", m("rint")),
            Un::Relu => format!("{x} < {zero} ? {zero} : {x}"),
            Un::Relu6 => {
                let six = c.literal(6.0)?;
                let relu = format!("({x} < {zero} ? {zero} : {x})");
                format!("{six} < {relu} ? {six} : {relu}")
            }
            Un::Elu => format!("{x} < {zero} ? {}({x}) - {one} : {x}", m("exp")),
            Un::Selu => format!(
                "{x} < {zero} ? {} * ({}({x}) - {one}) : {} * {x}",
                c.literal(SELU_SCALE * SELU_ALPHA)?,
                m("exp"),
                c.literal(SELU_SCALE)?
            ),
            Un::Softplus => {
                let t = c.computed(softplus_threshold::<f32>(), softplus_threshold::<f64>())?;
                let e = m("exp");
                format!(
                    "{x} > -{t} ? {x} : ({x} < {t} ? {e}({x}) : {}({e}({x}) + {one}))",
                    m("log")
                )
            }
            Un::Softsign => format!("{x} / ({one} + {}({x}))", m("fabs")),
            other => {
                let name = libm_name(other)
                    .ok_or_else(|| Error::internal(format!("{other:?} has no CUDA expression")))?;
                format!("{}({x})", m(name))
            }
        },
        Op::LeakyRelu(alpha) => {
            let alpha = c.literal(f64::from(alpha))?;
            format!("{x} > {zero} ? {x} : {x} * {alpha}")
        }
        Op::Bin(b) => match b {
            Bin::Add | Bin::AddV2 => format!("{x} + {y}"),
            Bin::Sub => format!("{x} - {y}"),
            Bin::Mul => format!("{x} * {y}"),
            Bin::Div | Bin::RealDiv => format!("{x} / {y}"),
            Bin::DivNoNan => format!("{y} == {zero} ? {zero} : {x} / {y}"),
            Bin::MulNoNan => format!("{y} == {zero} ? {zero} : {x} * {y}"),
            Bin::FloorDiv => format!("{}({x} / {y})", m("floor")),
            Bin::TruncateDiv => format!("{}({x} / {y})", m("trunc")),
            Bin::FloorMod => {
                let r = format!("{out}_mod");
                return Ok(format!(
                    "  const rill_c {r} = {}({x}, {y});\n  const rill_c {out} = rill_round({r} != {zero} && (({r} < {zero}) != ({y} < {zero})) ? {r} + {y} : {r});\n",
                    m("fmod")
                ));
            }
            Bin::Mod | Bin::TruncateMod => format!("{}({x}, {y})", m("fmod")),
            Bin::Pow => format!("{}({x}, {y})", m("pow")),
            Bin::SquaredDifference => format!("({x} - {y}) * ({x} - {y})"),
            Bin::Maximum => format!("{x} != {x} || {x} > {y} ? {x} : {y}"),
            Bin::Minimum => format!("{x} != {x} || {x} < {y} ? {x} : {y}"),
            Bin::Atan2 => format!("{}({x}, {y})", m("atan2")),
            Bin::Xlogy => format!("{x} == {zero} ? {zero} : {x} * {}({y})", m("log")),
            Bin::Xlog1py => format!("{x} == {zero} ? {zero} : {x} * {}({y})", m("log1p")),
            Bin::Xdivy => format!("{x} == {zero} ? {zero} : {x} / {y}"),
        },
    };
    Ok(format!("  const rill_c {out} = rill_round({value});\n"))
}

/// The C math library's name of a unary op that is one call.
fn libm_name(op: Un) -> Option<&'static str> {
    Some(match op {
        Un::Exp => "exp",
        Un::Expm1 => "expm1",
        Un::Log => "log",
        Un::Log1p => "log1p",
        Un::Sin => "sin",
        Un::Cos => "cos",
        Un::Tan => "tan",
        Un::Asin => "asin",
        Un::Acos => "acos",
        Un::Atan => "atan",
        Un::Sinh => "sinh",
        Un::Cosh => "cosh",
        Un::Asinh => "asinh",
        Un::Acosh => "acosh",
        Un::Atanh => "atanh",
        Un::Tanh => "tanh",
        Un::Floor => "floor",
        Un::Ceil => "ceil",
        Un::Erf => "erf",
        Un::Erfc => "erfc",
        // Every other op has its own expression in `statements`.
        _ => return None,
    })
}

/// The register names of `prog`: `r0`, `r1`, ...
fn reg(r: usize) -> String {
    format!("r{r}")
}

/// The portable part: `RILL_DEVICE`, `rill_c`, the storage declarations and `rill_apply`
/// (the program as a function of its input registers, returning the last register).
pub(crate) fn apply_source(prog: &Program, dtype: DType) -> Result<String> {
    let c = Compute::of(dtype)?;
    let mut s = String::from(concat!(
        "#ifdef __CUDACC_RTC__\n",
        "#define RILL_DEVICE static __device__ __forceinline__\n",
        "#define RILL_KERNEL extern \"C\" __global__\n",
        "#else\n",
        "#define RILL_DEVICE static inline\n",
        "#define RILL_KERNEL\n",
        "#endif\n",
    ));
    let ty = if c == Compute::F32 { "float" } else { "double" };
    let _ = writeln!(s, "typedef {ty} rill_c;");
    s.push_str(storage(dtype));
    let params: Vec<String> = (0..prog.inputs)
        .map(|r| format!("const rill_c {}", reg(r)))
        .collect();
    let _ = writeln!(s, "RILL_DEVICE rill_c rill_apply({}) {{", params.join(", "));
    for (k, Instr { op, args, arity }) in prog.instrs.iter().enumerate() {
        let y = if *arity == 2 {
            reg(args[1])
        } else {
            String::new()
        };
        s.push_str(&statements(
            c,
            *op,
            &reg(prog.inputs + k),
            &reg(args[0]),
            &y,
        )?);
    }
    let last = prog.inputs + prog.instrs.len() - 1;
    let _ = writeln!(s, "  return {};\n}}", reg(last));
    Ok(s)
}

/// The whole CUDA source of the kernel [`KERNEL_NAME`] for a `_FusedElementwise` node's
/// program (`ops` attr over `access.len()` inputs) in `dtype`. Its parameters are
/// `(long long n, rill_s* out, ...)` followed, for each input, by its pointer and, for a
/// strided one, its `rill_dims` dimensions and strides.
pub fn cuda_source(ops: &[Vec<u8>], dtype: DType, access: &[Access]) -> Result<String> {
    let prog = Program::parse(access.len(), ops)?;
    kernel_source(&prog, dtype, access)
}

pub(crate) fn kernel_source(prog: &Program, dtype: DType, access: &[Access]) -> Result<String> {
    if access.len() != prog.inputs {
        return Err(Error::invalid_argument(format!(
            "the program has {} inputs, {} accesses given",
            prog.inputs,
            access.len()
        )));
    }
    if let Some(&Access::Strided(rank)) = access
        .iter()
        .find(|a| matches!(a, Access::Strided(r) if *r == 0 || *r > MAX_STRIDED_RANK))
    {
        return Err(Error::unimplemented(format!(
            "a broadcast input over {rank} collapsed dimensions (the CUDA kernel takes 1 to {MAX_STRIDED_RANK})"
        )));
    }
    let mut s = format!("/* Rill _FusedElementwise over {dtype:?} */\n");
    s.push_str(&apply_source(prog, dtype)?);
    let _ = writeln!(
        s,
        "typedef struct {{ long long v[{MAX_STRIDED_RANK}]; }} rill_dims;"
    );
    let mut params = vec!["long long n".to_string(), "rill_s* out".to_string()];
    let (mut hoisted, mut per_element) = (String::new(), String::new());
    for (k, a) in access.iter().enumerate() {
        params.push(format!("const rill_s* in{k}"));
        let r = reg(k);
        match *a {
            Access::Dense => {
                let _ = writeln!(per_element, "    const rill_c {r} = rill_widen(in{k}[i]);");
            }
            Access::Scalar => {
                let _ = writeln!(hoisted, "  const rill_c {r} = rill_widen(in{k}[0]);");
            }
            Access::Strided(rank) => {
                params.push(format!("rill_dims dims{k}"));
                params.push(format!("rill_dims strides{k}"));
                let _ = writeln!(per_element, "    long long at{k} = 0, rest{k} = i;");
                for d in (0..rank).rev() {
                    let _ = writeln!(
                        per_element,
                        "    at{k} += (rest{k} % dims{k}.v[{d}]) * strides{k}.v[{d}]; rest{k} /= dims{k}.v[{d}];"
                    );
                }
                let _ = writeln!(
                    per_element,
                    "    const rill_c {r} = rill_widen(in{k}[at{k}]);"
                );
            }
        }
    }
    let args: Vec<String> = (0..prog.inputs).map(reg).collect();
    let _ = write!(
        s,
        concat!(
            "RILL_KERNEL void {name}({params}) {{\n",
            "{hoisted}",
            "  const long long step = (long long)blockDim.x * gridDim.x;\n",
            "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {{\n",
            "{per_element}",
            "    out[i] = rill_narrow(rill_apply({args}));\n",
            "  }}\n}}\n"
        ),
        name = KERNEL_NAME,
        params = params.join(", "),
        hoisted = hoisted,
        per_element = per_element,
        args = args.join(", "),
    );
    Ok(s)
}
