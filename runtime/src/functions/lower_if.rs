//! `If` / `StatelessIf` to TF1 `Switch`/`Merge`, as TensorFlow's `LowerIfOp`
//! (lower_if_op.cc):
//!
//! ```text
//! pred          = cond, or Cast(cond -> bool) when cond is not bool (non-zero is true)
//! switch_pred   = Switch(pred, pred)            (waits for the If's control inputs)
//! pivot_f       = Identity(switch_pred:0)       pivot_t = Identity(switch_pred:1)
//! input_i       = Switch(input i, pred)
//! then branch   inlined on input_i:1, under pivot_t (its NoOp input_control_node)
//! else branch   inlined on input_i:0, under pivot_f
//! output_i      = Merge(then result i, else result i)
//! branch_executed = Merge(pivot_t, pivot_f)     (each after its branch's control results)
//! <If name>     = IdentityN(output_i:0 ...) ^branch_executed
//! ```
//!
//! Only the taken branch's nodes get live tensors; the other branch is dead.

use rill_graph::{AttrValue, Attrs, DType, Error, Result};

use super::inline::Call;
use super::{func_attr, node_def, outputs_node, split_inputs, type_attr, Lowerer, Pending};

pub(super) fn lower_if(l: &mut Lowerer, p: Pending) -> Result<()> {
    let node = &p.node;
    let (name, device) = (node.name.as_str(), node.device.as_str());
    let (data, control) = split_inputs(node);
    let Some((cond, inputs)) = data.split_first() else {
        return Err(Error::invalid_argument("If needs a cond input"));
    };
    let (then_fn, then_attrs) = func_attr(node, "then_branch")?;
    let (else_fn, else_attrs) = func_attr(node, "else_branch")?;
    let tcond = type_attr(node, "Tcond");

    let pred = match tcond {
        Some(DType::Bool) | None => cond.clone(),
        Some(DType::String) => {
            return Err(Error::unimplemented(
                "If with a string cond is not supported (its truth is non-emptiness)",
            ))
        }
        Some(t) => {
            let cast = l.fresh_name(&format!("{name}/cond_bool"));
            let attrs = Attrs::from([
                ("SrcT".to_string(), AttrValue::Type(t)),
                ("DstT".to_string(), AttrValue::Type(DType::Bool)),
            ]);
            let n = node_def(&cast, "Cast", vec![cond.clone()], device, attrs);
            l.emit(n, &p.stack);
            cast
        }
    };
    let switch_pred = l.fresh_name(&format!("{name}/switch_pred"));
    let mut input = vec![pred.clone(), pred.clone()];
    input.extend(control.iter().map(|c| format!("^{c}")));
    l.emit(
        node_def(&switch_pred, "Switch", input, device, Attrs::new()),
        &p.stack,
    );
    let pivot_f = l.fresh_name(&format!("{name}/pivot_f"));
    let pivot_t = l.fresh_name(&format!("{name}/pivot_t"));
    for (pivot, port) in [(&pivot_f, 0), (&pivot_t, 1)] {
        let input = vec![format!("{switch_pred}:{port}")];
        l.emit(
            node_def(pivot, "Identity", input, device, Attrs::new()),
            &p.stack,
        );
    }

    let mut then_inputs = Vec::with_capacity(inputs.len());
    let mut else_inputs = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let switch = l.fresh_name(&format!("{name}/input_{i}"));
        l.emit(
            node_def(
                &switch,
                "Switch",
                vec![input.clone(), pred.clone()],
                device,
                Attrs::new(),
            ),
            &p.stack,
        );
        else_inputs.push(switch.clone());
        then_inputs.push(format!("{switch}:1"));
    }

    let then_body = l.inline(&Call {
        function: &then_fn,
        attrs: &then_attrs,
        prefix: &format!("{name}/then"),
        inputs: &then_inputs,
        controls: std::slice::from_ref(&pivot_t),
        device,
        stack: &p.stack,
    })?;
    let else_body = l.inline(&Call {
        function: &else_fn,
        attrs: &else_attrs,
        prefix: &format!("{name}/else"),
        inputs: &else_inputs,
        controls: std::slice::from_ref(&pivot_f),
        device,
        stack: &p.stack,
    })?;
    if then_body.outputs.len() != else_body.outputs.len() {
        return Err(Error::invalid_argument(format!(
            "the branches of If return different numbers of results: '{then_fn}' {}, \
             '{else_fn}' {}",
            then_body.outputs.len(),
            else_body.outputs.len()
        )));
    }
    if let Some(tout) = node.attr.get("Tout").and_then(super::type_list) {
        if tout.len() != then_body.outputs.len() {
            return Err(Error::invalid_argument(format!(
                "If expects {} results (Tout), its branches return {}",
                tout.len(),
                then_body.outputs.len()
            )));
        }
    }

    let mut outputs = Vec::with_capacity(then_body.outputs.len());
    for (i, (t, e)) in then_body.outputs.iter().zip(&else_body.outputs).enumerate() {
        let merge = l.fresh_name(&format!("{name}/output_{i}"));
        l.emit(
            node_def(
                &merge,
                "Merge",
                vec![t.clone(), e.clone()],
                device,
                Attrs::new(),
            ),
            &p.stack,
        );
        outputs.push(merge);
    }
    // Which branch ran, once its side effects are done: a live tensor from that branch.
    let mut done = vec![];
    for (pivot, body, side) in [
        (&pivot_t, &then_body, "then"),
        (&pivot_f, &else_body, "else"),
    ] {
        if body.control_outputs.is_empty() {
            done.push(pivot.clone());
            continue;
        }
        let name = l.fresh_name(&format!("{name}/{side}_done"));
        let mut input = vec![pivot.clone()];
        input.extend(body.control_outputs.iter().map(|c| format!("^{c}")));
        l.emit(
            node_def(&name, "Identity", input, device, Attrs::new()),
            &p.stack,
        );
        done.push(name);
    }
    let branch_executed = l.fresh_name(&format!("{name}/branch_executed"));
    l.emit(
        node_def(&branch_executed, "Merge", done, device, Attrs::new()),
        &p.stack,
    );
    let out = outputs_node(name, device, outputs, &[branch_executed]);
    l.emit(out, &p.stack);
    Ok(())
}
