//! The dynamic side of TF1 control flow: frame instances (one per while loop per parent
//! iteration), their iterations, each node's per-iteration input state, and the rules by
//! which values and dead signals move between them.
//!
//! TensorFlow's semantics, which this module keeps:
//! - a node with a dead input (data or control) does not run and its outputs are dead,
//!   except `Merge`, which fires on its first live data input (or dead when all its data
//!   inputs are dead) and `ControlTrigger`, which is never dead;
//! - `Enter` sends to iteration 0 of the child frame (a constant `Enter` to every
//!   iteration), `Exit` to the parent frame (a dead `Exit` only when the frame ends),
//!   `NextIteration` to the next iteration (a dead one stops);
//! - at most `parallel_iterations` iterations of a frame are alive at once; a value for
//!   the next one waits until the oldest iteration finishes;
//! - an iteration is finished when none of its nodes is ready or running, no child frame
//!   it started is alive, the iteration before it is finished and (for iteration 0) every
//!   `Enter` of the frame has run.
//!
//! Invariant: `outstanding_ops` counts the tasks handed out for an iteration and not yet
//! finished, so a frame is never deleted while a task of it can still run.

use std::collections::{BTreeMap, HashMap, HashSet};

use rill_graph::Tensor;

use super::graph::{ControlFlowGraph, FetchSource, Kind};

/// A node ready to run in one iteration of one frame instance.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    pub node: usize,
    pub frame: usize,
    pub iter: usize,
}

/// A value as it moves: `None` is a dead tensor.
pub type Value = Option<Tensor>;

/// What a ready node was handed.
pub struct Activation {
    pub inputs: Vec<Value>,
    pub dead: bool,
    /// For a `Merge`: which input arrived alive.
    pub merge_live: Option<usize>,
}

struct NodeState {
    pending: u32,
    dead: bool,
    inputs: Vec<Value>,
    merge_live: Option<usize>,
    merge_dead: u32,
    fired: bool,
}

struct Iteration {
    nodes: Vec<NodeState>,
    outstanding_ops: usize,
    outstanding_frames: usize,
}

struct Frame {
    static_frame: usize,
    parent: Option<(usize, usize)>,
    iterations: BTreeMap<usize, Iteration>,
    /// The highest iteration started.
    iteration_count: usize,
    /// `Enter`s of this instance that have not run yet.
    pending_inputs: u32,
    /// Values of constant `Enter`s, given to every iteration.
    invariants: Vec<(usize, Value)>,
    /// `NextIteration` values waiting for room in the `parallel_iterations` window.
    deferred: Vec<(usize, Value)>,
    live_exits: HashSet<usize>,
}

/// Every frame instance of a step and the queue of ready tasks.
pub struct Frames<'a> {
    cf: &'a ControlFlowGraph,
    frames: Vec<Option<Frame>>,
    children: HashMap<(usize, usize, usize), usize>,
    pub ready: Vec<Task>,
    /// Each fetch's value once its node sent it into the root frame (`Some(None)`: dead).
    pub fetched: Vec<Option<Value>>,
}

impl<'a> Frames<'a> {
    /// The root frame with `feeds` in place; its ready nodes are queued.
    pub fn new(cf: &'a ControlFlowGraph, feeds: &[Tensor]) -> Frames<'a> {
        let mut frames = Frames {
            cf,
            frames: vec![],
            children: HashMap::new(),
            ready: vec![],
            fetched: vec![None; cf.fetches.len()],
        };
        frames.frames.push(Some(Frame {
            static_frame: 0,
            parent: None,
            iterations: BTreeMap::new(),
            iteration_count: 0,
            pending_inputs: 0,
            invariants: vec![],
            deferred: vec![],
            live_exits: HashSet::new(),
        }));
        let root = frames.new_iteration(0);
        frames.iterations_mut(0).insert(0, root);
        for &(j, k, f) in &cf.fed_inputs {
            let st = frames.state(0, 0, j);
            st.inputs[k] = Some(feeds[f].clone());
            if cf.kinds[j] == Kind::Merge && st.merge_live.is_none() {
                st.merge_live = Some(k);
            }
        }
        for &j in &cf.frames[0].nodes {
            frames.check_ready(0, 0, j);
        }
        frames
    }

    fn frame(&mut self, f: usize) -> &mut Frame {
        self.frames[f].as_mut().expect("a live frame")
    }

    fn iterations_mut(&mut self, f: usize) -> &mut BTreeMap<usize, Iteration> {
        &mut self.frame(f).iterations
    }

    fn iteration(&mut self, f: usize, iter: usize) -> &mut Iteration {
        self.frame(f)
            .iterations
            .get_mut(&iter)
            .expect("a live iteration")
    }

    fn state(&mut self, f: usize, iter: usize, node: usize) -> &mut NodeState {
        let local = self.cf.local_index[node];
        &mut self.iteration(f, iter).nodes[local]
    }

    fn new_iteration(&self, static_frame: usize) -> Iteration {
        let cf = self.cf;
        let nodes = cf.frames[static_frame]
            .nodes
            .iter()
            .map(|&j| NodeState {
                pending: match cf.kinds[j] {
                    Kind::Merge => cf.control_inputs[j],
                    _ => cf.data_inputs[j] + cf.control_inputs[j],
                },
                dead: false,
                inputs: vec![None; cf.num_inputs[j]],
                merge_live: None,
                merge_dead: 0,
                fired: false,
            })
            .collect();
        Iteration {
            nodes,
            outstanding_ops: 0,
            outstanding_frames: 0,
        }
    }

    /// Queues `node` in (`f`, `iter`) if everything it waits for has arrived.
    fn check_ready(&mut self, f: usize, iter: usize, node: usize) {
        let data_inputs = self.cf.data_inputs[node];
        let is_merge = self.cf.kinds[node] == Kind::Merge;
        let st = self.state(f, iter, node);
        let ready = !st.fired
            && st.pending == 0
            && (!is_merge || st.merge_live.is_some() || st.merge_dead == data_inputs);
        if ready {
            st.fired = true;
            self.iteration(f, iter).outstanding_ops += 1;
            self.ready.push(Task {
                node,
                frame: f,
                iter,
            });
        }
    }

    /// Takes what a ready task was handed.
    pub fn activation(&mut self, t: Task) -> Activation {
        let st = self.state(t.frame, t.iter, t.node);
        Activation {
            inputs: std::mem::take(&mut st.inputs),
            dead: st.dead,
            merge_live: st.merge_live,
        }
    }

    /// Delivers one edge's value (or dead signal) to `dst` in (`f`, `iter`).
    fn deliver(
        &mut self,
        f: usize,
        iter: usize,
        dst: usize,
        input: Option<usize>,
        value: Value,
        dead: bool,
    ) {
        let is_merge = self.cf.kinds[dst] == Kind::Merge;
        let st = self.state(f, iter, dst);
        match (is_merge, input) {
            (true, None) => st.pending -= 1,
            (true, Some(k)) => {
                if dead {
                    st.merge_dead += 1;
                } else if st.merge_live.is_none() {
                    st.inputs[k] = value;
                    st.merge_live = Some(k);
                }
            }
            (false, input) => {
                st.dead |= dead;
                if let Some(k) = input {
                    st.inputs[k] = value;
                }
                st.pending -= 1;
            }
        }
        self.check_ready(f, iter, dst);
    }

    /// Sends `node`'s outputs along its edges into (`f`, `iter`).
    fn send(&mut self, f: usize, iter: usize, node: usize, outputs: &[Value], node_dead: bool) {
        let cf = self.cf;
        if f == 0 {
            for (slot, source) in self.fetched.iter_mut().zip(&cf.fetches) {
                if let FetchSource::Node(j, port) = *source {
                    if j == node {
                        *slot = Some(outputs.get(port).cloned().flatten());
                    }
                }
            }
        }
        for e in &cf.out_edges[node] {
            let (value, dead) = match e.input {
                Some(_) => {
                    let v = outputs.get(e.port).cloned().flatten();
                    let dead = v.is_none();
                    (v, dead)
                }
                None => (None, node_dead),
            };
            self.deliver(f, iter, e.dst, e.input, value, dead);
        }
    }

    /// Records that task `t` finished with `outputs` (`node_dead`: the node itself was
    /// dead), moves them where its kind says, and retires finished iterations and frames.
    pub fn finish(&mut self, t: Task, outputs: Vec<Value>, node_dead: bool) {
        match self.cf.kinds[t.node] {
            Kind::Enter { child, is_constant } => {
                let c = self.child_frame(t.frame, t.iter, child);
                let value = outputs.into_iter().next().flatten();
                let dead = value.is_none();
                if is_constant {
                    self.frame(c).invariants.push((t.node, value.clone()));
                    let iters: Vec<usize> = self.frame(c).iterations.keys().copied().collect();
                    for i in iters {
                        self.send(c, i, t.node, std::slice::from_ref(&value), dead);
                    }
                } else {
                    self.send(c, 0, t.node, std::slice::from_ref(&value), dead);
                }
                self.frame(c).pending_inputs -= 1;
                if let Some(&first) = self.frame(c).iterations.keys().next() {
                    self.maybe_complete(c, first);
                }
            }
            Kind::Exit => {
                if !node_dead && outputs.first().is_some_and(Option::is_some) {
                    let (pf, pi) = self.frame(t.frame).parent.expect("Exit in a child frame");
                    self.frame(t.frame).live_exits.insert(t.node);
                    self.send(pf, pi, t.node, &outputs, false);
                }
            }
            Kind::NextIteration => {
                if !node_dead && outputs.first().is_some_and(Option::is_some) {
                    self.next_iteration(t, outputs.into_iter().next().flatten());
                }
            }
            _ => self.send(t.frame, t.iter, t.node, &outputs, node_dead),
        }
        self.iteration(t.frame, t.iter).outstanding_ops -= 1;
        self.maybe_complete(t.frame, t.iter);
    }

    fn next_iteration(&mut self, t: Task, value: Value) {
        let next = t.iter + 1;
        let limit = self.cf.frames[self.frame(t.frame).static_frame].parallel_iterations;
        let frame = self.frame(t.frame);
        if next > frame.iteration_count {
            if frame.iterations.len() >= limit || !frame.deferred.is_empty() {
                frame.deferred.push((t.node, value));
                return;
            }
            self.start_iteration(t.frame);
        }
        self.send(t.frame, next, t.node, std::slice::from_ref(&value), false);
    }

    /// Starts the frame's next iteration and gives it the loop invariants.
    fn start_iteration(&mut self, f: usize) {
        let static_frame = self.frame(f).static_frame;
        let it = self.new_iteration(static_frame);
        let frame = self.frame(f);
        frame.iteration_count += 1;
        let n = frame.iteration_count;
        frame.iterations.insert(n, it);
        let invariants = frame.invariants.clone();
        for (node, value) in invariants {
            let dead = value.is_none();
            self.send(f, n, node, std::slice::from_ref(&value), dead);
        }
    }

    /// The instance of `static_frame` started by (`parent`, `iter`), created on first use.
    fn child_frame(&mut self, parent: usize, iter: usize, static_frame: usize) -> usize {
        if let Some(&c) = self.children.get(&(parent, iter, static_frame)) {
            return c;
        }
        let mut frame = Frame {
            static_frame,
            parent: Some((parent, iter)),
            iterations: BTreeMap::new(),
            iteration_count: 0,
            pending_inputs: self.cf.frames[static_frame].enter_count,
            invariants: vec![],
            deferred: vec![],
            live_exits: HashSet::new(),
        };
        frame.iterations.insert(0, self.new_iteration(static_frame));
        self.frames.push(Some(frame));
        let c = self.frames.len() - 1;
        self.children.insert((parent, iter, static_frame), c);
        self.iteration(parent, iter).outstanding_frames += 1;
        c
    }

    /// Retires (`f`, `iter`) if it is finished, then whatever that finishes in turn.
    fn maybe_complete(&mut self, mut f: usize, mut iter: usize) {
        loop {
            if f == 0 {
                return;
            }
            let frame = self.frame(f);
            let Some(it) = frame.iterations.get(&iter) else {
                return;
            };
            let earlier_done = if iter == 0 {
                frame.pending_inputs == 0
            } else {
                !frame.iterations.contains_key(&(iter - 1))
            };
            if it.outstanding_ops > 0 || it.outstanding_frames > 0 || !earlier_done {
                return;
            }
            frame.iterations.remove(&iter);
            if !frame.deferred.is_empty() {
                let deferred = std::mem::take(&mut frame.deferred);
                self.start_iteration(f);
                let n = self.frame(f).iteration_count;
                for (node, value) in deferred {
                    self.send(f, n, node, std::slice::from_ref(&value), false);
                }
            }
            let frame = self.frame(f);
            if frame.iterations.contains_key(&(iter + 1)) {
                iter += 1;
                continue;
            }
            if !frame.iterations.is_empty() || frame.pending_inputs > 0 {
                return;
            }
            // The frame is finished: exits that never carried a value are dead.
            let frame = self.frames[f].take().expect("a live frame");
            let (pf, pi) = frame.parent.expect("a child frame");
            for &exit in &self.cf.frames[frame.static_frame].exits {
                if !frame.live_exits.contains(&exit) {
                    self.send(pf, pi, exit, &[None], true);
                }
            }
            self.children.remove(&(pf, pi, frame.static_frame));
            self.iteration(pf, pi).outstanding_frames -= 1;
            f = pf;
            iter = pi;
        }
    }
}
