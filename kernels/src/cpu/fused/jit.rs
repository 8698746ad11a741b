//! Native code for `_FusedElementwise` programs: a [`Program`] over f32 or f64 is compiled
//! with Cranelift into one SIMD loop that keeps every register of the program in machine
//! registers, so each element is read from memory once and written once, with no
//! per-instruction pass over a block (what the interpreter in `elementwise.rs` does).
//!
//! The loop handles a multiple of [`Compiled::lanes`] elements; the kernel gives the rest
//! (fewer than one vector) to the interpreter. Programs with an op that has no exact
//! vector form here (the transcendental ones: `Exp`, `Tanh`, `Sigmoid`, ...) are not
//! compiled and run in the interpreter. `RILL_NO_JIT=1` turns compilation off.
//!
//! Invariants: every op is lowered to the IEEE operations its unfused functor performs,
//! in the same order, with its comparisons and selections spelled as the functor spells
//! them (`Maximum` keeps `a` when `a` is NaN or `a > b`, `Relu` maps `x < 0` to `+0`,
//! ...); Cranelift never contracts a multiply and an add. So a compiled program gives bit
//! for bit what the unfused kernels give (NaN payloads aside, as between any two
//! builds); `jit_tests` checks every op on special values. The code reads each position
//! of every input before it writes that position of the output, so an input may share the
//! output's memory.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, Endianness, InstBuilder, MemFlagsData, Type, Value};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use rill_graph::DType;

use super::program::{Bin, Op, Program, Un};

/// The compiled loop: `entry(inputs, out, len)` computes `len` elements, reading input `i`
/// at `inputs[i]` (`len` elements, or one value broadcast for a scalar input).
type Entry = unsafe extern "C" fn(*const *const u8, *mut u8, usize);

/// A program compiled for one dtype and one choice of scalar inputs.
pub(crate) struct Compiled {
    entry: Entry,
    /// Elements per vector; the loop computes a multiple of this.
    pub lanes: usize,
    /// Owns the code; freed on drop. Never used after compilation (the mutex only makes
    /// the module, which is `Send`, shareable).
    module: Mutex<Option<JITModule>>,
}

impl Compiled {
    /// Computes `len` output elements at `out`.
    ///
    /// # Safety
    /// `inputs` has one pointer per program input, to `len` readable elements of the
    /// compiled dtype (to one element for an input compiled as scalar); `out` points to
    /// `len` writable elements; `len` is a multiple of `lanes`. An input may equal `out`
    /// (it is read at each position before the position is written); otherwise inputs and
    /// `out` do not overlap.
    pub(crate) unsafe fn call(&self, inputs: &[*const u8], out: *mut u8, len: usize) {
        debug_assert_eq!(len % self.lanes, 0);
        // SAFETY: the caller upholds the contract above, which is the one the code was
        // generated for (`build` reads `inputs[..n]` and `len` elements per dense input).
        unsafe { (self.entry)(inputs.as_ptr(), out, len) }
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        let module = self.module.get_mut().ok().and_then(Option::take);
        if let Some(module) = module {
            // SAFETY: `entry` points into this module's memory and is only reachable
            // through `self`, which is being dropped, so no call can still be running.
            unsafe { module.free_memory() };
        }
    }
}

/// Which inputs are scalars, and the program compiled for that (`None`: it cannot be).
type Variant = (Vec<bool>, Option<Arc<Compiled>>);

/// Compiled programs of one kernel, by which inputs are scalars (compiled on first use).
#[derive(Default)]
pub(crate) struct Cache {
    entries: Mutex<Vec<Variant>>,
}

impl Cache {
    /// `prog` compiled for `dtype` with input `i` broadcast from one value where
    /// `scalar[i]`, if it can be.
    pub(crate) fn get(
        &self,
        prog: &Program,
        dtype: DType,
        scalar: &[bool],
    ) -> Option<Arc<Compiled>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = entries.iter().find(|(s, _)| s == scalar) {
            return c.clone();
        }
        // A code generator failure of any kind (an error, or a panic inside Cranelift)
        // leaves the program to the interpreter.
        let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| compile(prog, dtype, scalar)));
        let compiled = attempt.ok().and_then(Result::ok).map(Arc::new);
        entries.push((scalar.to_vec(), compiled.clone()));
        compiled
    }
}

/// The host's instruction set, if native code can be generated for it.
fn host() -> Option<&'static OwnedTargetIsa> {
    static HOST: OnceLock<Option<OwnedTargetIsa>> = OnceLock::new();
    HOST.get_or_init(|| {
        if std::env::var_os("RILL_NO_JIT").is_some_and(|v| v != "0") {
            return None;
        }
        // Floor, Ceil, Round and the truncating division need SSE4.1's `roundps`.
        #[cfg(target_arch = "x86_64")]
        if !is_x86_feature_detected!("sse4.1") {
            return None;
        }
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").ok()?;
        flags
            .set(
                "enable_verifier",
                if cfg!(debug_assertions) {
                    "true"
                } else {
                    "false"
                },
            )
            .ok()?;
        cranelift_native::builder()
            .ok()?
            .finish(settings::Flags::new(flags))
            .ok()
    })
    .as_ref()
}

/// Whether this process compiles programs at all.
#[cfg(test)]
pub(crate) fn available() -> bool {
    host().is_some()
}

/// Compiles `prog` for `dtype` (f32 or f64) with input `i` broadcast where `scalar[i]`.
pub(crate) fn compile(prog: &Program, dtype: DType, scalar: &[bool]) -> Result<Compiled, String> {
    let (elem, lanes) = match dtype {
        DType::F32 => (types::F32, 4),
        DType::F64 => (types::F64, 2),
        d => return Err(format!("no native code for {d}")),
    };
    if scalar.len() != prog.inputs {
        return Err("one scalar flag per input is needed".into());
    }
    let isa = host()
        .ok_or("no native code generation on this host")?
        .clone();
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let mut cx = module.make_context();
    let ptr = module.target_config().pointer_type();
    cx.func.signature.params.extend([AbiParam::new(ptr); 3]);
    let mut builder_cx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut cx.func, &mut builder_cx);
    let vector = elem.by(lanes as u32).ok_or("no vector type")?;
    emit_loop(&mut b, prog, scalar, ptr, vector)?;
    b.finalize(module.target_config());
    let id = module
        .declare_function("fused_elementwise", Linkage::Local, &cx.func.signature)
        .map_err(|e| e.to_string())?;
    module
        .define_function(id, &mut cx)
        .map_err(|e| e.to_string())?;
    module.finalize_definitions().map_err(|e| e.to_string())?;
    let code = module.get_finalized_function(id);
    // SAFETY: `code` is the finalised function just defined with the signature
    // `(ptr, ptr, ptr)` and the C calling convention, which is `Entry`'s.
    let entry = unsafe { std::mem::transmute::<*const u8, Entry>(code) };
    Ok(Compiled {
        entry,
        lanes,
        module: Mutex::new(Some(module)),
    })
}

/// Emits `entry(inputs, out, len)`: loads the input pointers and the scalar inputs,
/// computes what depends on scalars alone once, then loops over `len` elements one vector
/// at a time.
fn emit_loop(
    b: &mut FunctionBuilder,
    prog: &Program,
    scalar: &[bool],
    ptr: Type,
    vector: Type,
) -> Result<(), String> {
    let entry = b.create_block();
    let body = b.create_block();
    let exit = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let [inputs, out, len] = b.block_params(entry) else {
        return Err("the signature has three parameters".into());
    };
    let (inputs, out, len) = (*inputs, *out, *len);
    let mem = MemFlagsData::new().with_notrap();
    let elem_bytes = i64::from(vector.lane_type().bytes());
    let consts = Consts::new(b, vector);

    // Registers: inputs, then one per instruction. `None` until defined.
    let mut regs: Vec<Option<Value>> = vec![None; prog.inputs + prog.instrs.len()];
    let mut bases = Vec::with_capacity(prog.inputs);
    for (i, &is_scalar) in scalar.iter().enumerate() {
        let p = b.ins().load(
            ptr,
            mem,
            inputs,
            i32::try_from(i * ptr.bytes() as usize).map_err(|e| e.to_string())?,
        );
        if is_scalar {
            let v = b.ins().load(vector.lane_type(), mem, p, 0);
            regs[i] = Some(b.ins().splat(vector, v));
        } else {
            bases.push((i, p));
        }
    }
    // What depends on scalars alone is computed once, before the loop.
    for (k, ins) in prog.instrs.iter().enumerate() {
        let args: Option<Vec<Value>> = ins.args[..ins.arity].iter().map(|&a| regs[a]).collect();
        if let Some(args) = args {
            regs[prog.inputs + k] = Some(lower(b, &consts, ins.op, &args)?);
        }
    }
    let bytes = b.ins().imul_imm_s(len, elem_bytes);
    let zero = b.ins().iconst(ptr, 0);
    let empty = b.ins().icmp_imm_s(IntCC::Equal, len, 0);
    b.ins().brif(empty, exit, &[], body, &[zero.into()]);

    b.switch_to_block(body);
    let offset = b.append_block_param(body, ptr);
    let mut vregs = regs.clone();
    for &(i, base) in &bases {
        let at = b.ins().iadd(base, offset);
        vregs[i] = Some(b.ins().load(vector, mem, at, 0));
    }
    for (k, ins) in prog.instrs.iter().enumerate() {
        if vregs[prog.inputs + k].is_none() {
            let args: Vec<Value> = ins.args[..ins.arity]
                .iter()
                .map(|&a| vregs[a].ok_or("a register is read before it is defined"))
                .collect::<Result<_, _>>()?;
            vregs[prog.inputs + k] = Some(lower(b, &consts, ins.op, &args)?);
        }
    }
    let result = vregs
        .last()
        .copied()
        .flatten()
        .ok_or("the program is empty")?;
    let at = b.ins().iadd(out, offset);
    b.ins().store(mem, result, at, 0);
    let next = b
        .ins()
        .iadd_imm_s(offset, elem_bytes * i64::from(vector.lane_count()));
    let more = b.ins().icmp(IntCC::UnsignedLessThan, next, bytes);
    b.ins().brif(more, body, &[next.into()], exit, &[]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    Ok(())
}

/// Constants splatted to the vector type (unused ones are removed by the optimiser).
struct Consts {
    ty: Type,
    zero: Value,
    one: Value,
    minus_one: Value,
    six: Value,
}

impl Consts {
    fn new(b: &mut FunctionBuilder, ty: Type) -> Consts {
        let [zero, one, minus_one, six] = [0.0, 1.0, -1.0, 6.0].map(|v| splat(b, ty, v));
        Consts {
            ty,
            zero,
            one,
            minus_one,
            six,
        }
    }
}

/// `v` in every lane of `ty` (exact: the f32 values used here are f32-representable).
fn splat(b: &mut FunctionBuilder, ty: Type, v: f64) -> Value {
    let lane = if ty.lane_type() == types::F32 {
        b.ins().f32const(v as f32)
    } else {
        b.ins().f64const(v)
    };
    b.ins().splat(ty, lane)
}

/// Per lane, `a` where `mask` (a comparison's result) is set, else `c`.
fn pick(b: &mut FunctionBuilder, ty: Type, mask: Value, a: Value, c: Value) -> Value {
    let le = MemFlagsData::new().with_endianness(Endianness::Little);
    let mask = b.ins().bitcast(ty, le, mask);
    b.ins().bitselect(mask, a, c)
}

/// Emits `op` on `args`, exactly as its unfused functor computes it.
fn lower(b: &mut FunctionBuilder, k: &Consts, op: Op, args: &[Value]) -> Result<Value, String> {
    let ty = k.ty;
    let x = args[0];
    let y = || {
        args.get(1)
            .copied()
            .ok_or("a binary op needs two registers")
    };
    Ok(match op {
        Op::Un(u) => match u {
            Un::Abs => b.ins().fabs(x),
            Un::Neg => b.ins().fneg(x),
            Un::Square => b.ins().fmul(x, x),
            Un::Sqrt => b.ins().sqrt(x),
            Un::Rsqrt => {
                let s = b.ins().sqrt(x);
                b.ins().fdiv(k.one, s)
            }
            Un::Reciprocal | Un::Inv => b.ins().fdiv(k.one, x),
            Un::Floor => b.ins().floor(x),
            Un::Ceil => b.ins().ceil(x),
            Un::Round | Un::Rint => b.ins().nearest(x),
            Un::Relu => relu(b, k, x),
            Un::Relu6 => {
                let r = relu(b, k, x);
                let over = b.ins().fcmp(FloatCC::LessThan, k.six, r);
                pick(b, ty, over, k.six, r)
            }
            Un::Sign => {
                // x > 0 ? 1 : x < 0 ? -1 : x is NaN ? x : +0
                let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
                let r = pick(b, ty, nan, x, k.zero);
                let neg = b.ins().fcmp(FloatCC::LessThan, x, k.zero);
                let r = pick(b, ty, neg, k.minus_one, r);
                let pos = b.ins().fcmp(FloatCC::GreaterThan, x, k.zero);
                pick(b, ty, pos, k.one, r)
            }
            Un::Softsign => {
                let a = b.ins().fabs(x);
                let d = b.ins().fadd(k.one, a);
                b.ins().fdiv(x, d)
            }
            other => return Err(format!("{other:?} has no exact vector form")),
        },
        Op::LeakyRelu(alpha) => {
            // x > 0 ? x : x * alpha
            let alpha = splat(b, ty, f64::from(alpha));
            let scaled = b.ins().fmul(x, alpha);
            let pos = b.ins().fcmp(FloatCC::GreaterThan, x, k.zero);
            pick(b, ty, pos, x, scaled)
        }
        Op::Bin(op) => {
            let y = y()?;
            match op {
                Bin::Add | Bin::AddV2 => b.ins().fadd(x, y),
                Bin::Sub => b.ins().fsub(x, y),
                Bin::Mul => b.ins().fmul(x, y),
                Bin::Div | Bin::RealDiv => b.ins().fdiv(x, y),
                Bin::DivNoNan | Bin::MulNoNan => {
                    // y == 0 ? 0 : x op y
                    let v = if op == Bin::DivNoNan {
                        b.ins().fdiv(x, y)
                    } else {
                        b.ins().fmul(x, y)
                    };
                    let zero = b.ins().fcmp(FloatCC::Equal, y, k.zero);
                    pick(b, ty, zero, k.zero, v)
                }
                Bin::FloorDiv => {
                    let q = b.ins().fdiv(x, y);
                    b.ins().floor(q)
                }
                Bin::TruncateDiv => {
                    let q = b.ins().fdiv(x, y);
                    b.ins().trunc(q)
                }
                Bin::SquaredDifference => {
                    let d = b.ins().fsub(x, y);
                    b.ins().fmul(d, d)
                }
                Bin::Maximum | Bin::Minimum => {
                    // x is NaN || x > y (x < y for Minimum) ? x : y
                    let cc = if op == Bin::Maximum {
                        FloatCC::GreaterThan
                    } else {
                        FloatCC::LessThan
                    };
                    let nan = b.ins().fcmp(FloatCC::Unordered, x, x);
                    let wins = b.ins().fcmp(cc, x, y);
                    let keep = b.ins().bor(nan, wins);
                    pick(b, ty, keep, x, y)
                }
                other => return Err(format!("{other:?} has no exact vector form")),
            }
        }
    })
}

/// `x < 0 ? +0 : x`.
fn relu(b: &mut FunctionBuilder, k: &Consts, x: Value) -> Value {
    let neg = b.ins().fcmp(FloatCC::LessThan, x, k.zero);
    pick(b, k.ty, neg, k.zero, x)
}
