//! [`Prune`]: dead-code elimination for one step. A node is *needed* when a fetch or a
//! target reaches it through data or control edges, the walk stopping at fed tensors; a
//! node whose outputs are all fed and that is not a target is never needed (a control edge
//! on it is dropped: its values exist before the step starts). Every node that is not
//! needed is removed — stateful ones too, as TensorFlow prunes them — except what the graph
//! must still hold for the step to name its feeds and for its edges to stay valid: a fed
//! node, and (transitively) the inputs of a kept node that is not needed.
//!
//! Invariants: with no fetches and no targets the pass does nothing; it never removes a
//! fed, fetched or target node; it leaves no edge to a removed node.

use std::collections::HashSet;

use rill_graph::{Error, Graph, NodeId, Pass, PassContext, Result};

/// Removes the nodes the step does not need.
pub struct Prune;

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        if cx.fetches.is_empty() && cx.targets.is_empty() {
            return Ok(false);
        }
        let find = |name: &str| {
            graph.find(name).ok_or_else(|| {
                Error::not_found(format!("'{name}' of the step is not a node of the graph"))
            })
        };
        let targets: HashSet<NodeId> = cx.targets.iter().map(|n| find(n)).collect::<Result<_>>()?;
        let fully_fed = |id: NodeId| {
            let node = graph.node(id);
            node.num_outputs() > 0
                && !targets.contains(&id)
                && (0..node.num_outputs()).all(|i| cx.is_fed(graph, id.output(i)))
        };

        // The walk from fetches and targets; `kept` also holds what must stay in the graph
        // without running (feed points).
        let mut needed: HashSet<NodeId> = HashSet::new();
        let mut kept: HashSet<NodeId> = HashSet::new();
        let mut stack: Vec<NodeId> = targets.iter().copied().collect();
        for (name, index) in &cx.fetches {
            let id = find(name)?;
            if cx.fed.contains(&(name.clone(), *index)) {
                kept.insert(id);
            } else {
                stack.push(id);
            }
        }
        for (name, _) in &cx.fed {
            if let Some(id) = graph.find(name) {
                kept.insert(id);
            }
        }
        while let Some(id) = stack.pop() {
            if !needed.insert(id) {
                continue;
            }
            let node = graph.node(id);
            for &o in &node.inputs {
                if cx.is_fed(graph, o) {
                    kept.insert(o.node);
                } else {
                    stack.push(o.node);
                }
            }
            stack.extend(
                node.control_inputs
                    .iter()
                    .copied()
                    .filter(|&c| !fully_fed(c)),
            );
        }

        // What stays without running keeps its inputs, so no edge dangles.
        let mut stack: Vec<NodeId> = kept.iter().copied().collect();
        kept.clear();
        while let Some(id) = stack.pop() {
            if needed.contains(&id) || !kept.insert(id) {
                continue;
            }
            let node = graph.node(id);
            stack.extend(node.inputs.iter().map(|o| o.node));
            stack.extend(node.control_inputs.iter().copied());
        }

        let mut changed = false;
        let mut notes = vec![];
        // Control edges from needed nodes to nodes that are not needed (fully fed ones).
        for &id in &needed {
            let node = graph.node(id);
            let dropped: Vec<NodeId> = node
                .control_inputs
                .iter()
                .copied()
                .filter(|c| !needed.contains(c))
                .collect();
            if dropped.is_empty() {
                continue;
            }
            for c in &dropped {
                notes.push(format!(
                    "dropped control edge '^{}' -> '{}' (its outputs are fed)",
                    graph.node(*c).name,
                    node.name
                ));
            }
            graph
                .node_mut(id)
                .control_inputs
                .retain(|c| !dropped.contains(c));
            changed = true;
        }
        let dead: Vec<NodeId> = graph
            .node_ids()
            .into_iter()
            .filter(|id| !needed.contains(id) && !kept.contains(id))
            .collect();
        for id in dead {
            if let Some(node) = graph.remove_node(id) {
                notes.push(format!("removed '{}' ({})", node.name, node.op_name()));
                changed = true;
            }
        }
        for line in notes {
            cx.note(line);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_support::{changed, count, run_pass};
    use crate::testing::{assert_same_results, random_tensor};
    use rill_graph::{DType, Tensor};
    use rill_ops::Builder;

    #[test]
    fn removes_what_the_fetches_do_not_need() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let two = b.scalar_f32(2.0).unwrap();
        let y = b
            .op("Mul")
            .name("y")
            .input(x)
            .input(two)
            .build_output()
            .unwrap();
        let unused = b.op("Exp").name("unused").input(y).build_output().unwrap();
        b.op("Neg").name("unused2").input(unused).build().unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(Prune, &mut after, &["x:0"], &["y:0"], &[]);
        assert!(changed(&records));
        assert_eq!(after.len(), 3, "{after:?}");
        assert!(after.find("unused").is_none() && after.find("unused2").is_none());
        assert!(records[0].notes.iter().any(|n| n.contains("unused")));
        let xv = random_tensor(DType::F32, &[2, 3], 1).unwrap();
        assert_same_results(&before, &after, &[("x:0", xv)], &["y:0"], 1e-6);
        // A second run finds nothing to do.
        assert!(!changed(&run_pass(
            Prune,
            &mut after,
            &["x:0"],
            &["y:0"],
            &[]
        )));
    }

    #[test]
    fn keeps_what_targets_need_and_drops_unneeded_state() {
        let b = Builder::new();
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1.0f32, 2.0]))
            .unwrap();
        let w = b
            .variable_with_init("w", Tensor::vector(vec![3.0f32, 4.0]))
            .unwrap();
        let one = b.constant(Tensor::vector(vec![1.0f32, 1.0])).unwrap();
        let bump = b.assign_add(v, one).unwrap();
        b.no_op_named("step", &[bump.node]).unwrap();
        // Stateful, but neither the fetch nor the target needs it.
        b.op("Assign")
            .name("reset_w")
            .input(w)
            .input(one)
            .build()
            .unwrap();
        b.initializer("init").unwrap();
        b.identity_named("read", v).unwrap();
        let mut g = b.into_graph();
        let records = run_pass(Prune, &mut g, &[], &[], &["step"]);
        assert!(changed(&records));
        for name in ["step", "v", "AssignAdd"] {
            assert!(g.find(name).is_some(), "{name} was removed: {g:?}");
        }
        for name in ["w", "reset_w", "init", "read", "v/Assign", "w/Assign"] {
            assert!(g.find(name).is_none(), "{name} was kept: {g:?}");
        }
        assert_eq!(count(&g, "VariableV2"), 1);
    }

    #[test]
    fn stops_at_fed_tensors() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [3i64]).unwrap();
        let h = b.op("Exp").name("h").input(x).build_output().unwrap();
        b.op("Sin").name("side").input(h).build().unwrap();
        let y = b.op("Neg").name("y").input(h).build_output().unwrap();
        b.op("Tanh").name("z").input(y).build().unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        // Feeding h: only y and z run, but h stays (it is fed) and so does x, which h
        // reads; the side branch goes.
        assert!(changed(&run_pass(
            Prune,
            &mut after,
            &["h:0"],
            &["z:0"],
            &[]
        )));
        assert_eq!(after.len(), 4, "{after:?}");
        assert!(after.find("side").is_none());
        let hv = random_tensor(DType::F32, &[3], 2).unwrap();
        assert_same_results(&before, &after, &[("h:0", hv)], &["z:0"], 1e-6);
    }

    #[test]
    fn drops_control_edges_on_fully_fed_nodes() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [3i64]).unwrap();
        let y = b.op("Neg").name("y").input(x).build_output().unwrap();
        let z = b.op("Tanh").name("z").input(y).control_input(x.node);
        z.build().unwrap();
        let mut g = b.into_graph();
        let records = run_pass(Prune, &mut g, &["x:0"], &["z:0"], &[]);
        assert!(changed(&records), "{g:?}");
        assert!(g.node(g.node_named("z").unwrap()).control_inputs.is_empty());
        assert!(g.find("x").is_some());
        let xv = random_tensor(DType::F32, &[3], 3).unwrap();
        let want: Vec<f32> = xv
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|v| (-v).tanh())
            .collect();
        let s = crate::Session::new(g, crate::SessionOptions::unoptimized()).unwrap();
        let got = s.run(&[("x:0", xv)], &["z:0"], &[]).unwrap();
        for (g, w) in got[0].as_slice::<f32>().unwrap().iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn does_nothing_without_fetches_or_targets() {
        let b = Builder::new();
        b.scalar_f32(1.0).unwrap();
        let mut g = b.into_graph();
        assert!(!changed(&run_pass(Prune, &mut g, &[], &[], &[])));
        assert_eq!(g.len(), 1);
    }
}
