//! The static side of TF1 control flow: for a compiled [`Plan`], every edge between plan
//! nodes (data and control), what kind of control-flow node each node is, and which
//! *frame* (while-loop body) each node belongs to.
//!
//! Frames follow TensorFlow's rule: a node's frame is that of its inputs, except that the
//! output of an `Enter` is in the child frame named by its `frame_name` attr and the output
//! of an `Exit` is in the parent frame. Nodes without inputs are in the root frame.
//!
//! Invariants: every node's inputs agree on its frame (InvalidArgument naming the node
//! otherwise); the back edge `NextIteration -> Merge` is the only edge against the plan's
//! topological order; fed tensors and fetched nodes are in the root frame.

use std::collections::HashMap;

use rill_graph::{Error, NodeId, Output, Result};

use crate::plan::Plan;

/// What the executor does specially with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Runs its kernel when every input has arrived; dead if any input is dead.
    Normal,
    /// Kills the output its predicate does not select.
    Switch,
    /// Fires on its first live data input, or dead when every data input is dead.
    Merge,
    /// Moves its input into iteration 0 of a child frame.
    Enter {
        child: usize,
        /// The value is the same in every iteration (a loop invariant).
        is_constant: bool,
    },
    /// Moves its input to the parent frame (dead values only when the frame ends).
    Exit,
    /// Moves its input to the next iteration (dead values stop here).
    NextIteration,
    /// Never dead, whatever its inputs.
    ControlTrigger,
}

/// One edge out of a node.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub dst: usize,
    /// The input of `dst` it feeds; `None` for a control edge.
    pub input: Option<usize>,
    /// The output of the source it carries (data edges).
    pub port: usize,
}

/// A while-loop frame, as declared by the graph (one runtime instance per parent iteration).
#[derive(Debug, Clone)]
pub struct StaticFrame {
    pub name: String,
    pub parent: Option<usize>,
    /// Plan nodes in the frame; a node's index here is its local index.
    pub nodes: Vec<usize>,
    /// How many `Enter` nodes feed the frame: iteration 0 is complete only after all ran.
    pub enter_count: u32,
    /// The frame's `Exit` nodes.
    pub exits: Vec<usize>,
    /// Most iterations that may run at once (the `Enter`s' `parallel_iterations`).
    pub parallel_iterations: usize,
}

/// The control-flow view of a plan.
#[derive(Debug)]
pub struct ControlFlowGraph {
    pub kinds: Vec<Kind>,
    pub out_edges: Vec<Vec<Edge>>,
    /// All data inputs of each node (fed, variable and produced).
    pub num_inputs: Vec<usize>,
    /// Data inputs that come from plan nodes (not fed).
    pub data_inputs: Vec<u32>,
    pub control_inputs: Vec<u32>,
    pub frame_of: Vec<usize>,
    pub local_index: Vec<usize>,
    /// Frame 0 is the root.
    pub frames: Vec<StaticFrame>,
    /// Inputs that are fed: (node, input, feed index).
    pub fed_inputs: Vec<(usize, usize, usize)>,
    /// Where each fetch comes from: a feed or a node's output.
    pub fetches: Vec<FetchSource>,
}

#[derive(Debug, Clone, Copy)]
pub enum FetchSource {
    Feed(usize),
    Node(usize, usize),
}

/// Ops that make a plan need the control-flow executor.
pub fn is_control_flow_op(op: &str) -> bool {
    matches!(
        op,
        "Switch"
            | "RefSwitch"
            | "Merge"
            | "RefMerge"
            | "Enter"
            | "RefEnter"
            | "Exit"
            | "RefExit"
            | "NextIteration"
            | "RefNextIteration"
            | "LoopCond"
            | "ControlTrigger"
    )
}

impl ControlFlowGraph {
    /// Analyses `plan`, compiled for `fetches` (the fetched tensors, in order).
    pub fn new(plan: &Plan, fetches: &[Output]) -> Result<ControlFlowGraph> {
        let graph = &plan.graph;
        let n = plan.nodes.len();
        let index: HashMap<NodeId, usize> = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        let feed_index: HashMap<Output, usize> = plan
            .feeds
            .iter()
            .enumerate()
            .map(|(i, &o)| (o, i))
            .collect();
        let fully_fed = |id: NodeId| {
            let k = graph.node(id).num_outputs();
            k > 0 && (0..k).all(|i| feed_index.contains_key(&id.output(i)))
        };
        let mut out_edges = vec![Vec::new(); n];
        let mut data_inputs = vec![0u32; n];
        let mut control_inputs = vec![0u32; n];
        let mut fed_inputs = vec![];
        // Plan-node sources of each node's inputs, for the frame analysis: (source, is a
        // back edge).
        let mut sources: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
        for (j, p) in plan.nodes.iter().enumerate() {
            let node = graph.node(p.id);
            for (k, o) in node.inputs.iter().enumerate() {
                if let Some(&f) = feed_index.get(o) {
                    fed_inputs.push((j, k, f));
                    continue;
                }
                let src = *index.get(&o.node).ok_or_else(|| {
                    Error::internal("an input of a plan node is not in the plan")
                        .at_node(&node.name, node.op_name())
                })?;
                out_edges[src].push(Edge {
                    dst: j,
                    input: Some(k),
                    port: o.index,
                });
                data_inputs[j] += 1;
                let back = rill_graph::is_back_edge(graph.node(o.node).op_name(), node.op_name());
                sources[j].push((src, back));
            }
            for &c in node.control_inputs.iter().filter(|&&c| !fully_fed(c)) {
                let src = *index.get(&c).ok_or_else(|| {
                    Error::internal("a control input of a plan node is not in the plan")
                        .at_node(&node.name, node.op_name())
                })?;
                out_edges[src].push(Edge {
                    dst: j,
                    input: None,
                    port: 0,
                });
                control_inputs[j] += 1;
                sources[j].push((src, false));
            }
        }
        let mut analysis = FrameAnalysis {
            frames: vec![StaticFrame {
                name: String::new(),
                parent: None,
                nodes: vec![],
                enter_count: 0,
                exits: vec![],
                parallel_iterations: usize::MAX,
            }],
            by_name: HashMap::new(),
        };
        let mut kinds = vec![Kind::Normal; n];
        let mut frame_of = vec![usize::MAX; n];
        // Plan nodes are in topological order (back edges excepted), so every forward
        // source's frame is known when a node is reached.
        for j in 0..n {
            let p = &plan.nodes[j];
            let node = graph.node(p.id);
            let mut frame: Option<usize> = None;
            for &(src, back) in &sources[j] {
                if back {
                    continue;
                }
                let f = analysis.output_frame(plan, src, &kinds, &frame_of)?;
                match frame {
                    None => frame = Some(f),
                    Some(g) if g == f => {}
                    Some(g) => {
                        return Err(Error::invalid_argument(format!(
                            "node has inputs from different frames: '{}' and '{}'",
                            analysis.frames[g].name, analysis.frames[f].name
                        ))
                        .at_node(&node.name, node.op_name()))
                    }
                }
            }
            let frame = frame.unwrap_or(0);
            frame_of[j] = frame;
            kinds[j] = match p.op.as_str() {
                "Switch" | "RefSwitch" => Kind::Switch,
                "Merge" | "RefMerge" => Kind::Merge,
                "Exit" | "RefExit" => {
                    if frame == 0 {
                        return Err(Error::invalid_argument("Exit outside of any while loop")
                            .at_node(&node.name, node.op_name()));
                    }
                    analysis.frames[frame].exits.push(j);
                    Kind::Exit
                }
                "NextIteration" | "RefNextIteration" => Kind::NextIteration,
                "ControlTrigger" => Kind::ControlTrigger,
                "Enter" | "RefEnter" => {
                    let name = node
                        .attr("frame_name")
                        .and_then(|a| a.as_str())
                        .ok_or_else(|| {
                            Error::invalid_argument("Enter needs a frame_name")
                                .at_node(&node.name, node.op_name())
                        })?
                        .to_string();
                    let parallel = node
                        .attr("parallel_iterations")
                        .and_then(|a| a.as_int())
                        .unwrap_or(10)
                        .max(1) as usize;
                    let is_constant = node
                        .attr("is_constant")
                        .and_then(|a| a.as_bool())
                        .unwrap_or(false);
                    let child = analysis.child(frame, &name);
                    let c = &mut analysis.frames[child];
                    c.enter_count += 1;
                    c.parallel_iterations = c.parallel_iterations.min(parallel);
                    Kind::Enter { child, is_constant }
                }
                _ => Kind::Normal,
            };
        }
        for &(j, _, _) in &fed_inputs {
            if frame_of[j] != 0 {
                let node = &plan.nodes[j];
                return Err(Error::invalid_argument(
                    "a fed tensor is read inside a while loop (it must enter through Enter)",
                )
                .at_node(&node.name, &node.op));
            }
        }
        let mut local_index = vec![0; n];
        for j in 0..n {
            let f = &mut analysis.frames[frame_of[j]];
            local_index[j] = f.nodes.len();
            f.nodes.push(j);
        }
        let fetches = fetches
            .iter()
            .map(|o| match feed_index.get(o) {
                Some(&f) => Ok(FetchSource::Feed(f)),
                None => {
                    let j = *index
                        .get(&o.node)
                        .ok_or_else(|| Error::internal("a fetched node is not in the plan"))?;
                    let frame = analysis.output_frame(plan, j, &kinds, &frame_of)?;
                    if frame != 0 {
                        let node = &plan.nodes[j];
                        return Err(Error::invalid_argument(format!(
                            "cannot fetch '{}': it is inside the while loop '{}'",
                            graph.tensor_name(*o),
                            analysis.frames[frame].name
                        ))
                        .at_node(&node.name, &node.op));
                    }
                    Ok(FetchSource::Node(j, o.index))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ControlFlowGraph {
            kinds,
            out_edges,
            num_inputs: plan.nodes.iter().map(|p| p.input_slots.len()).collect(),
            data_inputs,
            control_inputs,
            frame_of,
            local_index,
            frames: analysis.frames,
            fed_inputs,
            fetches,
        })
    }

    /// The nodes of the root frame that wait for nothing.
    pub fn roots(&self) -> Vec<usize> {
        self.frames[0]
            .nodes
            .iter()
            .copied()
            .filter(|&j| self.data_inputs[j] + self.control_inputs[j] == 0)
            .collect()
    }
}

struct FrameAnalysis {
    frames: Vec<StaticFrame>,
    by_name: HashMap<(usize, String), usize>,
}

impl FrameAnalysis {
    /// The frame named `name` inside `parent`, created on first use.
    fn child(&mut self, parent: usize, name: &str) -> usize {
        if let Some(&f) = self.by_name.get(&(parent, name.to_string())) {
            return f;
        }
        self.frames.push(StaticFrame {
            name: name.to_string(),
            parent: Some(parent),
            nodes: vec![],
            enter_count: 0,
            exits: vec![],
            parallel_iterations: usize::MAX,
        });
        let f = self.frames.len() - 1;
        self.by_name.insert((parent, name.to_string()), f);
        f
    }

    /// The frame the outputs of plan node `src` are in.
    fn output_frame(
        &self,
        plan: &Plan,
        src: usize,
        kinds: &[Kind],
        frame_of: &[usize],
    ) -> Result<usize> {
        let f = frame_of[src];
        if f == usize::MAX {
            let node = &plan.nodes[src];
            return Err(Error::internal("plan nodes are not in topological order")
                .at_node(&node.name, &node.op));
        }
        Ok(match kinds[src] {
            Kind::Enter { child, .. } => child,
            Kind::Exit => self.frames[f].parent.unwrap_or(0),
            _ => f,
        })
    }
}

/// Whether any node of the plan is a control-flow op.
pub fn needs_control_flow(plan: &Plan) -> bool {
    plan.nodes.iter().any(|n| is_control_flow_op(&n.op))
}
