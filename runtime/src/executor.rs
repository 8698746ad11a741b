//! The dataflow executor: runs a [`Plan`] for one step. A node runs when everything it waits
//! for has finished; the thread that finishes a node runs one newly ready successor itself
//! (so chains run inline with no hand-off) and hands any others to the rayon pool, so
//! independent branches run in parallel. The first error stops the step: nothing new is
//! started, and it is returned with the node's name.
//!
//! Invariants: each slot is written once per step, before any reader runs (the pending
//! counter's release/acquire orders them); the last reader of a slot takes the tensor, so
//! its buffer can be reused in place; the caller returns only when no task of the step
//! is running.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rill_graph::{Arena, Error, Result, Tensor};
use rill_kernels::{KernelContext, ResourceMgr};

use crate::memory::MemoryPlan;
use crate::plan::Plan;

/// Time spent in one node's kernel during a profiled step.
#[derive(Debug, Clone)]
pub struct NodeTiming {
    pub node: String,
    pub op: String,
    pub duration: Duration,
}

/// Counts a step's running pool tasks; kept apart from the step so that a task drops its
/// reference to the step (and so to the step's tensors and arena) before it reports done.
#[derive(Default)]
struct Completion {
    outstanding: AtomicUsize,
    done: (Mutex<()>, Condvar),
}

impl Completion {
    fn finish_task(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.done.0.lock().expect("done lock");
            self.done.1.notify_all();
        }
    }

    fn wait(&self) {
        let mut guard = self.done.0.lock().expect("done lock");
        while self.outstanding.load(Ordering::Acquire) != 0 {
            guard = self.done.1.wait(guard).expect("done lock");
        }
    }
}

struct Step {
    plan: Arc<Plan>,
    resources: Arc<ResourceMgr>,
    slots: Vec<Mutex<Option<Tensor>>>,
    reads: Vec<AtomicU32>,
    pending: Vec<AtomicU32>,
    completion: Arc<Completion>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    timings: Option<Mutex<Vec<NodeTiming>>>,
    /// The memory plan for this step's feed dims and the arena it runs in.
    memory: Option<(Arc<MemoryPlan>, Arc<Arena>)>,
}

impl Step {
    /// An output as it may be kept: an arena tensor stays only at the offset the memory
    /// plan expects for it (its own range, the input it overwrote or viewed); anywhere
    /// else (a kernel that forwarded an input the plan did not foresee) it is copied out,
    /// so no range is ever shared beyond the plan's lifetimes.
    fn settle(&self, node: usize, output: usize, t: Tensor) -> Tensor {
        let Some(slice) = t.arena_slice() else {
            return t;
        };
        let expected = self.memory.as_ref().and_then(|(m, arena)| {
            slice
                .is_in(arena)
                .then(|| m.expected_offset[node][output])
                .flatten()
        });
        if expected == Some(slice.offset()) {
            t
        } else {
            t.detach()
        }
    }

    fn read(&self, slot: usize) -> Option<Tensor> {
        let mut guard = self.slots[slot].lock().expect("slot lock");
        if self.reads[slot].fetch_sub(1, Ordering::AcqRel) == 1 {
            guard.take()
        } else {
            guard.clone()
        }
    }

    fn fail(&self, e: Error) {
        let mut err = self.error.lock().expect("error lock");
        if err.is_none() {
            *err = Some(e);
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Runs `first` and then, inline, the chain of nodes it makes ready; spawns the rest.
    fn run_from(self: &Arc<Self>, first: usize) {
        let mut next = Some(first);
        while let Some(i) = next.take() {
            if self.failed.load(Ordering::Acquire) {
                break;
            }
            if let Err(e) = self.run_node(i) {
                self.fail(e);
                break;
            }
            let extra = match &self.memory {
                Some((m, _)) => m.extra_consumers[i].as_slice(),
                None => &[],
            };
            for &c in self.plan.nodes[i].consumers.iter().chain(extra) {
                if self.pending[c].fetch_sub(1, Ordering::AcqRel) == 1 {
                    if next.is_none() {
                        next = Some(c);
                    } else {
                        self.spawn(c);
                    }
                }
            }
        }
    }

    fn spawn(self: &Arc<Self>, node: usize) {
        self.completion.outstanding.fetch_add(1, Ordering::AcqRel);
        let completion = self.completion.clone();
        let step = self.clone();
        rayon::spawn(move || {
            step.run_from(node);
            drop(step);
            completion.finish_task();
        });
    }

    fn run_node(&self, i: usize) -> Result<()> {
        let node = &self.plan.nodes[i];
        let mut inputs = Vec::with_capacity(node.input_slots.len());
        for (i, slot) in node.input_slots.iter().enumerate() {
            match slot.map(|s| self.read(s)) {
                Some(Some(t)) => inputs.push(t),
                None => match &node.variable_reads[i] {
                    Some(var) => inputs.push(
                        var.read()
                            .map_err(|e| e.at_node(var.name(), "VariableV2"))?,
                    ),
                    // A reference input: the kernel uses the variable, not this placeholder.
                    None => inputs.push(self.plan.ref_placeholder.clone()),
                },
                Some(None) => {
                    return Err(
                        Error::internal("an input was not produced").at_node(&node.name, &node.op)
                    )
                }
            }
        }
        let cx = KernelContext {
            node_name: &node.name,
            resources: &self.resources,
            ref_inputs: &node.ref_inputs,
            outputs_needed: &node.outputs_needed,
            arena: self.memory.as_ref().map(|(_, a)| a),
            output_memory: self
                .memory
                .as_ref()
                .map_or(&[][..], |(m, _)| &m.output_memory[i]),
        };
        let start = self.timings.as_ref().map(|_| Instant::now());
        let outputs = node
            .kernel
            .compute(&cx, inputs)
            .map_err(|e| e.at_node(&node.name, &node.op))?;
        if let (Some(start), Some(t)) = (start, &self.timings) {
            t.lock().expect("timings lock").push(NodeTiming {
                node: node.name.clone(),
                op: node.op.clone(),
                duration: start.elapsed(),
            });
        }
        if outputs.len() != node.output_slots.len() {
            return Err(Error::internal(format!(
                "kernel returned {} outputs, the node has {}",
                outputs.len(),
                node.output_slots.len()
            ))
            .at_node(&node.name, &node.op));
        }
        for (k, (t, slot)) in outputs.into_iter().zip(&node.output_slots).enumerate() {
            if let Some(s) = *slot {
                *self.slots[s].lock().expect("slot lock") = Some(self.settle(i, k, t));
            }
        }
        Ok(())
    }
}

/// Runs one step of `plan` with `feeds` (in the plan's feed order); returns the fetches and,
/// when `profile` is set, the time spent in each kernel.
pub fn run_step(
    plan: &Arc<Plan>,
    resources: &Arc<ResourceMgr>,
    feeds: Vec<Tensor>,
    profile: bool,
) -> Result<(Vec<Tensor>, Vec<NodeTiming>)> {
    let memory = match plan.memory_plan(&feeds) {
        Some(m) => {
            let arena = m.take_arena()?;
            Some((m, arena))
        }
        None => None,
    };
    let (initial_pending, roots) = match &memory {
        Some((m, _)) => (&m.initial_pending, &m.roots),
        None => (&plan.initial_pending, &plan.roots),
    };
    let step = Arc::new(Step {
        plan: plan.clone(),
        resources: resources.clone(),
        slots: (0..plan.num_slots).map(|_| Mutex::new(None)).collect(),
        reads: plan
            .initial_reads
            .iter()
            .map(|&r| AtomicU32::new(r))
            .collect(),
        pending: initial_pending.iter().map(|&p| AtomicU32::new(p)).collect(),
        completion: Arc::new(Completion::default()),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        timings: profile.then(|| Mutex::new(Vec::new())),
        memory: memory.clone(),
    });
    for (t, &s) in feeds.into_iter().zip(&plan.feed_slots) {
        *step.slots[s].lock().expect("slot lock") = Some(t);
    }
    // The calling thread runs the first root's chain; other roots go to the pool.
    if let Some((&first, rest)) = roots.split_first() {
        for &r in rest {
            step.spawn(r);
        }
        step.run_from(first);
    }
    step.completion.wait();
    let outcome = finish(&step, plan);
    drop(step);
    if let Some((m, arena)) = memory {
        m.return_arena(arena);
    }
    outcome
}

/// The step's fetches (copied out of the arena) and timings, or its first error.
fn finish(step: &Step, plan: &Plan) -> Result<(Vec<Tensor>, Vec<NodeTiming>)> {
    if let Some(e) = step.error.lock().expect("error lock").take() {
        return Err(e);
    }
    let fetches = plan
        .fetch_slots
        .iter()
        .map(|&s| {
            step.slots[s]
                .lock()
                .expect("slot lock")
                .clone()
                .map(Tensor::detach)
                .ok_or_else(|| Error::internal("a fetched tensor was not produced"))
        })
        .collect::<Result<Vec<_>>>()?;
    let timings = step
        .timings
        .as_ref()
        .map(|t| std::mem::take(&mut *t.lock().expect("timings lock")))
        .unwrap_or_default();
    Ok((fetches, timings))
}
