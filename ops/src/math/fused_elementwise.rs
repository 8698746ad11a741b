//! `_FusedElementwise` (Rill's own internal op): a chain or tree of elementwise float ops
//! evaluated in one pass over memory. The fusion pass creates it; users never do.
//!
//! Signature: `inputs: N * T -> y: T`, attrs `N: int >= 1`, `T: {bfloat16, half, float,
//! double}`, `ops: list(string) >= 1` (the program).
//!
//! Program encoding: registers `0..N` hold the inputs; each string of `ops` is one
//! instruction that appends a register (the `k`-th instruction defines register `N + k`),
//! written as space-separated tokens `"<Op> <reg> [<reg>] [<float>]"`:
//! - a unary op names one register: `"Relu 2"`;
//! - a binary op names two, in the op's input order: `"Sub 0 3"` is `r0 - r3`;
//! - an op with a float attr takes it last, as an `f32` written with a `.` or an exponent
//!   (Rust's `{:?}`, which parses back to the same value): `"LeakyRelu 4 0.2"` (its
//!   `alpha`), `"LeakyRelu 4 1.0"`. A token of digits only is a register.
//!
//! Each instruction reads only registers defined before it. The last register is the
//! output. Every op is the TensorFlow op of that name, applied with broadcasting; so `y`
//! has the broadcast shape of all inputs (TensorFlow's rules), and results are exactly
//! those of the unfused ops (f16/bf16 round to `T` after every instruction, as separate
//! ops do). Example, inputs `(x, b)`: `["AddV2 0 1", "Relu 2", "Mul 3 0"]` is
//! `Relu(x + b) * x`. Which op names a kernel supports is the kernel's business; this
//! module checks only the syntax and register numbering.
//!
//! Not differentiable: fusion runs after gradients are built.

use rill_graph::{InferenceContext, OpDef, Result, Shape};

use super::common::FLOAT;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("_FusedElementwise")
            .input("inputs: N * T")
            .output("y: T")
            .attr("N: int >= 1")
            .attr(&format!("T: {{{FLOAT}}}"))
            .attr("ops: list(string) >= 1")
            .shape_fn(fused_elementwise_shape),
    )?;
    r.no_gradient("_FusedElementwise")
}

/// Checks one instruction's syntax: an op name, then register numbers below `defined`,
/// then at most one float. Returns a message on error.
pub(crate) fn check_instruction(text: &str, defined: usize) -> std::result::Result<(), String> {
    let mut tokens = text.split_whitespace();
    let op = tokens.next().ok_or("empty instruction")?;
    if !op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("'{op}' is not an op name"));
    }
    let (mut regs, mut floats) = (0, 0);
    for t in tokens {
        if floats == 0 && t.bytes().all(|b| b.is_ascii_digit()) {
            let r: usize = t.parse().map_err(|_| format!("bad register '{t}'"))?;
            if r >= defined {
                return Err(format!(
                    "register {r} is not defined yet ({defined} registers so far)"
                ));
            }
            regs += 1;
        } else if t.parse::<f32>().is_ok() {
            floats += 1;
        } else {
            return Err(format!("'{t}' is neither a register nor a float"));
        }
    }
    if regs == 0 || regs > 2 || floats > 1 {
        return Err("an instruction names one or two registers and at most one float".into());
    }
    Ok(())
}

fn fused_elementwise_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let n = cx.num_inputs();
    let program = cx
        .attr("ops")?
        .as_string_list()
        .ok_or_else(|| cx.error("attr 'ops' must be a list(string)".into()))?;
    for (k, text) in program.iter().enumerate() {
        let text = String::from_utf8_lossy(text);
        check_instruction(&text, n + k)
            .map_err(|m| cx.error(format!("_FusedElementwise instruction {k} '{text}': {m}")))?;
    }
    let mut out = Shape::scalar();
    for i in 0..n {
        let s = cx.input(i)?;
        out = out.broadcast(s).map_err(|_| {
            cx.error(format!(
                "incompatible shapes: '{}' has shape {s}, which does not broadcast with {out} \
                 (the broadcast of the inputs before it)",
                cx.input_names[i]
            ))
        })?;
    }
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType};

    fn program(n: i64, ops: &[&str]) -> rill_graph::Attrs {
        attrs(&[
            ("T", DType::F32.into()),
            ("N", AttrValue::Int(n)),
            (
                "ops",
                AttrValue::StringList(ops.iter().map(|s| s.as_bytes().to_vec()).collect()),
            ),
        ])
    }

    #[test]
    fn shape_is_the_broadcast_of_all_inputs() {
        let p = program(3, &["Mul 0 1", "Relu 3", "AddV2 4 2"]);
        assert_eq!(
            infer("_FusedElementwise", &p, "[2,1,3];[4,1];[3]").unwrap(),
            "[2,4,3]"
        );
        assert_eq!(infer("_FusedElementwise", &p, "[?,3];[1];?").unwrap(), "?");
        assert_eq!(
            infer("_FusedElementwise", &program(1, &["Neg 0", "Exp 1"]), "[5]").unwrap(),
            "[5]"
        );
        let e = infer("_FusedElementwise", &p, "[2,3];[4];[3]").unwrap_err();
        assert!(e.message.contains("in1:0"), "{e}");
    }

    #[test]
    fn programs_are_checked() {
        for bad in [
            vec!["Relu 1"],
            vec!["Add 0 5"],
            vec![""],
            vec!["Add 0 0 0"],
            vec!["Relu x"],
            vec!["LeakyRelu 0 0.2 0.3"],
        ] {
            let e = infer("_FusedElementwise", &program(1, &bad), "[2]").unwrap_err();
            assert!(e.message.contains("instruction 0"), "{bad:?}: {e}");
        }
        assert!(infer("_FusedElementwise", &program(1, &[]), "[2]").is_err());
        assert_eq!(
            infer(
                "_FusedElementwise",
                &program(1, &["LeakyRelu 0 0.2", "Mul 1 0"]),
                "[2]"
            )
            .unwrap(),
            "[2]"
        );
    }
}
