//! `rill inspect`: a summary of a GraphDef — node count, op histogram, placeholders with
//! dtypes and shapes, fetchable sinks, variables, and the ops Rill does not support.
//!
//! Works on the raw GraphDef, so a graph with unsupported ops can still be inspected; the
//! result of a full import (inference included) is reported beside it.

use std::collections::{BTreeMap, HashSet};

use rill_graph::{AttrValue, DType, Graph, OpRegistry, Shape};
use rill_proto::{GraphDef, NodeDef};
use serde::Serialize;

/// A graph input.
#[derive(Debug, Serialize)]
pub struct PlaceholderInfo {
    pub name: String,
    pub dtype: String,
    pub shape: String,
}

/// A variable node.
#[derive(Debug, Serialize)]
pub struct VariableInfo {
    pub name: String,
    pub op: String,
    pub dtype: String,
    pub shape: String,
}

/// What `rill inspect` prints.
#[derive(Debug, Serialize)]
pub struct GraphSummary {
    pub nodes: usize,
    pub producer: i32,
    pub ops: BTreeMap<String, usize>,
    pub placeholders: Vec<PlaceholderInfo>,
    /// Outputs nothing reads: what a user would fetch (`node:0`), or run as a target.
    pub sinks: Vec<String>,
    pub variables: Vec<VariableInfo>,
    pub functions: usize,
    pub unsupported_ops: Vec<String>,
    /// `"ok"`, or why importing the graph fails.
    pub import: String,
}

fn attr(node: &NodeDef, name: &str) -> Option<AttrValue> {
    AttrValue::from_proto(node.attr.get(name)?, None).ok()
}

fn dtype_of(node: &NodeDef) -> String {
    match attr(node, "dtype") {
        Some(AttrValue::Type(d)) => d.to_string(),
        _ => "?".into(),
    }
}

fn shape_of(node: &NodeDef) -> String {
    match attr(node, "shape") {
        Some(AttrValue::Shape(s)) => s.to_string(),
        _ => Shape::unknown().to_string(),
    }
}

/// Summarises `def` against the ops in `registry`.
pub fn summarize(def: &GraphDef, registry: &std::sync::Arc<OpRegistry>) -> GraphSummary {
    let mut ops = BTreeMap::new();
    let mut consumed: HashSet<&str> = HashSet::new();
    for n in &def.node {
        *ops.entry(n.op.clone()).or_insert(0) += 1;
        for i in &n.input {
            let name = i.trim_start_matches('^');
            consumed.insert(name.rsplit_once(':').map_or(name, |(n, _)| n));
        }
    }
    let placeholders = def
        .node
        .iter()
        .filter(|n| n.op == "Placeholder" || n.op == "PlaceholderWithDefault")
        .map(|n| PlaceholderInfo {
            name: format!("{}:0", n.name),
            dtype: dtype_of(n),
            shape: shape_of(n),
        })
        .collect();
    let variables = def
        .node
        .iter()
        .filter(|n| matches!(n.op.as_str(), "VariableV2" | "Variable" | "VarHandleOp"))
        .map(|n| VariableInfo {
            name: n.name.clone(),
            op: n.op.clone(),
            dtype: dtype_of(n),
            shape: shape_of(n),
        })
        .collect();
    let graph = Graph::from_graph_def(def, registry.clone());
    let sinks = def
        .node
        .iter()
        .filter(|n| !consumed.contains(n.name.as_str()))
        .map(|n| {
            let outputs = graph
                .as_ref()
                .ok()
                .and_then(|g| g.find(&n.name).map(|id| g.node(id).num_outputs()));
            match outputs {
                Some(0) => n.name.clone(),
                _ => format!("{}:0", n.name),
            }
        })
        .collect();
    let unsupported_ops = ops
        .keys()
        .filter(|op| registry.get(op).is_none())
        .cloned()
        .collect();
    GraphSummary {
        nodes: def.node.len(),
        producer: def.versions.as_ref().map_or(0, |v| v.producer),
        ops,
        placeholders,
        sinks,
        variables,
        functions: def.library.as_ref().map_or(0, |l| l.function.len()),
        unsupported_ops,
        import: match graph {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        },
    }
}

impl std::fmt::Display for GraphSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "nodes: {} (producer {})", self.nodes, self.producer)?;
        writeln!(f, "ops ({} distinct):", self.ops.len())?;
        let mut by_count: Vec<_> = self.ops.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in by_count {
            writeln!(f, "  {n:>6}  {op}")?;
        }
        writeln!(f, "placeholders:")?;
        for p in &self.placeholders {
            writeln!(f, "  {}  {} {}", p.name, p.dtype, p.shape)?;
        }
        writeln!(f, "variables:")?;
        for v in &self.variables {
            writeln!(f, "  {}  {} {} ({})", v.name, v.dtype, v.shape, v.op)?;
        }
        writeln!(f, "sinks (fetchable outputs and targets):")?;
        for s in &self.sinks {
            writeln!(f, "  {s}")?;
        }
        if self.functions > 0 {
            writeln!(f, "functions: {}", self.functions)?;
        }
        if self.unsupported_ops.is_empty() {
            writeln!(f, "unsupported ops: none")?;
        } else {
            writeln!(f, "unsupported ops: {}", self.unsupported_ops.join(", "))?;
        }
        write!(f, "import: {}", self.import)
    }
}

/// Parses a dtype name as the CLI accepts it.
pub fn parse_dtype(s: &str) -> rill_graph::Result<DType> {
    s.parse()
}
