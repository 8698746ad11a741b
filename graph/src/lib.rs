//! Rill's graph layer: element types ([`DType`]), partially known shapes ([`Shape`]),
//! tensors ([`Tensor`]), typed attributes, device names, op definitions and their registry,
//! shape inference, the graph IR ([`Graph`]), validation, and GraphDef import/export.
//!
//! Invariant: this crate knows no particular op; ops are registered by `rill-ops`. It depends
//! only on `rill-proto`.

mod arena;
mod attr;
mod device;
mod dtype;
mod error;
mod graph;
mod graph_def;
mod op_def;
mod op_def_proto;
pub mod pass;
mod shape;
pub mod shape_fn;
mod tensor;
mod tensor_proto;
mod validate;

pub use arena::{plain_size, Arena, ArenaSlice, ARENA_ALIGN};
pub use attr::{AttrValue, Attrs, FuncAttr};
pub use device::DeviceSpec;
pub use dtype::DType;
pub use error::{Code, Error, Result};
pub use graph::{
    is_valid_node_name, parse_tensor_name, Graph, Node, NodeExtras, NodeId, NodeSpec, Output,
};
pub use graph_def::{read_graph_def, write_graph_def};
pub use op_def::{Allowed, ArgDef, ArgType, AttrDef, OpDef, OpDefBuilder, OpRegistry};
pub use pass::{Pass, PassContext, PassManager, PassRecord};
pub use shape::{Dim, Shape};
pub use shape_fn::{InferenceContext, ShapeFn};
pub use tensor::{element_count, try_with_capacity, Buffer, Dims, Element, ResourceHandle, Tensor};
pub use validate::is_back_edge;

/// The GraphDef producer version Rill writes on graphs it creates.
pub const PRODUCER_VERSION: i32 = 1994;
