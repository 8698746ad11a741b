//! TF1 control flow (`Switch`, `Merge`, `Enter`, `Exit`, `NextIteration`, `LoopCond`):
//! the frame analysis of a plan ([`graph`]), frame and iteration state with dead-tensor
//! propagation ([`frames`]) and the step runner ([`run`]). A plan with any control-flow op
//! runs here instead of on the acyclic executor; everything else is unchanged.
//!
//! Invariant: a plan that reaches this module has every node in one partition (the
//! session keeps graphs with control flow on one device).

pub mod frames;
pub mod graph;
pub mod run;

pub use graph::{is_control_flow_op, needs_control_flow, ControlFlowGraph};
pub use run::run_step;

#[cfg(test)]
mod tests;
