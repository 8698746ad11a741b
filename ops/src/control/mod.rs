//! Control ops: `NoOp` / `ControlTrigger` (control edges only) and TF1 dataflow control
//! flow (`Switch`, `Merge`, `Enter`, `Exit`, `NextIteration`, `LoopCond` and `Ref*` forms).

use rill_graph::Result;

mod control_flow;
mod no_op;
mod send_recv;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    no_op::register(r)?;
    control_flow::register(r)?;
    send_recv::register(r)?;
    Ok(())
}
