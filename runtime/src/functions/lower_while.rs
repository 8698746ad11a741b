//! `While` / `StatelessWhile` to a TF1 loop frame, as TensorFlow's `LowerWhileOp`
//! (lower_while_op.cc). For each loop variable `i` (frame `<While name>/while_context`):
//!
//! ```text
//! enter_i     = Enter(input i)   frame_name, is_constant false, parallel_iterations copied
//! merge_i     = Merge(enter_i, next_iteration_i)
//! cond        inlined on merge_i:0 (under merge_0, so its constants are in the frame);
//!             Cast to bool when the cond function's result is not bool
//! loop_cond   = LoopCond(cond result)
//! switch_i    = Switch(merge_i, loop_cond)
//! exit_i      = Exit(switch_i:0)
//! body_in_i   = Identity(switch_i:1)
//! body        inlined on body_in_i (under body_in_0)
//! next_iteration_i = NextIteration(body result i)   (after the body's control results)
//! <While name> = IdentityN(exit_i ...)
//! ```

use rill_graph::{AttrValue, Attrs, DType, Error, Result};

use super::inline::Call;
use super::{func_attr, node_def, outputs_node, split_inputs, type_list, Lowerer, Pending};

pub(super) fn lower_while(l: &mut Lowerer, p: Pending) -> Result<()> {
    let node = &p.node;
    let (name, device) = (node.name.as_str(), node.device.as_str());
    let (inputs, control) = split_inputs(node);
    let (cond_fn, cond_attrs) = func_attr(node, "cond")?;
    let (body_fn, body_attrs) = func_attr(node, "body")?;
    let types = node.attr.get("T").and_then(type_list);
    if let Some(t) = &types {
        if t.len() != inputs.len() {
            return Err(Error::invalid_argument(format!(
                "While has {} inputs but attr T lists {} dtypes",
                inputs.len(),
                t.len()
            )));
        }
    }
    if inputs.is_empty() {
        return Err(Error::unimplemented(
            "a While without loop variables is not supported",
        ));
    }
    let parallel_iterations = node
        .attr
        .get("parallel_iterations")
        .and_then(|v| AttrValue::from_proto(v, Some("int")).ok())
        .and_then(|v| v.as_int())
        .unwrap_or(10);
    let frame = format!("{name}/while_context");
    let typed = |i: usize| -> Attrs {
        match &types {
            Some(t) => Attrs::from([("T".to_string(), AttrValue::Type(t[i]))]),
            None => Attrs::new(),
        }
    };

    let n = inputs.len();
    let mut merges = Vec::with_capacity(n);
    let mut next_names = Vec::with_capacity(n);
    for (i, input) in inputs.iter().enumerate() {
        let enter = l.fresh_name(&format!("{name}/enter_{i}"));
        let mut attrs = typed(i);
        attrs.insert("frame_name".into(), AttrValue::String(frame.clone().into()));
        attrs.insert("is_constant".into(), AttrValue::Bool(false));
        attrs.insert(
            "parallel_iterations".into(),
            AttrValue::Int(parallel_iterations),
        );
        let mut enter_input = vec![input.clone()];
        enter_input.extend(control.iter().map(|c| format!("^{c}")));
        l.emit(
            node_def(&enter, "Enter", enter_input, device, attrs),
            &p.stack,
        );
        let merge = l.fresh_name(&format!("{name}/merge_{i}"));
        let next = l.fresh_name(&format!("{name}/next_iteration_{i}"));
        let mut attrs = typed(i);
        attrs.insert("N".into(), AttrValue::Int(2));
        l.emit(
            node_def(&merge, "Merge", vec![enter, next.clone()], device, attrs),
            &p.stack,
        );
        merges.push(merge);
        next_names.push(next);
    }

    let cond = l.inline(&Call {
        function: &cond_fn,
        attrs: &cond_attrs,
        prefix: &format!("{name}/cond"),
        inputs: &merges,
        controls: std::slice::from_ref(&merges[0]),
        device,
        stack: &p.stack,
    })?;
    let (Some(cond_out), 1) = (cond.outputs.first(), cond.outputs.len()) else {
        return Err(Error::invalid_argument(format!(
            "the cond function '{cond_fn}' of While must return one tensor, it returns {}",
            cond.outputs.len()
        )));
    };
    let pred = match cond.output_types[0] {
        Some(DType::Bool) | None => cond_out.clone(),
        Some(DType::String) => {
            return Err(Error::unimplemented(
                "a While cond returning a string is not supported",
            ))
        }
        Some(t) => {
            let cast = l.fresh_name(&format!("{name}/cond_bool"));
            let attrs = Attrs::from([
                ("SrcT".to_string(), AttrValue::Type(t)),
                ("DstT".to_string(), AttrValue::Type(DType::Bool)),
            ]);
            l.emit(
                node_def(&cast, "Cast", vec![cond_out.clone()], device, attrs),
                &p.stack,
            );
            cast
        }
    };
    let loop_cond = l.fresh_name(&format!("{name}/loop_cond"));
    let mut input = vec![pred];
    input.extend(cond.control_outputs.iter().map(|c| format!("^{c}")));
    l.emit(
        node_def(&loop_cond, "LoopCond", input, device, Attrs::new()),
        &p.stack,
    );

    let mut exits = Vec::with_capacity(n);
    let mut body_inputs = Vec::with_capacity(n);
    for (i, merge) in merges.iter().enumerate() {
        let switch = l.fresh_name(&format!("{name}/switch_{i}"));
        l.emit(
            node_def(
                &switch,
                "Switch",
                vec![merge.clone(), loop_cond.clone()],
                device,
                typed(i),
            ),
            &p.stack,
        );
        let exit = l.fresh_name(&format!("{name}/exit_{i}"));
        l.emit(
            node_def(&exit, "Exit", vec![switch.clone()], device, typed(i)),
            &p.stack,
        );
        exits.push(exit);
        let body_in = l.fresh_name(&format!("{name}/body_in_{i}"));
        l.emit(
            node_def(
                &body_in,
                "Identity",
                vec![format!("{switch}:1")],
                device,
                typed(i),
            ),
            &p.stack,
        );
        body_inputs.push(body_in);
    }

    let body = l.inline(&Call {
        function: &body_fn,
        attrs: &body_attrs,
        prefix: &format!("{name}/body"),
        inputs: &body_inputs,
        controls: std::slice::from_ref(&body_inputs[0]),
        device,
        stack: &p.stack,
    })?;
    if body.outputs.len() != n {
        return Err(Error::invalid_argument(format!(
            "the body function '{body_fn}' of While returns {} tensors for {n} loop variables",
            body.outputs.len()
        )));
    }
    for (i, (out, next)) in body.outputs.iter().zip(&next_names).enumerate() {
        let mut input = vec![out.clone()];
        input.extend(body.control_outputs.iter().map(|c| format!("^{c}")));
        l.emit(
            node_def(next, "NextIteration", input, device, typed(i)),
            &p.stack,
        );
    }
    let out = outputs_node(name, device, exits, &[]);
    l.emit(out, &p.stack);
    Ok(())
}
