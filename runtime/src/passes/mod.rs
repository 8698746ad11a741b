//! Graph simplification passes (one per file), each a [`rill_graph::Pass`] that keeps the
//! step's results identical: [`Prune`], [`RemoveIdentity`], [`ConstantFolding`],
//! [`ShapeFolding`], [`AlgebraicSimplification`] and [`CommonSubexpressionElimination`].
//! What they share: `edit` (a consumer index kept up to date while edges are rewired, node
//! removal and rewiring, `Const` creation, re-inference of shapes downstream) and `util`
//! (questions about refs, variables, control flow, feeds and constant values).
//!
//! Invariants (every pass): returns `true` only when it changed the graph, with one
//! [`rill_graph::PassContext::note`] per change; leaves no dangling edge; never removes,
//! renames or changes a fed, fetched or target node (except that constant and shape
//! folding turn a kept single-output node into a `Const` of the same name); treats fed
//! tensors as unknown values; never folds, merges or drops a stateful op except by pruning.

mod algebraic;
mod constant_folding;
mod cse;
mod edit;
mod prune;
mod remove_identity;
mod shape_folding;
#[cfg(test)]
mod test_support;
mod util;

pub use algebraic::AlgebraicSimplification;
pub use constant_folding::ConstantFolding;
pub use cse::CommonSubexpressionElimination;
pub use prune::Prune;
pub use remove_identity::RemoveIdentity;
pub use shape_folding::ShapeFolding;

/// The simplification passes in the order they are meant to run as one group (to a
/// fixpoint): prune first and last, identities away before matching patterns, shapes
/// before constants so shape arithmetic folds.
pub fn simplification_passes() -> Vec<Box<dyn rill_graph::Pass>> {
    vec![
        Box::new(Prune),
        Box::new(RemoveIdentity),
        Box::new(ShapeFolding),
        Box::new(ConstantFolding),
        Box::new(AlgebraicSimplification),
        Box::new(CommonSubexpressionElimination),
        Box::new(Prune),
    ]
}

#[cfg(test)]
mod tests {
    //! The whole group on TensorFlow's own graphs (the fixtures under `tests/fixtures/tf`):
    //! every step computes what the unoptimised graph computes, and a second run of the
    //! group finds nothing left to do.

    use std::path::{Path, PathBuf};

    use rill_graph::{Graph, NodeId, Output, PassContext, PassManager, Tensor};
    use serde_json::Value;

    use super::simplification_passes;
    use crate::testing::{assert_same_results, random_tensor, values_f64};
    use crate::{Session, SessionOptions};

    fn fixtures() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tf");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    fn keys(manifest: &Value, field: &str) -> Vec<String> {
        match &manifest[field] {
            Value::Object(m) => m.keys().cloned().collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => vec![],
        }
    }

    /// Random values for each fed tensor, unknown dims taken as 3.
    fn random_feeds(graph: &Graph, names: &[String]) -> Vec<(String, Tensor)> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let o = graph.output_named(name).unwrap();
                let dims: Vec<usize> = match graph.shape(o).dims() {
                    Some(d) => d.iter().map(|d| d.known().unwrap_or(3)).collect(),
                    None => vec![3],
                };
                let t = random_tensor(graph.dtype(o), &dims, 100 + i as u64).unwrap();
                (name.clone(), t)
            })
            .collect()
    }

    /// Optimises `graph` for a step; returns the graph and whether anything changed.
    fn optimise(graph: &Graph, fed: &[String], fetches: &[String], targets: &[String]) -> Graph {
        let outs = |names: &[String]| -> Vec<Output> {
            names
                .iter()
                .map(|n| graph.output_named(n).unwrap())
                .collect()
        };
        let targets: Vec<NodeId> = targets
            .iter()
            .map(|n| graph.node_named(n).unwrap())
            .collect();
        let mut cx = PassContext::for_step(graph, &outs(fed), &outs(fetches), &targets);
        let manager = PassManager::new()
            .dump_to(None)
            .group("simplify", simplification_passes());
        let mut after = graph.clone();
        manager.run(&mut after, &mut cx).unwrap();
        let again = manager.run(&mut after, &mut cx).unwrap();
        let changes: Vec<_> = again.iter().filter(|r| r.changed).collect();
        assert!(changes.is_empty(), "not a fixpoint: {changes:?}");
        after.validate().unwrap();
        after
    }

    fn as_str(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    /// Runs init, three training steps and the final fetches; returns every value.
    fn train(graph: &Graph, m: &Value, feeds: &[(String, Tensor)]) -> Vec<Vec<f64>> {
        let s = Session::new(graph.clone(), SessionOptions::unoptimized()).unwrap();
        let (init, step, per_step, fin) = (
            keys(m, "init_targets"),
            keys(m, "train_targets"),
            keys(m, "per_step_fetches"),
            keys(m, "final_fetches"),
        );
        let feeds: Vec<(&str, Tensor)> =
            feeds.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
        s.run(&[], &[], &as_str(&init)).unwrap();
        let mut out = vec![];
        for _ in 0..3 {
            let got = s.run(&feeds, &as_str(&per_step), &as_str(&step)).unwrap();
            out.extend(got.iter().map(values_f64));
        }
        let got = s.run(&[], &as_str(&fin), &[]).unwrap();
        out.extend(got.iter().map(values_f64));
        out
    }

    #[test]
    fn tensorflow_graphs_keep_their_results() {
        for dir in fixtures() {
            let text = std::fs::read_to_string(dir.join("fixture.json")).unwrap();
            let m: Value = serde_json::from_str(&text).unwrap();
            let graph = Graph::load(dir.join("graph.pb"), rill_ops::registry()).unwrap();
            let fed = keys(&m, "feeds");
            let feeds = random_feeds(&graph, &fed);
            let before_len = graph.len();
            if m["kind"] == "training" {
                let mut fetches = keys(&m, "per_step_fetches");
                fetches.extend(keys(&m, "final_fetches"));
                let mut targets = keys(&m, "init_targets");
                targets.extend(keys(&m, "train_targets"));
                let after = optimise(&graph, &fed, &fetches, &targets);
                let (a, b) = (train(&graph, &m, &feeds), train(&after, &m, &feeds));
                assert_eq!(a, b, "{}", dir.display());
                assert!(after.len() <= before_len);
            } else {
                let fetches = keys(&m, "fetches");
                let after = optimise(&graph, &fed, &fetches, &[]);
                let feeds: Vec<(&str, Tensor)> =
                    feeds.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
                let fetches: Vec<&str> = fetches.iter().map(String::as_str).collect();
                assert_same_results(&graph, &after, &feeds, &fetches, 1e-6);
                // Calls (lowered by the session) and control flow are left to the executor.
                let has_calls = !graph.library.function.is_empty()
                    || graph
                        .nodes()
                        .any(|(_, n)| crate::control_flow::is_control_flow_op(n.op_name()));
                assert!(
                    after.len() < before_len || (has_calls && after.len() <= before_len),
                    "{}: nothing simplified",
                    dir.display()
                );
            }
        }
    }
}
