//! `rill inspect GRAPH --devices cpu:N --placement spread --partition`: how a step of a
//! graph is placed on N CPU devices and cut into partitions — each partition's size, every
//! edge that crosses devices (a `_Send`/`_Recv` pair) and the bytes crossing per step — and
//! the `--devices`/`--placement` flags `rill run` and `rill bench` share.
//!
//! Feeds take the dims given with `--shape` (or their own known shapes), so the bytes of
//! every cut edge whose shape follows from them are known.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{bail, Context, Result};
use rill_graph::{AttrValue, Graph, Shape};
use rill_runtime::placer::Strategy;
use rill_runtime::{Session, SessionOptions};

use crate::compile_report::InspectStep;

/// Parses `--devices`: `cpu:N` (N >= 1).
pub fn parse_devices(arg: &str) -> Result<usize> {
    let n = arg
        .to_ascii_lowercase()
        .strip_prefix("cpu:")
        .map(|n| n.parse::<usize>())
        .with_context(|| format!("--devices '{arg}' must look like cpu:4"))?
        .with_context(|| format!("--devices '{arg}': the count must be a positive integer"))?;
    if n == 0 {
        bail!("--devices '{arg}': at least one device");
    }
    Ok(n)
}

/// Parses `--placement`: `client` (everything on CPU:0 unless requested) or `spread`.
pub fn parse_placement(arg: &str) -> Result<Strategy> {
    match arg {
        "client" => Ok(Strategy::Client),
        "spread" => Ok(Strategy::Spread),
        _ => bail!("--placement '{arg}' must be 'client' or 'spread'"),
    }
}

/// `graph` with every fed placeholder's shape set to the step's dims.
fn with_feed_shapes(graph: &Graph, step: &InspectStep) -> Result<Graph> {
    let mut g = graph.clone();
    for (name, dims) in &step.feeds {
        let o = g.output_named(name)?;
        if g.node(o.node).op_name() == "Placeholder" {
            g.node_mut(o.node).attrs.insert(
                "shape".into(),
                AttrValue::Shape(Shape::from(dims.as_slice())),
            );
        }
    }
    g.infer_shapes()?;
    Ok(g)
}

/// The placement and partitions of the optimised step on `devices` CPU devices.
pub fn partition_report(
    graph: &Graph,
    step: &InspectStep,
    devices: usize,
    placement: Strategy,
) -> Result<String> {
    let graph = with_feed_shapes(graph, step)?;
    let session = Session::new(
        graph,
        SessionOptions::default().with_cpu_devices(devices, placement),
    )?;
    let (feeds, fetches) = step.names();
    let plan = session.partitioned(&feeds, &fetches, &[])?;
    let parts = &plan.partitions;
    let mut out = String::new();
    writeln!(
        out,
        "{} partition(s) on {devices} CPU device(s), placement {placement:?}:",
        parts.partitions.len()
    )?;
    for p in &parts.partitions {
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, n) in p.graph.nodes() {
            *ops.entry(n.op_name()).or_default() += 1;
        }
        let count = |op: &str| ops.get(op).copied().unwrap_or(0);
        writeln!(
            out,
            "  {}: {} nodes ({} _Send, {} _Recv)",
            p.device,
            p.graph.len(),
            count("_Send"),
            count("_Recv")
        )?;
    }
    for line in &plan.placement.moves {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "cut edges:")?;
    for p in &parts.partitions {
        for e in &p.cut_edges {
            let bytes = e.bytes.map_or("?".to_string(), |b| b.to_string());
            writeln!(
                out,
                "  {} -> {}  {}  {} {}  {bytes} bytes",
                e.src, e.dst_device, e.tensor_name, e.dtype, e.shape
            )?;
        }
    }
    for c in &parts.feeds {
        writeln!(out, "  feed {} -> {}", c.tensor, c.device)?;
    }
    for c in &parts.fetches {
        writeln!(out, "  fetch {} <- {}", c.tensor, c.device)?;
    }
    let (bytes, unknown) = parts.bytes_per_step();
    writeln!(
        out,
        "bytes crossing devices per step: {bytes}{}",
        if unknown {
            " (plus edges of unknown size)"
        } else {
            ""
        }
    )?;
    Ok(out)
}
