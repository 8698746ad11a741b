//! Static memory planning for one compiled step ([`MemoryPlan`]): given the feed shapes,
//! every tensor the step makes gets its size from shape inference and its lifetime from the
//! schedule (the plan's topological order: first write at its producer, last read at its
//! last consumer); tensors then get offsets in one arena, assigned greedily by size
//! (largest first, lowest gap that no tensor of overlapping lifetime occupies); an
//! elementwise kernel's output takes the range of an input of the same size that dies at
//! it (in place), and a view (Reshape) shares its input's range.
//!
//! Invariants, which make arena tensors safe to share between threads:
//! - two tensors whose lifetimes overlap never get overlapping ranges;
//! - when a range is reused, every node that touches the earlier tensor finishes before the
//!   later tensor's producer starts, and every other reader of a buffer finishes before a
//!   node writes over it in place: the plan adds those ordering edges
//!   ([`MemoryPlan::extra_consumers`]), so parallel execution cannot break the schedule's
//!   lifetimes and the in-place writer always holds its input alone;
//! - only tensors of plain numeric dtypes whose producer writes through the plan, whose
//!   consumers all read arena inputs, and which are not fetched are planned; everything else
//!   stays on the heap, and the executor copies any arena tensor out before it leaves its
//!   planned place (fetches, unexpected forwarding).

mod assign;
mod lifetimes;

use std::sync::{Arc, Mutex};

use rill_graph::{Arena, Result, ARENA_ALIGN};
use rill_kernels::OutputMemory;

use crate::plan::Plan;

pub use lifetimes::TensorLife;

/// What the planner decided for one step's feed shapes.
pub struct MemoryPlan {
    /// Bytes of the arena (the planned peak).
    pub arena_bytes: usize,
    /// Per plan node, per output: where the kernel should put it.
    pub output_memory: Vec<Vec<OutputMemory>>,
    /// Per plan node, per output: the arena offset an output may legitimately come back at
    /// (its own range, the input it overwrote, or the input it is a view of).
    pub expected_offset: Vec<Vec<Option<usize>>>,
    /// Ordering edges the plan adds for reused ranges: node -> nodes that must wait for it.
    pub extra_consumers: Vec<Vec<usize>>,
    /// Per node, what it waits for: the plan's count plus the extra edges.
    pub initial_pending: Vec<u32>,
    /// Nodes with nothing to wait for.
    pub roots: Vec<usize>,
    pub stats: MemoryStats,
    /// Arenas not in use by a running step, ready for the next.
    spare: Mutex<Vec<Arc<Arena>>>,
}

/// The numbers `rill inspect --memory` prints.
#[derive(Debug, Clone, Default)]
pub struct MemoryStats {
    /// Arena bytes the plan needs.
    pub planned_peak: usize,
    /// Bytes of all planned tensors, each in its own buffer.
    pub naive_sum: usize,
    /// Most bytes live at once in the schedule: no plan can need less.
    pub lower_bound: usize,
    /// Tensors placed in the arena (views and in-place outputs included).
    pub planned_tensors: usize,
    /// Outputs written over a dying input.
    pub in_place: usize,
    /// Outputs that are views of their input's range.
    pub views: usize,
    /// Tensors left on the heap (unknown shape, fetched, or a kernel that does not use
    /// the plan).
    pub heap_tensors: usize,
    /// Every planned buffer, for reports.
    pub buffers: Vec<TensorLife>,
}

/// Rounds a byte count up to the arena alignment.
pub(crate) fn aligned(bytes: usize) -> usize {
    bytes.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

impl MemoryPlan {
    /// Plans the memory of `plan` for feeds of `feed_dims` (in the plan's feed order).
    pub fn new(plan: &Plan, feed_dims: &[Vec<usize>]) -> Result<MemoryPlan> {
        let lives = lifetimes::analyse(plan, feed_dims)?;
        let placed = assign::greedy_by_size(&lives.buffers);
        let n = plan.nodes.len();
        let mut output_memory: Vec<Vec<OutputMemory>> = plan
            .nodes
            .iter()
            .map(|p| vec![OutputMemory::Heap; p.output_slots.len()])
            .collect();
        let mut expected_offset: Vec<Vec<Option<usize>>> = plan
            .nodes
            .iter()
            .map(|p| vec![None; p.output_slots.len()])
            .collect();
        for (b, buf) in lives.buffers.iter().enumerate() {
            let offset = placed.offsets[b];
            for m in &buf.members {
                expected_offset[m.node][m.output] = Some(offset);
                output_memory[m.node][m.output] = match m.kind {
                    lifetimes::MemberKind::Root => OutputMemory::Arena {
                        offset,
                        bytes: buf.bytes,
                    },
                    lifetimes::MemberKind::InPlace { input } => OutputMemory::InPlace {
                        input,
                        offset,
                        bytes: buf.bytes,
                    },
                    lifetimes::MemberKind::View => OutputMemory::Heap,
                };
            }
        }
        // Ordering edges: a buffer reusing (part of) an earlier one's range waits for every
        // node that touches the earlier one.
        let mut extra_consumers: Vec<Vec<usize>> = vec![vec![]; n];
        for (a, first) in lives.buffers.iter().enumerate() {
            for (b, later) in lives.buffers.iter().enumerate() {
                if a == b || first.last >= later.first {
                    continue;
                }
                let (oa, ob) = (placed.offsets[a], placed.offsets[b]);
                let overlap = oa < ob + aligned(later.bytes) && ob < oa + aligned(first.bytes);
                if !overlap {
                    continue;
                }
                for &t in &first.touched_by {
                    if t != later.first && !extra_consumers[t].contains(&later.first) {
                        extra_consumers[t].push(later.first);
                    }
                }
            }
        }
        for &(reader, writer) in &lives.in_place_edges {
            if !extra_consumers[reader].contains(&writer) {
                extra_consumers[reader].push(writer);
            }
        }
        let mut initial_pending = plan.initial_pending.clone();
        for targets in &extra_consumers {
            for &t in targets {
                initial_pending[t] += 1;
            }
        }
        let roots = (0..n).filter(|&i| initial_pending[i] == 0).collect();
        let stats = MemoryStats {
            planned_peak: placed.peak,
            naive_sum: lives.buffers.iter().map(|b| b.naive_bytes).sum(),
            lower_bound: lives.lower_bound,
            planned_tensors: lives.buffers.iter().map(|b| b.members.len()).sum(),
            in_place: lives.in_place,
            views: lives.views,
            heap_tensors: lives.heap_tensors,
            buffers: lives
                .buffers
                .iter()
                .zip(&placed.offsets)
                .map(|(b, &o)| TensorLife {
                    offset: o,
                    ..b.clone()
                })
                .collect(),
        };
        Ok(MemoryPlan {
            arena_bytes: placed.peak,
            output_memory,
            expected_offset,
            extra_consumers,
            initial_pending,
            roots,
            stats,
            spare: Mutex::new(vec![]),
        })
    }

    /// An arena for one step: a spare one, or a new one.
    pub fn take_arena(&self) -> Result<Arc<Arena>> {
        if let Some(a) = self.spare.lock().expect("arena pool lock").pop() {
            return Ok(a);
        }
        Arena::new(self.arena_bytes)
    }

    /// Gives an arena back after a step. It is kept for reuse only when no tensor still
    /// views it (nothing escaped the step), so a later step can never overwrite a live
    /// tensor.
    pub fn return_arena(&self, mut arena: Arc<Arena>) {
        if Arc::get_mut(&mut arena).is_some() {
            let mut spare = self.spare.lock().expect("arena pool lock");
            if spare.len() < 4 {
                spare.push(arena);
            }
        }
    }
}
