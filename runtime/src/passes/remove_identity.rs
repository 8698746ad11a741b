//! [`RemoveIdentity`]: removes the pass-through nodes `Identity`, `StopGradient`,
//! `Snapshot` and `PreventGradient` (identities at run time) and `NoOp`s, where that is
//! safe. A removed identity's data consumers read its input instead and inherit its control
//! inputs; a control edge on it becomes control edges on its input's producer and its
//! control inputs. A removed `NoOp`'s control consumers wait for its control inputs
//! instead, done only when that does not multiply edges:
//! `inputs × consumers <= inputs + consumers + 1`.
//!
//! Invariants: never removes a fed, fetched or target node, an identity that reads a TF1
//! variable or a `Ref` (it is where the variable's value is taken), one whose requested
//! device differs from its input's producer's, one next to TF1 control flow (the pivot
//! after a `Switch`), or a node nothing consumes (pruning's job); leaves no dangling edge.

use rill_graph::{Graph, NodeId, Pass, PassContext, Result};

use super::edit::{bypass, Uses};
use super::util::{has_ref, is_control_flow, reads_variable};

/// Removes identity-like nodes and small-fan `NoOp`s.
pub struct RemoveIdentity;

/// Ops that return their input unchanged when the step runs.
pub(crate) fn is_identity_op(op: &str) -> bool {
    matches!(
        op,
        "Identity" | "StopGradient" | "Snapshot" | "PreventGradient"
    )
}

impl Pass for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove_identity"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut uses = Uses::of(graph);
        let mut changed = false;
        for id in graph.topo_order()? {
            let Some(node) = graph.get(id) else { continue };
            if cx.keeps(&node.name) || uses.count(id) == 0 {
                continue;
            }
            let (name, op) = (node.name.clone(), node.op_name().to_string());
            if is_identity_op(&op) {
                if !identity_removable(graph, &uses, id) {
                    continue;
                }
                let x = node.inputs[0];
                let controls = node.control_inputs.len();
                bypass(graph, &mut uses, id, Some(x), &[])?;
                cx.note(format!(
                    "removed '{name}' ({op}); its consumers read '{}'{}",
                    graph.tensor_name(x),
                    if controls > 0 {
                        format!(" and inherit {controls} control input(s)")
                    } else {
                        String::new()
                    }
                ));
                changed = true;
            } else if op == "NoOp" {
                let (fan_in, fan_out) = (node.control_inputs.len(), uses.count(id));
                if fan_in * fan_out > fan_in + fan_out + 1 {
                    continue;
                }
                bypass(graph, &mut uses, id, None, &[])?;
                cx.note(format!(
                    "removed '{name}' (NoOp); its {fan_out} control consumer(s) wait for its \
                     {fan_in} control input(s)"
                ));
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Whether the identity `id` can go: it reads a plain value on its own device, away from
/// TF1 control flow.
fn identity_removable(graph: &Graph, uses: &Uses, id: NodeId) -> bool {
    let node = graph.node(id);
    let Some(&x) = node.inputs.first() else {
        return false;
    };
    let Some(src) = graph.get(x.node) else {
        return false;
    };
    node.inputs.len() == 1
        && !has_ref(node)
        && !reads_variable(graph, x)
        && src.requested_device == node.requested_device
        && !is_control_flow(src.op_name())
        && !uses
            .of_node(id)
            .any(|k| graph.get(k).is_none_or(|k| is_control_flow(k.op_name())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_support::{changed, count, run_pass};
    use crate::testing::{assert_same_results, random_tensor};
    use rill_graph::{DType, DeviceSpec, Tensor};
    use rill_ops::Builder;

    #[test]
    fn removes_identities_and_keeps_results() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 2]).unwrap();
        let i1 = b.identity(x).unwrap();
        let s = b.stop_gradient(i1).unwrap();
        let sn = b.snapshot(s).unwrap();
        let p = b.prevent_gradient(sn, "no").unwrap();
        let y = b.op("Exp").name("y").input(p).build_output().unwrap();
        b.identity_named("out", y).unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(RemoveIdentity, &mut after, &["x:0"], &["out:0"], &[]);
        assert!(changed(&records));
        assert_eq!(after.len(), 3, "{after:?}");
        // The fetched identity stays.
        assert!(after.find("out").is_some());
        let y_node = after.node(after.node_named("y").unwrap());
        assert_eq!(after.tensor_name(y_node.inputs[0]), "x:0");
        let xv = random_tensor(DType::F32, &[2, 2], 3).unwrap();
        assert_same_results(&before, &after, &[("x:0", xv)], &["out:0"], 1e-6);
    }

    #[test]
    fn forwards_control_inputs_to_consumers() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64]).unwrap();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1.0f32, 2.0]))
            .unwrap();
        let one = b.constant(Tensor::vector(vec![1.0f32, 1.0])).unwrap();
        let bump = b.assign_add(v, one).unwrap();
        let gated = {
            let _scope = b.control_dependencies(&[bump.node]);
            b.identity_named("gated", x).unwrap()
        };
        b.op("Neg").name("y").input(gated).build().unwrap();
        let ctl = b.op("Exp").name("ctl").input(x).control_input(gated.node);
        ctl.build().unwrap();
        let mut g = b.into_graph();
        let records = run_pass(RemoveIdentity, &mut g, &["x:0"], &["y:0", "ctl:0"], &[]);
        assert!(changed(&records));
        assert!(g.find("gated").is_none());
        let bump_id = g.node_named("AssignAdd").unwrap();
        let yn = g.node(g.node_named("y").unwrap());
        assert_eq!(g.tensor_name(yn.inputs[0]), "x:0");
        assert_eq!(yn.control_inputs, vec![bump_id]);
        // A control edge on the identity becomes one on its control inputs (x is already
        // a data input of ctl, so no edge on x is added).
        let cn = g.node(g.node_named("ctl").unwrap());
        assert_eq!(cn.control_inputs, vec![bump_id]);
    }

    #[test]
    fn control_consumer_waits_for_the_input_producer() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64]).unwrap();
        let e = b.op("Exp").name("e").input(x).build_output().unwrap();
        let i = b.identity_named("i", e).unwrap();
        let c = b.scalar_f32(1.0).unwrap();
        let z = b.op("Neg").name("z").input(c).control_input(i.node);
        z.build().unwrap();
        let mut g = b.into_graph();
        run_pass(RemoveIdentity, &mut g, &["x:0"], &["z:0", "e:0"], &[]);
        assert!(g.find("i").is_none());
        let zn = g.node(g.node_named("z").unwrap());
        assert_eq!(zn.control_inputs, vec![g.node_named("e").unwrap()]);
    }

    #[test]
    fn keeps_variable_reads_kept_nodes_and_cross_device_copies() {
        let b = Builder::new();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1.0f32, 2.0]))
            .unwrap();
        let read = b.identity_named("v/read", v).unwrap();
        let x = b.placeholder("x", DType::F32, [2i64]).unwrap();
        let copy = b
            .op("Identity")
            .name("copy")
            .input(x)
            .device(DeviceSpec::parse("/device:GPU:0").unwrap())
            .build_output()
            .unwrap();
        let kept = b.identity_named("kept", x).unwrap();
        let y = b
            .op("AddV2")
            .name("y")
            .input(read)
            .input(copy)
            .build_output()
            .unwrap();
        b.op("AddV2")
            .name("z")
            .input(y)
            .input(kept)
            .build()
            .unwrap();
        let mut g = b.into_graph();
        let records = run_pass(RemoveIdentity, &mut g, &["x:0"], &["z:0", "kept:0"], &[]);
        assert!(!changed(&records), "{g:?}");
        assert_eq!(count(&g, "Identity"), 3);
    }

    #[test]
    fn removes_noops_with_a_small_fan() {
        let b = Builder::new();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1.0f32, 2.0]))
            .unwrap();
        let one = b.constant(Tensor::vector(vec![1.0f32, 1.0])).unwrap();
        let a1 = b.assign_add(v, one).unwrap();
        let a2 = b.assign_add(v, one).unwrap();
        let group = b.no_op_named("group", &[a1.node, a2.node]).unwrap();
        let step = b.no_op_named("step", &[group]).unwrap();
        let mut g = b.into_graph();
        let records = run_pass(RemoveIdentity, &mut g, &[], &[], &["step"]);
        assert!(changed(&records));
        assert!(g.find("group").is_none() && g.find("step").is_some());
        let sn = g.node(step);
        assert_eq!(sn.control_inputs, vec![a1.node, a2.node]);

        // 3 inputs x 3 consumers = 9 > 3 + 3 + 1: the NoOp stays.
        let b = Builder::new();
        let cs: Vec<NodeId> = (0..3)
            .map(|i| b.scalar_f32(i as f32).unwrap().node)
            .collect();
        let hub = b.no_op_named("hub", &cs).unwrap();
        let outs: Vec<String> = (0..3)
            .map(|i| {
                let n = format!("t{i}");
                b.op("NoOp").name(&n).control_input(hub).build().unwrap();
                n
            })
            .collect();
        let mut g = b.into_graph();
        let targets: Vec<&str> = outs.iter().map(String::as_str).collect();
        assert!(!changed(&run_pass(
            RemoveIdentity,
            &mut g,
            &[],
            &[],
            &targets
        )));
        assert!(g.find("hub").is_some());
    }
}
