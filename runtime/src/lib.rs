//! Rill's runtime: compiling a step into a [`plan::Plan`] (pruning, kernels, index tables),
//! the parallel dataflow [`executor`], and [`Session`].
//!
//! Invariant: the hot path (`Session::run` with a cached signature, `Callable::run`) does no
//! graph work: only feed checks, the executor and the kernels.

pub mod checkpoint;
pub mod collective_groups;
pub mod control_flow;
pub mod device;
pub mod executor;
pub mod functions;
pub mod fusion;
pub mod memory;
pub mod multi_device;
pub mod optimize;
pub mod partition;
pub mod passes;
pub mod placer;
pub mod plan;
mod session;
pub mod testing;

pub use checkpoint::CheckpointManager;
pub use executor::NodeTiming;
pub use session::{check_feeds, feed_specs, Callable, RunStep, Session, SessionOptions};
