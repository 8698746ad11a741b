//! Control ops: `NoOp` / `ControlTrigger` (control edges only) and TF1 dataflow control
//! flow (`Switch`, `Merge`, `Enter`, `Exit`, `NextIteration`, `LoopCond` and `Ref*` forms),
//! and TF2's functional calls, conditionals and loops (lowered before they run).

use rill_graph::Result;

mod cond_gradient;
mod control_flow;
mod functional;
mod no_op;
mod send_recv;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    no_op::register(r)?;
    control_flow::register(r)?;
    cond_gradient::register(r)?;
    functional::register(r)?;
    send_recv::register(r)?;
    Ok(())
}
