//! Rill: a TensorFlow-compatible static dataflow graph runtime.
//!
//! This root crate is a facade: [`prelude`] re-exports what a user needs to build, load and
//! save graphs; the `rill` binary is the command-line front end.

pub use rill_graph as graph;
pub use rill_ops as ops;
pub use rill_proto as proto;

/// Everything needed to build, import and export graphs.
pub mod prelude {
    pub use rill_graph::{DType, Error, Graph, Output, Result, Shape, Tensor};
}
