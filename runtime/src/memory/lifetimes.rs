//! Sizes and lifetimes of a step's tensors for given feed shapes, grouped into buffers: a
//! buffer is one arena range, shared by its root tensor, outputs written in place over it
//! and views of it.
//!
//! Invariants: schedule positions are plan node indices (a topological order); a buffer's
//! `first` is its root's producer and `last` the last node that reads any member; a
//! tensor joins a buffer in place only when the buffer dies at the writing node, has the
//! same dtype and size, and the node reads it through one input only.

use std::collections::HashSet;

use rill_graph::{DType, Output, Result, Shape};

use crate::plan::Plan;

/// How a tensor shares its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// The tensor the buffer was planned for.
    Root,
    /// An output written over the buffer through data input `input` of its node.
    InPlace { input: usize },
    /// A view of a member (same bytes, other dims).
    View,
}

/// One tensor of a buffer: output `output` of plan node `node`.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub node: usize,
    pub output: usize,
    pub kind: MemberKind,
}

/// One planned arena range and the tensors that use it in turn.
#[derive(Debug, Clone)]
pub struct TensorLife {
    /// The root tensor's name.
    pub name: String,
    /// Bytes of the range.
    pub bytes: usize,
    /// Bytes the members would take, each in its own buffer (views take none).
    pub naive_bytes: usize,
    /// Schedule position of the first write.
    pub first: usize,
    /// Schedule position of the last read.
    pub last: usize,
    /// Byte offset in the arena (set once placed).
    pub offset: usize,
    pub members: Vec<Member>,
    /// Plan nodes that write or read a member.
    pub touched_by: Vec<usize>,
}

pub(crate) struct Lives {
    pub buffers: Vec<TensorLife>,
    /// Ordering edges (reader -> in-place writer): every other reader of a buffer finishes
    /// before a node writes over it, so the writer holds it alone whatever the run order.
    pub in_place_edges: Vec<(usize, usize)>,
    pub lower_bound: usize,
    pub in_place: usize,
    pub views: usize,
    pub heap_tensors: usize,
}

/// Dtypes planned into the arena: those every kernel reads through typed slices.
fn arena_dtype(d: DType) -> Option<usize> {
    match d {
        DType::F32 | DType::I32 => Some(4),
        DType::F64 | DType::I64 => Some(8),
        _ => None,
    }
}

/// Output shapes of the plan's nodes with the feeds' concrete dims.
fn concrete_dims(plan: &Plan, feed_dims: &[Vec<usize>]) -> Vec<Vec<Option<Vec<usize>>>> {
    let mut g = (*plan.graph).clone();
    let fed: Vec<(Output, Shape)> = plan
        .feeds
        .iter()
        .zip(feed_dims)
        .map(|(&o, d)| (o, Shape::known(d)))
        .collect();
    let set_fed = |g: &mut rill_graph::Graph| {
        for (o, s) in &fed {
            g.node_mut(o.node).output_shapes[o.index] = s.clone();
        }
    };
    set_fed(&mut g);
    for node in &plan.nodes {
        // A node whose shapes cannot be inferred keeps what the graph knew; the kernel
        // reports real errors when the step runs.
        let _ = g.infer_node(node.id);
        set_fed(&mut g);
    }
    plan.nodes
        .iter()
        .map(|n| {
            g.node(n.id)
                .output_shapes
                .iter()
                .map(|s| s.to_known())
                .collect()
        })
        .collect()
}

pub(crate) fn analyse(plan: &Plan, feed_dims: &[Vec<usize>]) -> Result<Lives> {
    let dims = concrete_dims(plan, feed_dims);
    let n = plan.nodes.len();
    let mut producer: Vec<Option<(usize, usize)>> = vec![None; plan.num_slots];
    let mut consumers: Vec<Vec<usize>> = vec![vec![]; plan.num_slots];
    for (i, node) in plan.nodes.iter().enumerate() {
        for (k, s) in node.output_slots.iter().enumerate() {
            if let Some(s) = *s {
                producer[s] = Some((i, k));
            }
        }
        for &s in node.input_slots.iter().flatten() {
            consumers[s].push(i);
        }
    }
    let fetched: HashSet<usize> = plan.fetch_slots.iter().copied().collect();
    let traits: Vec<_> = plan
        .nodes
        .iter()
        .map(|p| p.kernel.memory_traits())
        .collect();
    // Bytes of each slot's tensor when it may live in the arena at all.
    let plannable: Vec<Option<usize>> = (0..plan.num_slots)
        .map(|s| {
            let (i, k) = producer[s]?;
            if fetched.contains(&s) || !consumers[s].iter().all(|&c| traits[c].reads_arena_inputs) {
                return None;
            }
            let dtype = plan.graph.dtype(Output {
                node: plan.nodes[i].id,
                index: k,
            });
            let size = arena_dtype(dtype)?;
            let d = dims[i][k].as_ref()?;
            d.iter()
                .product::<usize>()
                .checked_mul(size)
                .filter(|&b| b > 0)
        })
        .collect();
    let last_read = |s: usize| consumers[s].iter().copied().max().unwrap_or(0);

    let mut buffers: Vec<TensorLife> = vec![];
    let mut slot_buffer: Vec<Option<usize>> = vec![None; plan.num_slots];
    let (mut in_place, mut views) = (0, 0);
    let mut in_place_edges = vec![];
    let mut member_slots: Vec<Vec<usize>> = vec![];
    for (i, node) in plan.nodes.iter().enumerate() {
        for (k, slot) in node.output_slots.iter().enumerate() {
            let Some(s) = *slot else { continue };
            let Some(bytes) = plannable[s] else { continue };
            let input_buffer = |j: usize| node.input_slots.get(j).copied().flatten();
            let mut joined = None;
            if k == 0 && traits[i].forwards_input {
                if let Some(b) = input_buffer(0).and_then(|x| slot_buffer[x]) {
                    if buffers[b].bytes == bytes {
                        joined = Some((b, MemberKind::View));
                        views += 1;
                    }
                }
            }
            if joined.is_none() && k == 0 && traits[i].in_place {
                for (j, src) in node.input_slots.iter().enumerate() {
                    let Some(x) = *src else { continue };
                    let Some(b) = slot_buffer[x] else { continue };
                    let read_once = node.input_slots.iter().filter(|&&y| y == Some(x)).count() == 1;
                    let dies_here = buffers[b].last == i;
                    let graph_node = plan.graph.node(node.id);
                    let same = plannable[x] == Some(bytes)
                        && graph_node.input_types.get(j) == graph_node.output_types.first();
                    if read_once && dies_here && same {
                        for &m in &member_slots[b] {
                            for &c in &consumers[m] {
                                if c != i && !in_place_edges.contains(&(c, i)) {
                                    in_place_edges.push((c, i));
                                }
                            }
                        }
                        joined = Some((b, MemberKind::InPlace { input: j }));
                        in_place += 1;
                        break;
                    }
                }
            }
            let b = match joined {
                Some((b, kind)) => {
                    buffers[b].members.push(Member {
                        node: i,
                        output: k,
                        kind,
                    });
                    if kind != MemberKind::View {
                        buffers[b].naive_bytes += bytes;
                    }
                    b
                }
                None if traits[i].writes_arena_outputs => {
                    buffers.push(TensorLife {
                        name: plan.graph.tensor_name(plan.nodes[i].id.output(k)),
                        bytes,
                        naive_bytes: bytes,
                        first: i,
                        last: i,
                        offset: 0,
                        members: vec![Member {
                            node: i,
                            output: k,
                            kind: MemberKind::Root,
                        }],
                        touched_by: vec![i],
                    });
                    member_slots.push(vec![]);
                    buffers.len() - 1
                }
                None => continue,
            };
            member_slots[b].push(s);
            slot_buffer[s] = Some(b);
            let buf = &mut buffers[b];
            buf.last = buf.last.max(last_read(s)).max(i);
            for t in std::iter::once(i).chain(consumers[s].iter().copied()) {
                if !buf.touched_by.contains(&t) {
                    buf.touched_by.push(t);
                }
            }
        }
    }
    let mut lower_bound = 0;
    for p in 0..n {
        let live: usize = buffers
            .iter()
            .filter(|b| b.first <= p && p <= b.last)
            .map(|b| super::aligned(b.bytes))
            .sum();
        lower_bound = lower_bound.max(live);
    }
    let heap_tensors = (0..plan.num_slots)
        .filter(|&s| producer[s].is_some() && slot_buffer[s].is_none())
        .count();
    Ok(Lives {
        buffers,
        in_place_edges,
        lower_bound,
        in_place,
        views,
        heap_tensors,
    })
}
