//! [`ConstantFolding`]: evaluates, with its CPU kernel, every node whose data inputs are
//! all `Const`s (none fed) and replaces its outputs by `Const` nodes. Walking in
//! topological order folds whole constant chains in one run; `Const` inputs left without
//! consumers are removed, and shapes downstream are inferred again (a `Reshape` whose
//! shape input became a `Const` gets a known output shape).
//!
//! A folded node never is: stateful or random, a placeholder, variable, `_Send`/`_Recv`,
//! TF1 control flow, a node with `Ref` inputs or outputs or resource/variant outputs, a fed
//! node, or a kept node with more than one output (a kept node with one output becomes a
//! `Const` of the same name). Outputs larger in total than `max_constant_bytes` are not
//! folded. A kernel error is not a pass failure: the node stays and the step reports the
//! error when it runs.
//!
//! Invariants: the new `Const`s wait for the folded node's control inputs and those of its
//! `Const` inputs (so ordering and TF1 frames are kept); no dangling edge is left.

use std::collections::HashSet;

use rill_graph::{DType, Graph, NodeId, Pass, PassContext, Result, Tensor};
use rill_kernels::{DeviceType, KernelContext, KernelRegistry, ResourceMgr};

use super::edit::{detach, reinfer_downstream, replace_with_consts, Uses};
use super::util::{
    any_output_fed, const_value, has_ref, is_control_flow, is_random, is_source_of_state,
    shape_bytes, tensor_bytes,
};

/// Folds nodes computed from constants into constants.
pub struct ConstantFolding;

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant_folding"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let kernels = rill_kernels::registry();
        let resources = ResourceMgr::new();
        let mut uses = Uses::of(graph);
        let mut created: HashSet<NodeId> = HashSet::new();
        let mut inputs_of_folded: Vec<NodeId> = vec![];
        for id in graph.topo_order()? {
            let Some(inputs) = foldable_inputs(graph, cx, &uses, id) else {
                continue;
            };
            let Some(values) = evaluate(graph, cx, &kernels, &resources, id, inputs) else {
                continue;
            };
            let node = graph.node(id);
            let (name, op) = (node.name.clone(), node.op_name().to_string());
            let mut extra = vec![];
            for o in &node.inputs {
                inputs_of_folded.push(o.node);
                extra.extend(graph.node(o.node).control_inputs.iter().copied());
            }
            let shapes: Vec<String> = values.iter().map(|t| t.shape().to_string()).collect();
            let new = replace_with_consts(graph, &mut uses, id, values, &extra)?;
            cx.note(match shapes.as_slice() {
                [one] => format!("folded '{name}' ({op}) into a Const of shape {one}"),
                _ => format!(
                    "folded '{name}' ({op}) into {} Consts (outputs of shapes {})",
                    new.len(),
                    shapes.join(", ")
                ),
            });
            created.extend(new);
        }
        if created.is_empty() {
            return Ok(false);
        }
        for id in inputs_of_folded {
            let Some(node) = graph.get(id) else { continue };
            if node.op_name() == "Const" && uses.count(id) == 0 && !cx.keeps(&node.name) {
                let name = node.name.clone();
                detach(graph, &mut uses, id)?;
                cx.note(format!("removed '{name}' (Const), no longer used"));
            }
        }
        reinfer_downstream(graph, &created)?;
        Ok(true)
    }
}

/// The values of `id`'s data inputs when the node may be folded.
fn foldable_inputs(
    graph: &Graph,
    cx: &PassContext,
    uses: &Uses,
    id: NodeId,
) -> Option<Vec<Tensor>> {
    let node = graph.get(id)?;
    let op = node.op_name();
    let n = node.num_outputs();
    let kept = cx.keeps(&node.name);
    if op == "Const"
        || node.op.is_stateful
        || is_random(op)
        || is_source_of_state(op)
        || is_control_flow(op)
        || n == 0
        || has_ref(node)
        || node
            .output_types
            .iter()
            .any(|t| matches!(t, DType::Resource | DType::Variant))
        || any_output_fed(cx, &node.name)
        || (kept && n != 1)
        || (!kept && uses.count(id) == 0)
    {
        return None;
    }
    let values = node
        .inputs
        .iter()
        .map(|&o| const_value(graph, cx, o))
        .collect::<Option<Vec<Tensor>>>()?;
    // Skip outputs known to be too large before computing them.
    let known: u64 = node
        .output_types
        .iter()
        .zip(&node.output_shapes)
        .filter_map(|(&t, s)| shape_bytes(t, s))
        .fold(0u64, u64::saturating_add);
    (known <= cx.max_constant_bytes as u64).then_some(values)
}

/// Runs the node's CPU kernel; `None` when there is none, it fails, or its outputs are not
/// what the graph says or too large.
fn evaluate(
    graph: &Graph,
    cx: &PassContext,
    kernels: &KernelRegistry,
    resources: &ResourceMgr,
    id: NodeId,
    inputs: Vec<Tensor>,
) -> Option<Vec<Tensor>> {
    let node = graph.node(id);
    let kernel = kernels.create(node, DeviceType::Cpu).ok()?;
    let outputs = kernel
        .compute(&KernelContext::new(&node.name, resources), inputs)
        .ok()?;
    if outputs.len() != node.num_outputs() {
        return None;
    }
    let mut total = 0usize;
    let mut values = Vec::with_capacity(outputs.len());
    for ((t, &dtype), shape) in outputs
        .into_iter()
        .zip(&node.output_types)
        .zip(&node.output_shapes)
    {
        let t = t.detach();
        if t.dtype() != dtype || !shape.is_compatible_with(&t.shape()) {
            return None;
        }
        total = total.checked_add(tensor_bytes(&t)?)?;
        values.push(t);
    }
    (total <= cx.max_constant_bytes).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_support::{builder_with_random, changed, count, run_pass, run_with};
    use crate::testing::{assert_same_results, random_tensor};
    use rill_graph::Output;
    use rill_ops::Builder;

    fn mul(b: &Builder, name: &str, x: Output, y: Output) -> Output {
        b.op("Mul")
            .name(name)
            .input(x)
            .input(y)
            .build_output()
            .unwrap()
    }

    #[test]
    fn folds_constant_chains_and_keeps_results() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let a = b.constant(Tensor::new(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]).unwrap());
        let two = b.scalar_f32(2.0).unwrap();
        let c = mul(&b, "c", a.unwrap(), two);
        let d = b.op("Exp").name("d").input(c).build_output().unwrap();
        b.op("AddV2").name("y").input(x).input(d).build().unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(ConstantFolding, &mut after, &["x:0"], &["y:0"], &[]);
        assert!(changed(&records));
        // x, the folded d, and y.
        assert_eq!(after.len(), 3, "{after:?}");
        assert_eq!(
            after.node(after.node_named("d").unwrap()).op_name(),
            "Const"
        );
        assert!(records[0]
            .notes
            .iter()
            .any(|n| n.contains("folded 'c' (Mul)")));
        let xv = random_tensor(DType::F32, &[2, 3], 4).unwrap();
        assert_same_results(&before, &after, &[("x:0", xv)], &["y:0"], 1e-6);
    }

    #[test]
    fn respects_the_size_cap() {
        let b = Builder::new();
        let dims = b.constant(Tensor::vector(vec![64i32, 64])).unwrap();
        let one = b.scalar_f32(1.0).unwrap();
        let big = b
            .op("Fill")
            .name("big")
            .input(dims)
            .input(one)
            .build_output()
            .unwrap();
        b.op("Neg").name("y").input(big).build().unwrap();
        let mut g = b.into_graph();
        let fetch = [g.output_named("y:0").unwrap()];
        let mut cx = PassContext::for_step(&g, &[], &fetch, &[]);
        cx.max_constant_bytes = 1000; // 64 * 64 * 4 bytes do not fit
        assert!(!changed(&run_with(ConstantFolding, &mut g, &mut cx)));
        assert_eq!(count(&g, "Fill"), 1);
        cx.max_constant_bytes = 64 * 64 * 4 * 2;
        assert!(changed(&run_with(ConstantFolding, &mut g, &mut cx)));
        assert_eq!(count(&g, "Fill") + count(&g, "Neg"), 0);
    }

    #[test]
    fn never_folds_stateful_random_or_fed_nodes() {
        let b = builder_with_random();
        let shape = b.constant(Tensor::vector(vec![2i32])).unwrap();
        let r = b
            .op("RandomUniform")
            .name("r")
            .input(shape)
            .attr("dtype", DType::F32)
            .build_output()
            .unwrap();
        b.op("Neg").name("r2").input(r).build().unwrap();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1f32, 2.]))
            .unwrap();
        let one = b.constant(Tensor::vector(vec![1f32, 1.])).unwrap();
        let bump = b.assign_add(v, one).unwrap();
        b.identity_named("read", bump).unwrap();
        let c = b.scalar_f32(3.0).unwrap();
        let fed = b.op("Neg").name("fed").input(c).build_output().unwrap();
        b.op("Exp").name("z").input(fed).build().unwrap();
        let mut g = b.into_graph();
        let records = run_pass(
            ConstantFolding,
            &mut g,
            &["fed:0"],
            &["r2:0", "read:0", "z:0"],
            &[],
        );
        assert!(!changed(&records), "{g:?}");
        for (name, op) in [
            ("r", "RandomUniform"),
            ("AssignAdd", "AssignAdd"),
            ("fed", "Neg"),
        ] {
            assert_eq!(g.node(g.node_named(name).unwrap()).op_name(), op);
        }
    }

    #[test]
    fn kernel_errors_leave_the_node() {
        let b = Builder::new();
        let x = b.constant(Tensor::vector(vec![1f32, 2., 3.])).unwrap();
        let bad = b.constant(Tensor::vector(vec![2i32, 2])).unwrap();
        let r = b.reshape(x, bad);
        // The shape function may already reject it; if not, folding must leave it.
        if let Ok(r) = r {
            let name = b.graph().tensor_name(r);
            let mut g = b.into_graph();
            run_pass(ConstantFolding, &mut g, &[], &[&name], &[]);
            assert_eq!(count(&g, "Reshape"), 1);
        }
    }

    #[test]
    fn a_kept_node_keeps_its_name() {
        let b = Builder::new();
        let a = b.constant(Tensor::vector(vec![1i32, 2, 3])).unwrap();
        b.op("Neg").name("s").input(a).build().unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(ConstantFolding, &mut after, &[], &["s:0"], &[]);
        assert!(changed(&records));
        assert_eq!(after.len(), 1);
        assert_eq!(
            after.node(after.node_named("s").unwrap()).op_name(),
            "Const"
        );
        assert_same_results(&before, &after, &[], &["s:0"], 0.0);
    }

    #[test]
    fn the_const_keeps_control_inputs() {
        let b = Builder::new();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1f32, 2.]))
            .unwrap();
        let one = b.constant(Tensor::vector(vec![1f32, 1.])).unwrap();
        let bump = b.assign_add(v, one).unwrap();
        let c = b.constant(Tensor::vector(vec![3f32, 4.])).unwrap();
        let n = b.op("Neg").name("n").input(c).control_input(bump.node);
        let n = n.build_output().unwrap();
        b.op("Exp").name("out").input(n).build().unwrap();
        let mut g = b.into_graph();
        assert!(changed(&run_pass(
            ConstantFolding,
            &mut g,
            &[],
            &["out:0"],
            &[]
        )));
        let folded = g.node(g.node_named("out").unwrap());
        assert_eq!(folded.op_name(), "Const");
        assert_eq!(folded.control_inputs, vec![bump.node]);
    }

    #[test]
    fn folds_multi_output_nodes_and_shape_arithmetic() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 6]).unwrap();
        let v = b.constant(Tensor::vector(vec![4i32, 2, 3])).unwrap();
        let parts = b
            .op("Unpack")
            .input(v)
            .attr("num", 3i64)
            .build_outputs()
            .unwrap();
        let rest = b.stack(&[parts[1], parts[2]], 0).unwrap();
        let prod = b.prod(rest, &[0], false).unwrap();
        let minus = b.scalar_i32(-1).unwrap();
        let shape = b.stack(&[minus, prod], 0).unwrap();
        let y = b.reshape(x, shape).unwrap();
        assert_eq!(b.shape(y).to_string(), "[?,?]");
        let y_name = b.graph().tensor_name(y);
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(ConstantFolding, &mut after, &["x:0"], &[&y_name], &[]);
        assert!(changed(&records));
        assert_eq!(
            count(&after, "Unpack") + count(&after, "Pack") + count(&after, "Prod"),
            0
        );
        assert_eq!(
            after
                .shape(after.output_named(&y_name).unwrap())
                .to_string(),
            "[?,6]"
        );
        let xv = random_tensor(DType::F32, &[2, 6], 5).unwrap();
        assert_same_results(&before, &after, &[("x:0", xv)], &[&y_name], 1e-6);
    }
}
