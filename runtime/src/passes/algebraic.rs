//! [`AlgebraicSimplification`]: rewrites that need no evaluation.
//!
//! - `x*1`, `1*x`, `x+0`, `0+x`, `x-0`, `x/1` (`Mul`, `Add`/`AddV2`, `Sub`,
//!   `RealDiv`/`Div` with an all-ones or all-zeros `Const` operand) become `x`, only when
//!   the result's dtype and fully known shape equal `x`'s (broadcasting must not change
//!   the shape). As in TensorFlow, `-0 + 0` then stays `-0`.
//! - `Transpose(Transpose(x, p1), p2)` becomes `Transpose(x, p1∘p2)`, or `x` when that is
//!   the identity (both perms `Const`).
//! - `Reshape(Reshape(x, s1), s2)` becomes `Reshape(x, s2)`.
//! - `Cast` with `SrcT == DstT`, and `Squeeze`/`ExpandDims`/`Reshape` to the input's own
//!   fully known shape, become `x`.
//!
//! "Becomes `x`": consumers read `x` and inherit the node's control inputs and those of
//! the operands it drops (a dropped non-`Const` operand becomes a control input itself).
//!
//! Invariants: never rewrites a fed, fetched or target node, nor one whose `x` reads a TF1
//! variable or `Ref` (that would move the read); leaves no dangling edge.

use std::collections::HashSet;

use rill_graph::{DType, Graph, Node, NodeId, Output, Pass, PassContext, Result, Tensor};

use super::edit::{add_const, bypass, reinfer_downstream, Uses};
use super::util::{const_value, int_vector, reads_variable};

/// Simplifies arithmetic and layout identities.
pub struct AlgebraicSimplification;

/// One rewrite of a node.
enum Rewrite {
    /// The node's output is `x`; consumers also wait for `extra`.
    Forward {
        x: Output,
        extra: Vec<NodeId>,
        rule: &'static str,
    },
    /// The node reads `x` instead of its first input (and `perm` as its second, for a
    /// transpose), and waits for `extra`.
    Rebase {
        x: Output,
        perm: Option<(Vec<i64>, Vec<NodeId>)>,
        extra: Vec<NodeId>,
        rule: &'static str,
    },
}

impl Pass for AlgebraicSimplification {
    fn name(&self) -> &'static str {
        "algebraic_simplification"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut uses = Uses::of(graph);
        let mut seeds: HashSet<NodeId> = HashSet::new();
        for id in graph.topo_order()? {
            let Some(node) = graph.get(id) else { continue };
            if cx.keeps(&node.name) {
                continue;
            }
            let Some(rewrite) = plan(graph, cx, node) else {
                continue;
            };
            let (name, op) = (node.name.clone(), node.op_name().to_string());
            match rewrite {
                Rewrite::Forward { x, extra, rule } => {
                    let x_name = graph.tensor_name(x);
                    bypass(graph, &mut uses, id, Some(x), &extra)?;
                    seeds.insert(x.node);
                    cx.note(format!("simplified '{name}' ({op}): {rule} -> '{x_name}'"));
                }
                Rewrite::Rebase {
                    x,
                    perm,
                    extra,
                    rule,
                } => {
                    let mut inputs = graph.node(id).inputs.clone();
                    let old: Vec<NodeId> = inputs.iter().map(|o| o.node).collect();
                    inputs[0] = x;
                    if let Some((perm, controls)) = perm {
                        let dtype = graph.dtype(inputs[1]);
                        let Some(value) = int_vector(dtype, &perm) else {
                            continue;
                        };
                        let perm_name = graph.unique_name(&format!("{name}/perm"));
                        let device = graph.node(id).requested_device.clone();
                        let c = add_const(graph, &mut uses, &perm_name, value, controls, device)?;
                        inputs[1] = c.output(0);
                        seeds.insert(c);
                    }
                    let node = graph.node_mut(id);
                    node.inputs = inputs.clone();
                    for c in extra {
                        if c != id && !node.control_inputs.contains(&c) {
                            node.control_inputs.push(c);
                        }
                    }
                    let controls = node.control_inputs.clone();
                    for src in inputs.iter().map(|o| o.node).chain(controls) {
                        uses.add(src, id);
                    }
                    for src in old {
                        uses.drop_if_unused(graph, src, id);
                    }
                    graph.check_input_types(id)?;
                    seeds.insert(x.node);
                    cx.note(format!("simplified '{name}' ({op}): {rule}"));
                }
            }
        }
        if seeds.is_empty() {
            return Ok(false);
        }
        reinfer_downstream(graph, &seeds)?;
        Ok(true)
    }
}

/// The rewrite that applies to `node`, if any.
fn plan(graph: &Graph, cx: &PassContext, node: &Node) -> Option<Rewrite> {
    let input = |i: usize| node.inputs.get(i).copied();
    let forward = |x: Output, extra: Vec<NodeId>, rule| {
        let src = graph.get(x.node)?;
        let ok = graph.dtype(x) == *node.output_types.first()?
            && !reads_variable(graph, x)
            && src.requested_device == node.requested_device;
        ok.then_some(Rewrite::Forward { x, extra, rule })
    };
    let same_shape = |x: Output| {
        let (a, b) = (graph.shape(x), node.output_shapes.first());
        a.is_fully_defined() && Some(a) == b
    };
    let is_all = |o: Output, v: i64| const_value(graph, cx, o).is_some_and(|t| all_equal(&t, v));
    match node.op_name() {
        "Mul" | "Add" | "AddV2" | "Sub" | "RealDiv" | "Div" => {
            let (a, b) = (input(0)?, input(1)?);
            let (unit, rule_r, rule_l) = match node.op_name() {
                "Mul" => (1, "x*1", Some("1*x")),
                "Add" | "AddV2" => (0, "x+0", Some("0+x")),
                "Sub" => (0, "x-0", None),
                _ => (1, "x/1", None),
            };
            if is_all(b, unit) && same_shape(a) {
                return forward(a, dropped(graph, b), rule_r);
            }
            let rule_l = rule_l?;
            (is_all(a, unit) && same_shape(b)).then_some(())?;
            forward(b, dropped(graph, a), rule_l)
        }
        "Cast" => {
            let (src, dst) = (node.attr("SrcT")?.as_type()?, node.attr("DstT")?.as_type()?);
            (src == dst).then_some(())?;
            forward(input(0)?, vec![], "Cast to the same dtype")
        }
        "Squeeze" | "ExpandDims" | "Reshape" if same_shape(input(0)?) => {
            let extra = node.inputs[1..]
                .iter()
                .flat_map(|&o| dropped(graph, o))
                .collect();
            forward(input(0)?, extra, "to the same shape")
        }
        "Reshape" => {
            let inner = graph.get(input(0)?.node)?;
            if inner.op_name() != "Reshape" || inner.inputs.len() != 2 {
                return None;
            }
            let x = inner.inputs[0];
            let mut extra = inner.control_inputs.clone();
            extra.extend(dropped(graph, inner.inputs[1]));
            (!reads_variable(graph, x)).then_some(Rewrite::Rebase {
                x,
                perm: None,
                extra,
                rule: "Reshape(Reshape(x, s1), s2) -> Reshape(x, s2)",
            })
        }
        "Transpose" => {
            let inner = graph.get(input(0)?.node)?;
            if inner.op_name() != "Transpose" || inner.inputs.len() != 2 {
                return None;
            }
            let p1 = perm_of(graph, cx, inner.inputs[1])?;
            let p2 = perm_of(graph, cx, input(1)?)?;
            if p1.len() != p2.len() {
                return None;
            }
            // y[i] = inner[p2[i]] = x[p1[p2[i]]].
            let composed: Vec<i64> = p2.iter().map(|&j| p1[j as usize]).collect();
            let x = inner.inputs[0];
            let mut perm_controls = dropped(graph, inner.inputs[1]);
            perm_controls.extend(dropped(graph, input(1)?));
            let mut extra = inner.control_inputs.clone();
            if composed.iter().enumerate().all(|(i, &p)| p == i as i64) {
                extra.extend(perm_controls);
                return forward(x, extra, "Transpose(Transpose(x, p), inverse of p)");
            }
            (!reads_variable(graph, x)).then_some(Rewrite::Rebase {
                x,
                perm: Some((composed, perm_controls)),
                extra,
                rule: "Transpose(Transpose(x, p1), p2) -> Transpose(x, p1∘p2)",
            })
        }
        _ => None,
    }
}

/// A `Const` permutation of `0..n`.
fn perm_of(graph: &Graph, cx: &PassContext, o: Output) -> Option<Vec<i64>> {
    let p = const_value(graph, cx, o)?.to_i64_vec().ok()?;
    let mut seen = vec![false; p.len()];
    for &i in &p {
        let slot = seen.get_mut(usize::try_from(i).ok()?)?;
        if *slot {
            return None;
        }
        *slot = true;
    }
    Some(p)
}

/// What consumers must keep waiting for when a rewrite stops reading `o`: a `Const`'s
/// control inputs, or the producer itself.
fn dropped(graph: &Graph, o: Output) -> Vec<NodeId> {
    match graph.get(o.node) {
        Some(src) if src.op_name() == "Const" => src.control_inputs.clone(),
        Some(_) => vec![o.node],
        None => vec![],
    }
}

/// Whether every element of `t` equals `v` (float and integer dtypes).
fn all_equal(t: &Tensor, v: i64) -> bool {
    match t.dtype() {
        DType::F32 => t
            .as_slice::<f32>()
            .is_ok_and(|s| s.iter().all(|&x| x == v as f32)),
        DType::F64 => t
            .as_slice::<f64>()
            .is_ok_and(|s| s.iter().all(|&x| x == v as f64)),
        d if d.is_integer() => t.to_i64_vec().is_ok_and(|s| s.iter().all(|&x| x == v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_support::{changed, count, run_pass};
    use crate::testing::{assert_same_results, random_tensor};
    use rill_ops::Builder;

    /// Runs the pass fetching `out` from `x` (fed with random [2,3] floats) and checks
    /// the results did not change; returns the graph after.
    fn check(b: Builder, out: Output) -> (Graph, bool) {
        let name = b.graph().tensor_name(out);
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(AlgebraicSimplification, &mut after, &["x:0"], &[&name], &[]);
        let xv = random_tensor(DType::F32, &[2, 3], 9).unwrap();
        assert_same_results(&before, &after, &[("x:0", xv)], &[&name], 1e-6);
        (after, changed(&records))
    }

    fn input_x(b: &Builder) -> Output {
        b.placeholder("x", DType::F32, [2i64, 3]).unwrap()
    }

    #[test]
    fn arithmetic_identities() {
        let ones = || Tensor::new(&[2, 3], vec![1f32; 6]).unwrap();
        for (op, value, x_left) in [
            ("Mul", ones(), true),
            ("Mul", Tensor::scalar(1f32), false),
            ("AddV2", Tensor::scalar(0f32), true),
            ("Add", Tensor::vector(vec![0f32; 3]), false),
            ("Sub", Tensor::scalar(0f32), true),
            ("RealDiv", Tensor::scalar(1f32), true),
            ("Div", ones(), true),
        ] {
            let b = Builder::new();
            let x = input_x(&b);
            let c = b.constant(value).unwrap();
            let (l, r) = if x_left { (x, c) } else { (c, x) };
            let y = b.op(op).name("y").input(l).input(r).build_output().unwrap();
            let out = b.op("Neg").name("out").input(y).build_output().unwrap();
            let (g, changed) = check(b, out);
            assert!(changed, "{op}");
            assert!(g.find("y").is_none(), "{op}: {g:?}");
        }
    }

    #[test]
    fn no_rewrite_when_broadcasting_changes_the_shape_or_the_value() {
        for (op, value) in [
            ("Mul", Tensor::new(&[2, 2, 3], vec![1f32; 12]).unwrap()),
            ("Mul", Tensor::scalar(2f32)),
            ("Sub", Tensor::scalar(1f32)),
            ("RealDiv", Tensor::scalar(2f32)),
        ] {
            let b = Builder::new();
            let x = input_x(&b);
            let c = b.constant(value).unwrap();
            let y = b.op(op).name("y").input(x).input(c).build_output().unwrap();
            let (g, changed) = check(b, y);
            assert!(!changed && g.find("y").is_some(), "{op}");
        }
        // 0 - x is not x.
        let b = Builder::new();
        let x = input_x(&b);
        let z = b.scalar_f32(0.0).unwrap();
        let y = b
            .op("Sub")
            .name("y")
            .input(z)
            .input(x)
            .build_output()
            .unwrap();
        let out = b.op("Neg").input(y).build_output().unwrap();
        assert!(!check(b, out).1);
    }

    #[test]
    fn transposes_compose() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let x3 = b.reshape_to(x, &[1, 2, 3]).unwrap();
        let t1 = b.transpose_perm(x3, &[1, 2, 0]).unwrap();
        let t2 = b.transpose_perm(t1, &[0, 2, 1]).unwrap();
        let out = b.op("Neg").name("out").input(t2).build_output().unwrap();
        let (g, changed) = check(b, out);
        assert!(changed);
        let on = g.node(g.node_named("out").unwrap());
        let t = g.node(on.inputs[0].node);
        assert_eq!(t.op_name(), "Transpose");
        assert_eq!(g.tensor_name(t.inputs[0]), g.tensor_name(x3));
        // And an inverse pair disappears.
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let t1 = b.transpose_perm(x, &[1, 0]).unwrap();
        let t2 = b.transpose_perm(t1, &[1, 0]).unwrap();
        let out = b.op("Neg").name("out").input(t2).build_output().unwrap();
        let (g, changed) = check(b, out);
        assert!(changed);
        let on = g.node(g.node_named("out").unwrap());
        assert_eq!(g.tensor_name(on.inputs[0]), "x:0");
    }

    #[test]
    fn reshapes_collapse_and_no_op_layout_changes_vanish() {
        let b = Builder::new();
        let x = input_x(&b);
        let r1 = b.reshape_to(x, &[6]).unwrap();
        let r2 = b.reshape_to(r1, &[3, 2]).unwrap();
        let out = b.op("Neg").name("out").input(r2).build_output().unwrap();
        let (g, changed) = check(b, out);
        assert!(changed);
        let on = g.node(g.node_named("out").unwrap());
        let r = g.node(on.inputs[0].node);
        assert_eq!(
            (r.op_name(), g.tensor_name(r.inputs[0])),
            ("Reshape", "x:0".into())
        );

        let b = Builder::new();
        let x = input_x(&b);
        let same = b.reshape_to(x, &[2, 3]).unwrap();
        let e = b.expand_dims(same, 0).unwrap();
        let s = b.squeeze(e, &[0]).unwrap();
        // Squeezing a tensor with no 1-dims changes nothing.
        let s2 = b.squeeze(s, &[]).unwrap();
        let c = b
            .op("Cast")
            .input(s2)
            .attr("DstT", DType::F32)
            .build_output()
            .unwrap();
        let out = b.op("Neg").name("out").input(c).build_output().unwrap();
        let (g, changed) = check(b, out);
        assert!(changed);
        assert_eq!(count(&g, "Cast") + count(&g, "Reshape"), 0, "{g:?}");
        assert_eq!(count(&g, "Squeeze"), 1);
        let on = g.node(g.node_named("out").unwrap());
        // Squeeze(ExpandDims(x)) is x, but each alone changes the shape.
        assert_eq!(g.node(on.inputs[0].node).op_name(), "Squeeze");
    }

    #[test]
    fn never_rewrites_kept_nodes_or_variable_reads() {
        let b = Builder::new();
        let x = input_x(&b);
        let one = b.scalar_f32(1.0).unwrap();
        let y = b
            .op("Mul")
            .name("y")
            .input(x)
            .input(one)
            .build_output()
            .unwrap();
        let (g, rewritten) = check(b, y);
        assert!(!rewritten && g.find("y").is_some());

        let b = Builder::new();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1f32, 2.]))
            .unwrap();
        let c = b
            .op("Cast")
            .input(v)
            .attr("DstT", DType::F32)
            .build_output()
            .unwrap();
        b.op("Neg").name("out").input(c).build().unwrap();
        let mut g = b.into_graph();
        let records = run_pass(AlgebraicSimplification, &mut g, &[], &["out:0"], &[]);
        assert!(!changed(&records));
        assert_eq!(count(&g, "Cast"), 1);
    }
}
