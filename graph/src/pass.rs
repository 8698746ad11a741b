//! The pass framework: a [`Pass`] rewrites a graph and says whether it changed it; a
//! [`PassManager`] runs groups of passes to a fixpoint, validates the graph after every
//! pass in debug builds, records what each pass did, and with `RILL_DUMP_GRAPHS=DIR` writes
//! the graph after every pass that changed it as `DIR/NNN_<group>_<pass>.pbtxt`.
//!
//! Invariants: a pass keeps the step's results identical. It never removes or renames a
//! node [`PassContext::keeps`] (feeds, fetches and targets are named by the caller), and
//! changes such a node's op only by replacing it with one of the same name computing the
//! same outputs (a folded `Const`, a fused node); it treats a fed tensor ([`PassContext::fed`]) as an unknown value; it
//! never folds, merges or drops a stateful op except by pruning what the step does not need.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Output};

/// One rewrite of a graph.
pub trait Pass: Send + Sync {
    /// A short name, used in logs and dump file names (`constant_folding`).
    fn name(&self) -> &'static str;
    /// Rewrites `graph`; returns whether anything changed.
    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool>;
}

/// What passes know about the step being optimised, and where they report.
#[derive(Debug, Clone, Default)]
pub struct PassContext {
    /// Tensors the caller feeds, by (node name, output index): their values are unknown.
    pub fed: HashSet<(String, usize)>,
    /// Tensors the caller fetches, by (node name, output index).
    pub fetches: Vec<(String, usize)>,
    /// Nodes the caller runs for their effects.
    pub targets: Vec<String>,
    /// Largest constant (in bytes) that constant folding may create.
    pub max_constant_bytes: usize,
    /// Lines describing what the running pass changed; the manager moves them into the
    /// pass's [`PassRecord`].
    pub notes: Vec<String>,
}

impl PassContext {
    /// A context for the step that feeds `fed`, fetches `fetches` and runs `targets`.
    pub fn for_step(
        graph: &Graph,
        fed: &[Output],
        fetches: &[Output],
        targets: &[NodeId],
    ) -> PassContext {
        let key = |o: &Output| (graph.node(o.node).name.clone(), o.index);
        PassContext {
            fed: fed.iter().map(key).collect(),
            fetches: fetches.iter().map(key).collect(),
            targets: targets
                .iter()
                .map(|&t| graph.node(t).name.clone())
                .collect(),
            max_constant_bytes: 10 << 20,
            notes: vec![],
        }
    }

    /// Whether a pass must leave the node `name` in place (it is fed, fetched or a target).
    pub fn keeps(&self, name: &str) -> bool {
        self.fed.iter().any(|(n, _)| n == name)
            || self.fetches.iter().any(|(n, _)| n == name)
            || self.targets.iter().any(|n| n == name)
    }

    /// Whether output `o` of `graph` is fed.
    pub fn is_fed(&self, graph: &Graph, o: Output) -> bool {
        self.fed
            .contains(&(graph.node(o.node).name.clone(), o.index))
    }

    /// Records one line about what the running pass changed.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }
}

/// What one run of one pass did.
#[derive(Debug, Clone)]
pub struct PassRecord {
    pub group: String,
    pub pass: String,
    pub changed: bool,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub notes: Vec<String>,
}

/// Runs groups of passes, each to a fixpoint.
#[derive(Default)]
pub struct PassManager {
    groups: Vec<(String, Vec<Box<dyn Pass>>)>,
    /// Most rounds a group runs before the manager stops it (a guard against passes that
    /// undo each other).
    pub max_rounds: usize,
    dump_dir: Option<PathBuf>,
}

impl PassManager {
    /// An empty manager; `RILL_DUMP_GRAPHS` in the environment turns dumping on.
    pub fn new() -> PassManager {
        PassManager {
            groups: vec![],
            max_rounds: 8,
            dump_dir: std::env::var_os("RILL_DUMP_GRAPHS").map(PathBuf::from),
        }
    }

    /// Adds a group: its passes run in order, again and again until none changes the graph.
    pub fn group(mut self, name: &str, passes: Vec<Box<dyn Pass>>) -> PassManager {
        self.groups.push((name.to_string(), passes));
        self
    }

    /// Writes dumps to `dir` instead of `RILL_DUMP_GRAPHS`.
    pub fn dump_to(mut self, dir: Option<PathBuf>) -> PassManager {
        self.dump_dir = dir;
        self
    }

    /// Runs every group on `graph`; returns one record per pass run.
    pub fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<Vec<PassRecord>> {
        let mut records = vec![];
        let mut dumped = 0usize;
        if let Some(dir) = &self.dump_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::invalid_argument(format!("cannot create {}: {e}", dir.display()))
            })?;
            dump(graph, dir, &format!("{dumped:03}_input"))?;
        }
        for (group, passes) in &self.groups {
            for _ in 0..self.max_rounds.max(1) {
                let mut changed_any = false;
                for pass in passes {
                    let nodes_before = graph.len();
                    cx.notes.clear();
                    let changed = pass.run(graph, cx).map_err(|e| {
                        Error::new(e.code, format!("pass {}: {}", pass.name(), e.message))
                    })?;
                    if changed && cfg!(debug_assertions) {
                        graph.validate().map_err(|e| {
                            Error::internal(format!(
                                "pass {} left an invalid graph: {}",
                                pass.name(),
                                e.message
                            ))
                        })?;
                    }
                    if changed {
                        dumped += 1;
                        if let Some(dir) = &self.dump_dir {
                            dump(graph, dir, &format!("{dumped:03}_{group}_{}", pass.name()))?;
                        }
                    }
                    changed_any |= changed;
                    records.push(PassRecord {
                        group: group.clone(),
                        pass: pass.name().to_string(),
                        changed,
                        nodes_before,
                        nodes_after: graph.len(),
                        notes: std::mem::take(&mut cx.notes),
                    });
                }
                if !changed_any {
                    break;
                }
            }
        }
        Ok(records)
    }
}

/// Writes `graph` as `dir/stem.pbtxt`.
pub fn dump(graph: &Graph, dir: &std::path::Path, stem: &str) -> Result<()> {
    let path = dir.join(format!("{stem}.pbtxt"));
    std::fs::write(&path, graph.to_text()?)
        .map_err(|e| Error::invalid_argument(format!("cannot write {}: {e}", path.display())))
}

impl Graph {
    /// Points every data input that reads `old` at `new` instead; returns how many changed.
    pub fn replace_uses(&mut self, old: Output, new: Output) -> usize {
        let mut n = 0;
        for node in self.nodes.iter_mut().flatten() {
            for input in &mut node.inputs {
                if *input == old {
                    *input = new;
                    n += 1;
                }
            }
        }
        n
    }

    /// Points every control edge from `old` at each of `new` instead.
    pub fn replace_control_uses(&mut self, old: NodeId, new: &[NodeId]) {
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            let Some(node) = slot else { continue };
            if let Some(at) = node.control_inputs.iter().position(|&c| c == old) {
                node.control_inputs.remove(at);
                for &n in new {
                    if n.index() != i && !node.control_inputs.contains(&n) {
                        node.control_inputs.push(n);
                    }
                }
            }
        }
    }
}
