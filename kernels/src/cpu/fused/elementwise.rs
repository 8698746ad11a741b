//! The `_FusedElementwise` kernel: evaluates a [`Program`] in one pass over memory.
//!
//! The output is cut into blocks of [`BLOCK`] elements; for each block every instruction
//! is a tight loop over small per-block registers (slots, reused once a register is
//! dead), so the working set stays in L1 and nothing of full size is materialised but the
//! output. Inputs are read in place when they are dense (native f32/f64), as one value
//! when they hold one, and gathered per block when they broadcast. Runs of blocks go to
//! rayon tasks for large outputs. The output takes over an input's buffer when the memory
//! plan says so (`may_reuse_input`), else comes from the plan's arena (`arena_output`),
//! else takes the buffer of an input of its shape that the kernel holds alone, else is a
//! fresh allocation that is never zeroed first (the kernel writes each element once, so
//! a fresh output costs one pass over memory, not two).
//!
//! Large outputs whose inputs are all dense or scalar (f32, f64) run as native code
//! instead (`jit.rs`: one SIMD loop with the whole program in machine registers), the last
//! few elements of each run, fewer than a vector, in the interpreter.
//!
//! Invariants: every output element is written exactly once, by the same per-element
//! functions as the unfused kernels, in the same order of operations (f16/bf16 rounded
//! after every instruction), so results are bit for bit those of the unfused ops.

use std::mem::MaybeUninit;

use half::{bf16, f16};
use rayon::prelude::*;
use rill_graph::{element_count, try_with_capacity, DType, Error, Node, Result, Tensor};
use smallvec::SmallVec;

use super::jit;
use super::lane::Lane;
use super::program::{
    binary, binary1, leaky_relu, map1, unary, unary1, Instr, Op, Program, Src, Store,
};
use crate::cpu::math::broadcast::broadcast_dims;
use crate::cpu::math::num::Float;
use crate::cpu::math::par::worth_splitting;
use crate::cpu::math::simd::widest;
use crate::cpu::math::util::{attr_int, attr_type};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry, MemoryTraits};

/// Elements per block (4 KiB of f32 per register).
pub(crate) const BLOCK: usize = 1024;

/// Outputs of at least this many elements use the compiled program. It is compiled once
/// per kernel on first use, in about half a millisecond: as long as interpreting an
/// 8-op program over this many elements about 40 times.
pub(crate) const JIT_MIN_ELEMENTS: usize = 1 << 15;

pub(crate) type Small = SmallVec<[usize; 6]>;

/// How a broadcast input maps onto the output: collapsed output dims and the input's
/// stride along each (0 where it is broadcast).
struct Gather {
    dims: Small,
    strides: Small,
}

/// A broadcast input's view of the output: the output's dims with runs of dims that the
/// input broadcasts alike (or alike not) merged and dims of 1 dropped, and the input's
/// stride along each merged dim (0 where it is broadcast). The product of the dims is the
/// output's element count; the CUDA kernel indexes a broadcast input with the same pair.
pub(crate) fn collapsed_broadcast(input: &[usize], out: &[usize]) -> (Small, Small) {
    let pad = out.len() - input.len();
    let (mut dims, mut flags) = (Small::new(), SmallVec::<[bool; 6]>::new());
    for (d, &size) in out.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let broadcast = d < pad || input[d - pad] == 1;
        match (flags.last(), dims.last_mut()) {
            (Some(&f), Some(last)) if f == broadcast => *last *= size,
            _ => {
                dims.push(size);
                flags.push(broadcast);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        flags.push(true);
    }
    let mut strides = Small::from_elem(0, dims.len());
    let mut acc = 1;
    for d in (0..dims.len()).rev() {
        if !flags[d] {
            strides[d] = acc;
            acc *= dims[d];
        }
    }
    (dims, strides)
}

impl Gather {
    fn new(input: &[usize], out: &[usize]) -> Gather {
        let (dims, strides) = collapsed_broadcast(input, out);
        Gather { dims, strides }
    }

    /// `out` = the input's values at output positions `start..start + out.len()`.
    #[inline(always)]
    fn fill<S: Lane>(&self, src: &[S], start: usize, out: &mut [S::C]) {
        let last = self.dims.len() - 1;
        let inner = self.dims[last];
        let mut coord = Small::from_elem(0, last);
        let mut row = start / inner;
        for d in (0..last).rev() {
            coord[d] = row % self.dims[d];
            row /= self.dims[d];
        }
        let mut col = start % inner;
        let mut base: usize = (0..last).map(|d| coord[d] * self.strides[d]).sum();
        let mut pos = 0;
        while pos < out.len() {
            let len = (inner - col).min(out.len() - pos);
            let dst = &mut out[pos..pos + len];
            if self.strides[last] == 1 {
                S::widen(&src[base + col..base + col + len], dst);
            } else {
                dst.fill(S::to_c(src[base]));
            }
            pos += len;
            col = 0;
            for d in (0..last).rev() {
                coord[d] += 1;
                base += self.strides[d];
                if coord[d] < self.dims[d] {
                    break;
                }
                base -= self.strides[d] * self.dims[d];
                coord[d] = 0;
            }
        }
    }
}

/// How an input register is filled for a block.
enum Read {
    /// Used in place (dense, native dtype): nothing to fill.
    Direct,
    /// Dense, widened into its slot.
    Widen,
    /// One value for every element.
    Scalar,
    /// Broadcast: gathered into its slot.
    Gather(Gather),
    /// The input whose buffer becomes the output: copied into its slot before the block
    /// is overwritten.
    Output,
}

/// Where a register's values are during a block.
#[derive(Clone, Copy)]
enum Loc<C> {
    Input(usize),
    Slot(usize),
    Scalar(C),
    /// The output itself (the last result, when the output needs no conversion).
    Out,
}

/// A program bound to one step's inputs: register locations and slot assignment.
struct Setup<C> {
    locs: Vec<Loc<C>>,
    slots: usize,
}

impl<C: Float> Setup<C> {
    /// Places every register: inputs per `reads`, instruction results in slots freed as
    /// soon as their last reader has run (a result never shares a slot with an operand),
    /// and results of scalar operands computed once here. The last result goes straight
    /// to the output when `direct_out`.
    fn new<S: Lane<C = C>>(prog: &Program, reads: &[Read], ins: &[&[S]], direct_out: bool) -> Self {
        let n = prog.inputs;
        let mut last_use = vec![0usize; n + prog.instrs.len()];
        for (k, ins) in prog.instrs.iter().enumerate() {
            for &a in &ins.args[..ins.arity] {
                last_use[a] = k;
            }
        }
        let (mut slots, mut free) = (0, Vec::<usize>::new());
        let mut locs: Vec<Loc<C>> = reads
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Read::Direct => Loc::Input(i),
                Read::Scalar => Loc::Scalar(S::to_c(ins[i][0])),
                _ => {
                    slots += 1;
                    Loc::Slot(slots - 1)
                }
            })
            .collect();
        let last = prog.instrs.len() - 1;
        for (k, ins) in prog.instrs.iter().enumerate() {
            let args = &ins.args[..ins.arity];
            let scalar = |r: usize| match locs[r] {
                Loc::Scalar(v) => Some(v),
                _ => None,
            };
            let loc = match (ins.op, scalar(args[0]), args.get(1).map(|&r| scalar(r))) {
                (Op::Un(u), Some(x), None) => Loc::Scalar(S::round1(unary1(u, x))),
                (Op::LeakyRelu(a), Some(x), None) => {
                    Loc::Scalar(S::round1(leaky_relu(x, C::from_f64(a as f64))))
                }
                (Op::Bin(b), Some(x), Some(Some(y))) => Loc::Scalar(S::round1(binary1(b, x, y))),
                _ if k == last && direct_out => Loc::Out,
                _ => Loc::Slot(free.pop().unwrap_or_else(|| {
                    slots += 1;
                    slots - 1
                })),
            };
            locs.push(loc);
            for &a in args {
                if let (Loc::Slot(s), true) = (locs[a], last_use[a] == k) {
                    if !free.contains(&s) {
                        free.push(s);
                    }
                }
            }
        }
        Setup { locs, slots }
    }
}

/// Everything a block needs, shared by all tasks.
struct Eval<'a, S: Lane> {
    prog: &'a Program,
    reads: &'a [Read],
    ins: &'a [&'a [S]],
    setup: Setup<S::C>,
}

impl<S: Lane> Eval<'_, S> {
    #[inline(always)]
    fn src<'b>(&self, r: usize, slots: &'b [Vec<S::C>], start: usize, len: usize) -> Src<'b, S::C>
    where
        Self: 'b,
    {
        match self.setup.locs[r] {
            Loc::Input(i) => {
                let v = S::direct(&self.ins[i][start..start + len]);
                Src::Slice(v.expect("direct inputs have a native dtype"))
            }
            Loc::Slot(s) => Src::Slice(&slots[s][..len]),
            Loc::Scalar(v) => Src::Scalar(v),
            Loc::Out => unreachable!("the output is never an operand"),
        }
    }

    /// Runs instruction `ins` on positions `start..start + target.len()` into `target`.
    #[inline(always)]
    fn exec<D: Store<S::C>>(
        &self,
        ins: &Instr,
        slots: &[Vec<S::C>],
        start: usize,
        target: &mut [D],
    ) {
        let len = target.len();
        let a = self.src(ins.args[0], slots, start, len);
        match (ins.op, a) {
            (Op::Un(u), Src::Slice(x)) => unary(u, x, target),
            (Op::LeakyRelu(alpha), Src::Slice(x)) => {
                let alpha = S::C::from_f64(alpha as f64);
                map1(x, target, |v| leaky_relu(v, alpha));
            }
            (Op::Bin(b), _) => binary(b, a, self.src(ins.args[1], slots, start, len), target),
            _ => unreachable!("scalar results are computed in Setup::new"),
        }
    }

    /// Computes output positions `start..start + out.len()` (at most [`BLOCK`]), writing
    /// every element of `out` once.
    #[inline(always)]
    fn block(&self, start: usize, out: &mut [MaybeUninit<S>], slots: &mut [Vec<S::C>]) {
        let len = out.len();
        for (i, read) in self.reads.iter().enumerate() {
            let Loc::Slot(s) = self.setup.locs[i] else {
                continue;
            };
            let dst = &mut slots[s][..len];
            match read {
                Read::Widen => S::widen(&self.ins[i][start..start + len], dst),
                Read::Gather(g) => g.fill(self.ins[i], start, dst),
                // SAFETY: `Read::Output` is only used when the output is an input's buffer,
                // so `out` holds that input's values until this block overwrites them below.
                Read::Output => S::widen(unsafe { assume_init(out) }, dst),
                Read::Direct | Read::Scalar => {}
            }
        }
        let n = self.prog.inputs;
        let last = self.prog.instrs.len() - 1;
        for (k, ins) in self.prog.instrs.iter().enumerate() {
            let s = match self.setup.locs[n + k] {
                Loc::Slot(s) => s,
                Loc::Out => {
                    let out = S::direct_uninit(out).expect("direct output has a native dtype");
                    self.exec(ins, slots, start, out);
                    continue;
                }
                _ => continue,
            };
            let mut dst = std::mem::take(&mut slots[s]);
            self.exec(ins, slots, start, &mut dst[..len]);
            if k != last {
                S::round(&mut dst[..len]);
            }
            slots[s] = dst;
        }
        match self.setup.locs[n + last] {
            Loc::Slot(s) => S::narrow_uninit(&slots[s][..len], out),
            Loc::Scalar(v) => S::narrow_uninit(&vec![v; len], out),
            Loc::Out => {}
            Loc::Input(_) => unreachable!("instruction results are never inputs"),
        }
    }

    /// Computes output positions `start..start + out.len()`, block by block.
    #[inline(always)]
    fn range(&self, start: usize, out: &mut [MaybeUninit<S>]) {
        let mut slots = vec![vec![S::C::ZERO; BLOCK]; self.setup.slots];
        for (b, chunk) in out.chunks_mut(BLOCK).enumerate() {
            self.block(start + b * BLOCK, chunk, &mut slots);
        }
    }
}

/// `v` seen as possibly uninitialised memory, for code that only writes initialised values
/// into it.
fn as_uninit<T>(v: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; every caller writes only initialised
    // values through the result, so `v` stays initialised.
    unsafe { &mut *(v as *mut [T] as *mut [MaybeUninit<T>]) }
}

/// `v` read as initialised values.
///
/// # Safety
/// Every element of `v` must be initialised.
unsafe fn assume_init<T>(v: &[MaybeUninit<T>]) -> &[T] {
    // SAFETY: the caller guarantees every element is initialised; the layouts are equal.
    unsafe { &*(v as *const [MaybeUninit<T>] as *const [T]) }
}

/// Where the output is written: an existing tensor (an input's buffer or the plan's
/// arena range), or a fresh buffer that is never zeroed.
enum Dest<S> {
    Tensor(Tensor),
    Fresh(Vec<S>),
}

/// Runs `prog` on `inputs` (all of storage type `S`), natively when `compiled` has it.
fn run<S: Lane>(
    prog: &Program,
    compiled: &jit::Cache,
    cx: &KernelContext,
    mut inputs: Vec<Tensor>,
) -> Result<Tensor> {
    if inputs.len() != prog.inputs {
        return Err(Error::invalid_argument(format!(
            "_FusedElementwise expects {} inputs, got {}",
            prog.inputs,
            inputs.len()
        )));
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(Tensor::dims).collect();
    let out_dims = broadcast_dims(&shapes)?;
    let n = element_count(&out_dims)?;
    // An input holding the output's values in its order (same count) can take it over.
    let same = |t: &Tensor| n > 0 && t.num_elements() == n && t.dtype() == S::DTYPE;
    let planned = (0..inputs.len()).find(|&i| cx.may_reuse_input(0, i) && same(&inputs[i]));
    let arena = match planned {
        Some(_) => None,
        None => cx.arena_output::<S>(0, &out_dims)?,
    };
    let take = match (planned, &arena) {
        (Some(i), _) => Some(i),
        (None, Some(_)) => None,
        (None, None) => (0..inputs.len()).find(|&j| {
            same(&inputs[j]) && inputs[j].is_exclusive() && cx.may_overwrite_input(0, j, &inputs[j])
        }),
    };
    let mut dest = match (take, arena) {
        (Some(i), _) => Dest::Tensor(std::mem::replace(
            &mut inputs[i],
            Tensor::scalar(S::default()),
        )),
        (None, Some(t)) => Dest::Tensor(t),
        (None, None) => Dest::Fresh(try_with_capacity::<S>(n)?),
    };
    if n > 0 {
        let ins: Vec<&[S]> = inputs
            .iter()
            .map(|t| t.as_slice::<S>())
            .collect::<Result<_>>()?;
        let reads: Vec<Read> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if Some(i) == take {
                    Read::Output
                } else if t.num_elements() == n {
                    if S::direct(ins[i]).is_some() {
                        Read::Direct
                    } else {
                        Read::Widen
                    }
                } else if t.num_elements() == 1 {
                    Read::Scalar
                } else {
                    Read::Gather(Gather::new(t.dims(), &out_dims))
                }
            })
            .collect();
        let eval = Eval {
            prog,
            reads: &reads,
            ins: &ins,
            setup: Setup::new(prog, &reads, &ins, S::direct_uninit(&mut []).is_some()),
        };
        let native = (n >= JIT_MIN_ELEMENTS
            && reads
                .iter()
                .all(|r| matches!(r, Read::Direct | Read::Scalar | Read::Output)))
        .then(|| {
            let scalar: SmallVec<[bool; 8]> =
                reads.iter().map(|r| matches!(r, Read::Scalar)).collect();
            compiled.get(prog, S::DTYPE, &scalar)
        })
        .flatten();
        // Computes output positions `start..start + part.len()`.
        let range = |start: usize, part: &mut [MaybeUninit<S>]| {
            let done = match &native {
                Some(code) => {
                    let len = part.len() / code.lanes * code.lanes;
                    // One pointer for writing `part` and reading it as an input.
                    let out: *mut u8 = part.as_mut_ptr().cast();
                    let at: SmallVec<[*const u8; 8]> = reads
                        .iter()
                        .zip(&ins)
                        .map(|(r, v)| match r {
                            Read::Scalar => v.as_ptr().cast(),
                            Read::Output => out.cast_const(),
                            _ => v[start..].as_ptr().cast(),
                        })
                        .collect();
                    // SAFETY: a dense input has `n` elements, so `len` from `start` on; a
                    // scalar one has one; `part` has `len` writable elements; the input
                    // read as `Read::Output` is `part` itself (allowed: the code reads each
                    // position before writing it); `len` is a multiple of `lanes`; the
                    // program was compiled for `S` with these scalar inputs.
                    unsafe { code.call(&at, out, len) };
                    len
                }
                None => 0,
            };
            if done < part.len() {
                widest(
                    #[inline(always)]
                    || eval.range(start + done, &mut part[done..]),
                );
            }
        };
        let out = match &mut dest {
            Dest::Tensor(t) => as_uninit(t.as_mut_slice::<S>()?),
            Dest::Fresh(v) => &mut v.spare_capacity_mut()[..n],
        };
        if worth_splitting(n.saturating_mul(prog.instrs.len())) {
            let tasks = rayon::current_num_threads() * 4;
            let chunk = n.div_ceil(tasks).div_ceil(BLOCK).max(4) * BLOCK;
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(c, part)| range(c * chunk, part));
        } else {
            range(0, out);
        }
    }
    match dest {
        Dest::Tensor(t) if t.dims() != out_dims.as_slice() => t.reshape(&out_dims),
        Dest::Tensor(t) => Ok(t),
        Dest::Fresh(mut v) => {
            // SAFETY: `v` has capacity `n`, and the evaluation above wrote each of its
            // first `n` elements (every block writes every element of its range, and the
            // ranges cover `0..n`).
            unsafe { v.set_len(n) };
            Tensor::new(&out_dims, v)
        }
    }
}

struct FusedElementwise {
    prog: Program,
    dtype: DType,
    compiled: jit::Cache,
}

impl Kernel for FusedElementwise {
    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::ELEMENTWISE
    }

    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let out = match self.dtype {
            DType::F32 => run::<f32>(&self.prog, &self.compiled, cx, inputs)?,
            DType::F64 => run::<f64>(&self.prog, &self.compiled, cx, inputs)?,
            DType::F16 => run::<f16>(&self.prog, &self.compiled, cx, inputs)?,
            DType::BF16 => run::<bf16>(&self.prog, &self.compiled, cx, inputs)?,
            d => return Err(unsupported_dtype("_FusedElementwise", d)),
        };
        Ok(vec![out])
    }
}

fn factory(node: &Node) -> Result<Box<dyn Kernel>> {
    let dtype = attr_type(node, "T", DType::F32)?;
    if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(unsupported_dtype("_FusedElementwise", dtype));
    }
    let inputs = attr_int(node, "N", node.inputs.len() as i64)?;
    let ops = node
        .attr("ops")
        .and_then(|v| v.as_string_list())
        .ok_or_else(|| Error::invalid_argument("_FusedElementwise needs a list(string) 'ops'"))?;
    let inputs = usize::try_from(inputs)
        .map_err(|_| Error::invalid_argument(format!("N must be >= 1, got {inputs}")))?;
    Ok(Box::new(FusedElementwise {
        prog: Program::parse(inputs, ops)?,
        dtype,
        compiled: jit::Cache::default(),
    }))
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("_FusedElementwise", factory);
}
