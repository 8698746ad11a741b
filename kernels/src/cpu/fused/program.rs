//! The instruction set of `_FusedElementwise`: the op table (one line per op), the
//! per-element functions, and parsing of the `ops` attr (encoding documented in
//! `rill-ops`' `math/fused_elementwise.rs`).
//!
//! Every op calls the functor of its unfused kernel (`<math::binary::op::X as
//! BinaryOp>::float`, `<math::unary::op::X as UnaryOp>::float`, `math::unary::leaky_relu`),
//! so fused and unfused results are the same by construction; the test
//! `fused::tests::every_op_matches_its_kernel` checks each, bit for bit on special values,
//! against the registered unfused kernel.
//!
//! Invariants: a parsed [`Program`] only reads registers defined before each instruction
//! and has at least one instruction; every loop is a plain map over slices, so it
//! vectorises and computes exactly what the unfused kernel computes per element.

use std::mem::MaybeUninit;

use rill_graph::{Error, Result};

use crate::cpu::math::binary::{op as bop, BinaryOp};
use crate::cpu::math::num::Float;
use crate::cpu::math::unary::{op as uop, UnaryOp};

/// One operand of an instruction for a block: values, or one value broadcast.
#[derive(Clone, Copy)]
pub(crate) enum Src<'a, T> {
    Slice(&'a [T]),
    Scalar(T),
}

/// A destination element an instruction writes a `T` into: a `T`, or a `MaybeUninit<T>`
/// of a fresh (never zeroed) output.
pub(crate) trait Store<T> {
    fn store(&mut self, v: T);
}

impl<T> Store<T> for T {
    #[inline(always)]
    fn store(&mut self, v: T) {
        *self = v;
    }
}

impl<T> Store<T> for MaybeUninit<T> {
    #[inline(always)]
    fn store(&mut self, v: T) {
        self.write(v);
    }
}

/// `dst[i] = f(src[i])`.
#[inline(always)]
pub(crate) fn map1<T: Copy, D: Store<T>>(src: &[T], dst: &mut [D], f: impl Fn(T) -> T) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.store(f(s));
    }
}

#[inline(always)]
fn map2<T: Copy, D: Store<T>>(x: Src<T>, y: Src<T>, dst: &mut [D], f: impl Fn(T, T) -> T) {
    match (x, y) {
        (Src::Slice(a), Src::Slice(b)) => {
            for ((d, &p), &q) in dst.iter_mut().zip(a).zip(b) {
                d.store(f(p, q));
            }
        }
        (Src::Slice(a), Src::Scalar(q)) => map1(a, dst, |p| f(p, q)),
        (Src::Scalar(p), Src::Slice(b)) => map1(b, dst, |q| f(p, q)),
        (Src::Scalar(p), Src::Scalar(q)) => {
            let v = f(p, q);
            dst.iter_mut().for_each(|d| d.store(v));
        }
    }
}

macro_rules! unary_table {
    ($($name:ident),* $(,)?) => {
        /// A unary op of the table (its functor is `math::unary`'s).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Un { $($name),* }

        impl Un {
            fn parse(s: &str) -> Option<Un> {
                match s { $(stringify!($name) => Some(Un::$name),)* _ => None }
            }
        }

        /// `dst[i] = op(src[i])`.
        #[inline(always)]
        pub(crate) fn unary<T: Float, D: Store<T>>(op: Un, src: &[T], dst: &mut [D]) {
            match op { $(Un::$name => map1(src, dst, <uop::$name as UnaryOp>::float::<T>),)* }
        }

        /// `v[i] = op(v[i])`.
        #[inline(always)]
        pub(crate) fn unary_in_place<T: Float>(op: Un, v: &mut [T]) {
            match op {
                $(Un::$name => v.iter_mut().for_each(|x| *x = <uop::$name as UnaryOp>::float(*x)),)*
            }
        }

        /// `op(x)`.
        pub(crate) fn unary1<T: Float>(op: Un, x: T) -> T {
            match op { $(Un::$name => <uop::$name as UnaryOp>::float(x),)* }
        }

        /// Names of the unary ops.
        pub(crate) const UNARY_OPS: &[&str] = &[$(stringify!($name)),*];
    };
}

unary_table! {
    Abs, Neg, Sign, Reciprocal, Inv, Square, Sqrt, Rsqrt, Exp, Expm1, Log, Log1p, Sin, Cos, Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh, Tanh, Sigmoid, Floor, Ceil, Round, Rint, Erf, Erfc, Relu, Relu6, Elu, Selu, Softplus, Softsign,
}

macro_rules! binary_table {
    ($($name:ident),* $(,)?) => {
        /// A binary op of the table (its functor is `math::binary`'s).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Bin { $($name),* }

        impl Bin {
            fn parse(s: &str) -> Option<Bin> {
                match s { $(stringify!($name) => Some(Bin::$name),)* _ => None }
            }
        }

        /// `dst[i] = op(x[i], y[i])` (a scalar operand is broadcast).
        #[inline(always)]
        pub(crate) fn binary<T: Float, D: Store<T>>(op: Bin, x: Src<T>, y: Src<T>, dst: &mut [D]) {
            match op { $(Bin::$name => map2(x, y, dst, <bop::$name as BinaryOp>::float::<T>),)* }
        }

        /// `op(x, y)`.
        pub(crate) fn binary1<T: Float>(op: Bin, x: T, y: T) -> T {
            match op { $(Bin::$name => <bop::$name as BinaryOp>::float::<T>(x, y),)* }
        }

        /// Names of the binary ops.
        pub(crate) const BINARY_OPS: &[&str] = &[$(stringify!($name)),*];
    };
}

binary_table! {
    Add, AddV2, Sub, Mul, Div, RealDiv, DivNoNan, MulNoNan, FloorDiv, FloorMod, Mod,
    TruncateMod, TruncateDiv, Pow, SquaredDifference, Maximum, Minimum, Atan2, Xlogy,
    Xlog1py, Xdivy,
}

pub(crate) use crate::cpu::math::unary::leaky_relu;

/// What an instruction computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Un(Un),
    Bin(Bin),
    /// `LeakyRelu` with its `alpha` (an f32 attr, held exactly).
    LeakyRelu(f32),
}

/// One instruction: `op` over registers `args[..arity]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Instr {
    pub op: Op,
    pub args: [usize; 2],
    pub arity: usize,
}

/// A checked program over `inputs` input registers.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub inputs: usize,
    pub instrs: Vec<Instr>,
}

/// The number of registers and float operands op `name` takes, if the fused kernel has it.
pub fn elementwise_signature(name: &str) -> Option<(usize, usize)> {
    if name == "LeakyRelu" {
        Some((1, 1))
    } else if UNARY_OPS.contains(&name) {
        Some((1, 0))
    } else if BINARY_OPS.contains(&name) {
        Some((2, 0))
    } else {
        None
    }
}

impl Program {
    /// Parses the `ops` attr of a node with `inputs` inputs.
    pub(crate) fn parse(inputs: usize, ops: &[Vec<u8>]) -> Result<Program> {
        if ops.is_empty() {
            return Err(Error::invalid_argument(
                "_FusedElementwise needs at least one instruction in 'ops'",
            ));
        }
        let instrs = ops
            .iter()
            .enumerate()
            .map(|(k, text)| {
                let text = String::from_utf8_lossy(text);
                Self::instr(&text, inputs + k).map_err(|m| {
                    Error::invalid_argument(format!(
                        "_FusedElementwise instruction {k} '{text}': {m}"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Program { inputs, instrs })
    }

    fn instr(text: &str, defined: usize) -> std::result::Result<Instr, String> {
        let mut tokens = text.split_whitespace();
        let name = tokens.next().ok_or("empty instruction")?;
        let op_regs = elementwise_signature(name).ok_or_else(|| {
            format!("op '{name}' is not supported by the fused elementwise kernel")
        })?;
        let rest: Vec<&str> = tokens.collect();
        if rest.len() != op_regs.0 + op_regs.1 {
            return Err(format!(
                "{name} takes {} register(s) and {} float(s), got {} operand(s)",
                op_regs.0,
                op_regs.1,
                rest.len()
            ));
        }
        let mut args = [0usize; 2];
        for (slot, t) in args.iter_mut().zip(&rest[..op_regs.0]) {
            let r: usize = t
                .parse()
                .map_err(|_| format!("'{t}' is not a register number"))?;
            if r >= defined {
                return Err(format!(
                    "register {r} is not defined yet ({defined} registers so far)"
                ));
            }
            *slot = r;
        }
        let op = if let Some(u) = Un::parse(name) {
            Op::Un(u)
        } else if let Some(b) = Bin::parse(name) {
            Op::Bin(b)
        } else {
            let t = rest[1];
            let alpha: f32 = t.parse().map_err(|_| format!("'{t}' is not a float"))?;
            Op::LeakyRelu(alpha)
        };
        Ok(Instr {
            op,
            args,
            arity: op_regs.0,
        })
    }
}
