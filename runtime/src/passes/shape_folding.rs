//! [`ShapeFolding`]: `Shape`, `ShapeN`, `Size` and `Rank` of a tensor whose graph-time
//! shape is fully known (for `Rank`: whose rank is known) become `Const`s of the node's
//! `out_type` (int32 by default); shapes downstream are then inferred again, so a
//! `Reshape` whose shape input became a `Const` gets a known output shape, and
//! [`super::ConstantFolding`] folds the shape arithmetic in between.
//!
//! A fed input is folded too: a feed must match the graph's shape, so a fully known one is
//! exactly what the step will see. Not folded: a fed or (with several outputs) kept node,
//! the shape of a TF1 variable or `Ref` (an `Assign` with `validate_shape=false` can
//! change it), and an int32 result that does not fit. `ShapeN` folds output by output.
//!
//! Invariants: in a graph with TF1 control flow the new `Const` waits for the input's
//! producer (keeping its frame and deadness); no dangling edge is left.

use std::collections::HashSet;

use rill_graph::{DType, Graph, NodeId, Output, Pass, PassContext, Result, Tensor};

use super::edit::{add_const, redirect_output, reinfer_downstream, replace_with_consts, Uses};
use super::util::{any_output_fed, int_scalar, int_vector, is_control_flow, reads_variable};

/// Replaces shape queries with known answers by constants.
pub struct ShapeFolding;

impl Pass for ShapeFolding {
    fn name(&self) -> &'static str {
        "shape_folding"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut uses = Uses::of(graph);
        let control_flow = graph.nodes().any(|(_, n)| is_control_flow(n.op_name()));
        let mut created: HashSet<NodeId> = HashSet::new();
        for id in graph.topo_order()? {
            let Some(node) = graph.get(id) else { continue };
            let op = node.op_name().to_string();
            if !matches!(op.as_str(), "Shape" | "ShapeN" | "Size" | "Rank")
                || any_output_fed(cx, &node.name)
                || (cx.keeps(&node.name) && node.num_outputs() != 1)
                || (!cx.keeps(&node.name) && uses.count(id) == 0)
            {
                continue;
            }
            let out_type = node
                .attr("out_type")
                .and_then(|a| a.as_type())
                .unwrap_or(DType::I32);
            let answers: Vec<Option<Tensor>> = node
                .inputs
                .iter()
                .map(|&o| answer(graph, &op, out_type, o))
                .collect();
            // The input's producer, for a Const that must stay in its frame.
            let anchors: Vec<Option<NodeId>> = node
                .inputs
                .iter()
                .map(|&o| (control_flow && !cx.is_fed(graph, o)).then_some(o.node))
                .collect();
            let name = node.name.clone();
            if answers.iter().all(Option::is_some) {
                let extra: Vec<NodeId> = anchors.iter().flatten().copied().collect();
                let values: Vec<Tensor> = answers.into_iter().flatten().collect();
                let text = values.iter().map(describe).collect::<Vec<_>>().join(", ");
                created.extend(replace_with_consts(graph, &mut uses, id, values, &extra)?);
                cx.note(format!("folded '{name}' ({op}) into the Const {text}"));
                continue;
            }
            // ShapeN with some inputs known: fold those outputs, keep the node.
            let node_controls = node.control_inputs.clone();
            let device = node.requested_device.clone();
            for (i, value) in answers.into_iter().enumerate() {
                let Some(value) = value else { continue };
                if !uses.output_read(graph, id, i) {
                    continue;
                }
                let mut controls = node_controls.clone();
                controls.extend(anchors[i].filter(|a| !controls.contains(a)));
                let c_name = graph.unique_name(&format!("{name}/folded_{i}"));
                let text = describe(&value);
                let c = add_const(graph, &mut uses, &c_name, value, controls, device.clone())?;
                redirect_output(graph, &mut uses, id, i, c.output(0));
                created.insert(c);
                cx.note(format!(
                    "folded output {i} of '{name}' ({op}) into the Const {text}"
                ));
            }
        }
        if created.is_empty() {
            return Ok(false);
        }
        reinfer_downstream(graph, &created)?;
        Ok(true)
    }
}

/// What `op` of input `o` evaluates to, when its graph shape tells.
fn answer(graph: &Graph, op: &str, out_type: DType, o: Output) -> Option<Tensor> {
    if reads_variable(graph, o) || is_control_flow(graph.node(o.node).op_name()) {
        return None;
    }
    let shape = graph.shape(o);
    match op {
        "Shape" | "ShapeN" => {
            let dims = shape.to_known()?;
            let dims: Vec<i64> = dims
                .iter()
                .map(|&d| i64::try_from(d).ok())
                .collect::<Option<_>>()?;
            int_vector(out_type, &dims)
        }
        "Size" => int_scalar(out_type, i64::try_from(shape.num_elements()?).ok()?),
        "Rank" => int_scalar(DType::I32, i64::try_from(shape.rank()?).ok()?),
        _ => None,
    }
}

/// `[2,3]` for a vector, `6` for a scalar.
fn describe(t: &Tensor) -> String {
    let v = t.to_i64_vec().unwrap_or_default();
    if t.rank() == 0 {
        v.first().map_or_else(String::new, i64::to_string)
    } else {
        format!(
            "[{}]",
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_support::{changed, count, run_pass};
    use crate::passes::ConstantFolding;
    use crate::testing::{assert_same_results, random_tensor};
    use rill_graph::PassManager;
    use rill_ops::array::StridedSliceMasks;
    use rill_ops::Builder;

    #[test]
    fn folds_known_shapes_and_makes_a_reshape_shape_known() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3, 4]).unwrap();
        let e = b.op("Exp").name("e").input(x).build_output().unwrap();
        let s = b.shape_of(e).unwrap();
        // shape[1:] -> [3,4] -> prod 12 -> reshape to [-1, 12] ... via arithmetic.
        let tail = b
            .strided_slice_const(s, &[1], &[3], &[1], StridedSliceMasks::default())
            .unwrap();
        let n = b.prod(tail, &[0], false).unwrap();
        let minus = b.scalar_i32(-1).unwrap();
        let shape = b.stack(&[minus, n], 0).unwrap();
        let y = b.reshape(e, shape).unwrap();
        let size = b.size(e).unwrap();
        let rank = b.rank(e).unwrap();
        assert_eq!(b.shape(y).to_string(), "[?,?]");
        let names: Vec<String> = [y, size, rank]
            .iter()
            .map(|&o| b.graph().tensor_name(o))
            .collect();
        let fetches: Vec<&str> = names.iter().map(String::as_str).collect();
        let before = b.into_graph();

        let mut after = before.clone();
        let records = run_pass(ShapeFolding, &mut after, &["x:0"], &fetches, &[]);
        assert!(changed(&records));
        assert_eq!(
            count(&after, "Shape") + count(&after, "Size") + count(&after, "Rank"),
            0
        );
        // Then constant folding does the arithmetic, and the Reshape's shape is known.
        let fed = [after.output_named("x:0").unwrap()];
        let outs: Vec<Output> = fetches
            .iter()
            .map(|n| after.output_named(n).unwrap())
            .collect();
        let mut cx = PassContext::for_step(&after, &fed, &outs, &[]);
        PassManager::new()
            .dump_to(None)
            .group("g", vec![Box::new(ShapeFolding), Box::new(ConstantFolding)])
            .run(&mut after, &mut cx)
            .unwrap();
        assert_eq!(
            count(&after, "StridedSlice") + count(&after, "Prod") + count(&after, "Pack"),
            0
        );
        assert_eq!(
            after
                .shape(after.output_named(&names[0]).unwrap())
                .to_string(),
            "[2,12]"
        );
        let xv = random_tensor(DType::F32, &[2, 3, 4], 6).unwrap();
        assert_same_results(&before, &after, &[("x:0", xv)], &fetches, 1e-6);
    }

    #[test]
    fn leaves_unknown_shapes_and_variables() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        let s = b.shape_of(x).unwrap();
        let r = b.rank(x).unwrap();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1f32, 2.]))
            .unwrap();
        let sv = b.shape_of(v).unwrap();
        let names: Vec<String> = [s, r, sv]
            .iter()
            .map(|&o| b.graph().tensor_name(o))
            .collect();
        let fetches: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut g = b.into_graph();
        let records = run_pass(ShapeFolding, &mut g, &["x:0"], &fetches, &[]);
        // Only the rank of x is known; it is fetched, so it keeps its name.
        assert!(changed(&records));
        assert_eq!(count(&g, "Shape"), 2);
        assert_eq!(count(&g, "Rank"), 0);
        assert_eq!(
            g.node(g.node_named(&names[1].replace(":0", "")).unwrap())
                .op_name(),
            "Const"
        );
    }

    #[test]
    fn shape_n_folds_known_outputs_only() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 5]).unwrap();
        let y = b.placeholder("y", DType::F32, [-1i64]).unwrap();
        let outs = b.shape_n(&[x, y]).unwrap();
        b.op("Neg").name("a").input(outs[0]).build().unwrap();
        b.op("Neg").name("c").input(outs[1]).build().unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(
            ShapeFolding,
            &mut after,
            &["x:0", "y:0"],
            &["a:0", "c:0"],
            &[],
        );
        assert!(changed(&records));
        assert_eq!(count(&after, "ShapeN"), 1);
        let an = after.node(after.node_named("a").unwrap());
        assert_eq!(after.node(an.inputs[0].node).op_name(), "Const");
        let feeds = [
            ("x:0", random_tensor(DType::F32, &[2, 5], 7).unwrap()),
            ("y:0", random_tensor(DType::F32, &[4], 8).unwrap()),
        ];
        assert_same_results(&before, &after, &feeds, &["a:0", "c:0"], 0.0);
    }
}
