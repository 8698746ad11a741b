//! `rill inspect --passes` and `--memory`: what the compiler does to a step of a graph —
//! each pass's changes, and the memory plan (planned peak, the naive sum of all tensors
//! and the lower bound) for given feed shapes.
//!
//! The step feeds every placeholder (with the shape given by `--shape`, else its own fully
//! known shape) and fetches the requested tensors, or every sink when none are named.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{bail, Context, Result};
use rill_graph::Graph;
use rill_runtime::memory::MemoryPlan;
use rill_runtime::{Session, SessionOptions};

/// A step to inspect: feeds with their dims, fetches.
pub struct InspectStep {
    pub feeds: Vec<(String, Vec<usize>)>,
    pub fetches: Vec<String>,
}

/// Parses `x:0=8,784` into a tensor name and dims.
pub fn parse_shape_arg(arg: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = arg
        .split_once('=')
        .with_context(|| format!("--shape '{arg}' must look like x:0=8,784"))?;
    let dims = if dims.trim().is_empty() {
        vec![]
    } else {
        dims.split(',')
            .map(|d| d.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("--shape '{arg}': dims must be non-negative integers"))?
    };
    let name = if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:0")
    };
    Ok((name, dims))
}

impl InspectStep {
    /// The step for `graph` given `--shape` and `--fetch` arguments.
    pub fn new(graph: &Graph, shapes: &[String], fetches: &[String]) -> Result<InspectStep> {
        let given: BTreeMap<String, Vec<usize>> = shapes
            .iter()
            .map(|s| parse_shape_arg(s))
            .collect::<Result<_>>()?;
        let mut feeds = vec![];
        for (id, node) in graph.nodes() {
            if node.op_name() != "Placeholder" {
                continue;
            }
            let name = graph.tensor_name(id.output(0));
            let dims = match given.get(&name) {
                Some(d) => d.clone(),
                None => match graph.shape(id.output(0)).to_known() {
                    Some(d) => d,
                    None => bail!(
                        "placeholder {name} has shape {}; give its dims with --shape {name}=...",
                        graph.shape(id.output(0))
                    ),
                },
            };
            feeds.push((name, dims));
        }
        for name in given.keys() {
            if !feeds.iter().any(|(n, _)| n == name) {
                feeds.push((name.clone(), given[name].clone()));
            }
        }
        let fetches = if fetches.is_empty() {
            sinks(graph)
        } else {
            fetches.to_vec()
        };
        if fetches.is_empty() {
            bail!("the graph has no output to fetch; name one with --fetch");
        }
        Ok(InspectStep { feeds, fetches })
    }

    pub(crate) fn names(&self) -> (Vec<&str>, Vec<&str>) {
        (
            self.feeds.iter().map(|(n, _)| n.as_str()).collect(),
            self.fetches.iter().map(String::as_str).collect(),
        )
    }
}

/// The outputs of nodes nothing depends on (by data or control).
fn sinks(graph: &Graph) -> Vec<String> {
    let consumers = graph.consumers();
    graph
        .nodes()
        .filter(|(id, _)| !consumers.contains_key(id))
        .flat_map(|(id, n)| (0..n.num_outputs()).map(move |i| id.output(i)))
        .map(|o| graph.tensor_name(o))
        .collect()
}

/// What each pass changed, and the op counts before and after.
pub fn passes_report(graph: &Graph, step: &InspectStep) -> Result<String> {
    let session = Session::new(graph.clone(), SessionOptions::default())?;
    let (feeds, fetches) = step.names();
    let (optimized, records) = session.optimized_step(&feeds, &fetches, &[])?;
    let mut out = String::new();
    writeln!(out, "passes (fetching {}):", step.fetches.join(", "))?;
    for r in records.iter().filter(|r| r.changed) {
        writeln!(
            out,
            "  {}/{}: {} -> {} nodes",
            r.group, r.pass, r.nodes_before, r.nodes_after
        )?;
        for note in &r.notes {
            writeln!(out, "    {note}")?;
        }
    }
    let name = |r: &rill_graph::PassRecord| format!("{}/{}", r.group, r.pass);
    let changed: std::collections::BTreeSet<String> =
        records.iter().filter(|r| r.changed).map(name).collect();
    let unchanged: std::collections::BTreeSet<String> = records
        .iter()
        .map(name)
        .filter(|n| !changed.contains(n))
        .collect();
    let unchanged: Vec<String> = unchanged.into_iter().collect();
    writeln!(
        out,
        "  passes that changed nothing: {}",
        unchanged.join(", ")
    )?;
    writeln!(
        out,
        "ops before ({} nodes) -> after ({} nodes):",
        graph.len(),
        optimized.len()
    )?;
    let histogram = |g: &Graph| {
        let mut h: BTreeMap<String, usize> = BTreeMap::new();
        for (_, n) in g.nodes() {
            *h.entry(n.op_name().to_string()).or_default() += 1;
        }
        h
    };
    let (before, after) = (histogram(graph), histogram(&optimized));
    let ops: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for op in ops {
        let (b, a) = (before.get(op).unwrap_or(&0), after.get(op).unwrap_or(&0));
        writeln!(out, "  {op:<28} {b:>5} -> {a:<5}")?;
    }
    Ok(out)
}

/// The memory plan of the optimised step for the step's feed dims.
pub fn memory_report(graph: &Graph, step: &InspectStep) -> Result<String> {
    let session = Session::new(graph.clone(), SessionOptions::default())?;
    let (feeds, fetches) = step.names();
    let plan = session.compiled(&feeds, &fetches, &[])?;
    let dims: Vec<Vec<usize>> = step.feeds.iter().map(|(_, d)| d.clone()).collect();
    let memory = MemoryPlan::new(&plan, &dims)?;
    let s = &memory.stats;
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let mut out = String::new();
    let shapes: Vec<String> = step
        .feeds
        .iter()
        .map(|(n, d)| format!("{n}={d:?}"))
        .collect();
    writeln!(out, "memory plan for {}:", shapes.join(" "))?;
    writeln!(
        out,
        "  planned peak   {:>12} bytes ({:.3} MiB)",
        s.planned_peak,
        mib(s.planned_peak)
    )?;
    writeln!(
        out,
        "  naive sum      {:>12} bytes ({:.3} MiB)",
        s.naive_sum,
        mib(s.naive_sum)
    )?;
    writeln!(
        out,
        "  lower bound    {:>12} bytes ({:.3} MiB)",
        s.lower_bound,
        mib(s.lower_bound)
    )?;
    if s.lower_bound > 0 {
        writeln!(
            out,
            "  peak / bound   {:.3}   naive / peak {:.2}",
            s.planned_peak as f64 / s.lower_bound as f64,
            s.naive_sum as f64 / s.planned_peak.max(1) as f64
        )?;
    }
    writeln!(
        out,
        "  {} tensors planned in {} buffers ({} in place, {} views), {} on the heap",
        s.planned_tensors,
        s.buffers.len(),
        s.in_place,
        s.views,
        s.heap_tensors
    )?;
    let mut buffers = s.buffers.clone();
    buffers.sort_by_key(|b| b.offset);
    writeln!(
        out,
        "  {:>10} {:>10}  {:>9}  tensor",
        "offset", "bytes", "lifetime"
    )?;
    for b in &buffers {
        writeln!(
            out,
            "  {:>10} {:>10}  {:>4}-{:<4}  {}{}",
            b.offset,
            b.bytes,
            b.first,
            b.last,
            b.name,
            if b.members.len() > 1 {
                format!(" (+{} sharing)", b.members.len() - 1)
            } else {
                String::new()
            }
        )?;
    }
    Ok(out)
}
