//! Rill's kernels: the [`Kernel`] trait, the [`KernelRegistry`] keyed by
//! (op, device type, dtype), and the CPU kernels (always built).
//!
//! A kernel is created once per node when a plan is compiled ([`KernelFactory`] reads and
//! checks the node's attrs then), and computed once per step with the node's input tensors.
//! Kernels follow TensorFlow's semantics exactly (broadcasting, padding, integer casts,
//! reduction rules).
//!
//! Invariants: `compute` returns one tensor per output of the node, of the node's output
//! dtypes; errors are typed ([`rill_graph::Error`]) and the executor attaches the node name.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use rill_graph::{Arena, DType, Element, Error, Node, Result, Tensor};

pub mod cpu;
pub mod gpu;
pub mod rendezvous;
mod resource;

pub use cpu::state::{variable_key, variable_spec};
pub use resource::{ResourceMgr, Variable};

/// Where a kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    Cpu,
}

impl DeviceType {
    pub fn name(self) -> &'static str {
        match self {
            DeviceType::Cpu => "CPU",
        }
    }
}

/// Per-step context handed to every kernel.
pub struct KernelContext<'a> {
    /// The node's name, for messages.
    pub node_name: &'a str,
    /// The session's resources (variables).
    pub resources: &'a ResourceMgr,
    /// For each data input that is a TF1 reference (`Ref(T)`), the variable it refers to,
    /// resolved when the plan was compiled.
    pub ref_inputs: &'a [Option<Arc<Variable>>],
    /// Whether each output is read in this step; empty means all are.
    pub outputs_needed: &'a [bool],
    /// The step's memory-plan arena, when the plan placed any tensor in one.
    pub arena: Option<&'a Arc<Arena>>,
    /// Where the memory plan put each output; empty means nowhere (the heap).
    pub output_memory: &'a [OutputMemory],
    /// The step's rendezvous, where `_Send` and `_Recv` meet (none in a one-device step).
    pub rendezvous: Option<&'a Arc<dyn rendezvous::Rendezvous>>,
    /// Resources that live for this step only (TensorFlow's step container: the stacks of
    /// TF1 loop gradients); none outside a step.
    pub step_resources: Option<&'a ResourceMgr>,
}

/// Where the memory plan put one output of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMemory {
    /// Not planned: the kernel allocates it.
    Heap,
    /// `bytes` bytes at byte `offset` of the step's arena.
    Arena { offset: usize, bytes: usize },
    /// In place: the output takes the buffer of data input `input`, which dies at this
    /// node (the kernel writes into the input it owns).
    InPlace {
        input: usize,
        offset: usize,
        bytes: usize,
    },
}

impl<'a> KernelContext<'a> {
    /// A context with no reference inputs, every output needed.
    pub fn new(node_name: &'a str, resources: &'a ResourceMgr) -> KernelContext<'a> {
        KernelContext {
            node_name,
            resources,
            ref_inputs: &[],
            outputs_needed: &[],
            arena: None,
            output_memory: &[],
            rendezvous: None,
            step_resources: None,
        }
    }

    /// A tensor for output `index` of `dims` whose every element the kernel will write: the
    /// range the memory plan gave that output when it fits, else a fresh zeroed buffer.
    /// Values already in a planned range are arbitrary (whatever an earlier tensor left).
    pub fn alloc_output<T: Element>(&self, index: usize, dims: &[usize]) -> Result<Tensor> {
        match self.arena_output::<T>(index, dims)? {
            Some(t) => Ok(t),
            None => Tensor::zeros(T::DTYPE, dims),
        }
    }

    /// Output `index` of shape `dims` in the arena range the memory plan gives it, or None
    /// when it has none (or it does not fit). The values are those the range held before.
    pub fn arena_output<T: Element>(&self, index: usize, dims: &[usize]) -> Result<Option<Tensor>> {
        if let (Some(arena), Some(OutputMemory::Arena { offset, bytes })) =
            (self.arena, self.output_memory.get(index))
        {
            let need = rill_graph::element_count(dims)?.saturating_mul(std::mem::size_of::<T>());
            if need <= *bytes && rill_graph::plain_size(T::DTYPE).is_some() {
                // SAFETY: the memory plan gives this output a range no tensor alive at the
                // same time overlaps (the executor orders reuse after the last reader).
                return unsafe { Tensor::in_arena(arena, *offset, T::DTYPE, dims) }.map(Some);
            }
        }
        Ok(None)
    }

    /// Whether the plan lets output `index` take over data input `input` (in place).
    pub fn may_reuse_input(&self, index: usize, input: usize) -> bool {
        matches!(self.output_memory.get(index), Some(OutputMemory::InPlace { input: i, .. }) if *i == input)
    }

    /// Whether a kernel holding `tensor` (data input `input`) alone may write output
    /// `index` over it: always without a memory plan; with one, only where the plan says
    /// so, or where the output is not planned and the input is not in the arena — so
    /// memory use follows the plan whatever order the executor ran the readers in.
    pub fn may_overwrite_input(&self, index: usize, input: usize, tensor: &Tensor) -> bool {
        match self.output_memory.get(index) {
            None => true,
            Some(OutputMemory::InPlace { input: i, .. }) => *i == input,
            Some(OutputMemory::Heap) => tensor.arena_slice().is_none(),
            Some(OutputMemory::Arena { .. }) => false,
        }
    }

    /// The variable behind reference input `i`, or InvalidArgument when that input is not
    /// a variable.
    pub fn ref_input(&self, i: usize) -> Result<Arc<Variable>> {
        self.ref_inputs.get(i).cloned().flatten().ok_or_else(|| {
            Error::invalid_argument(format!(
                "input {i} of '{}' must be a reference to a variable (VariableV2)",
                self.node_name
            ))
        })
    }

    /// Whether output `i` is read by anything in the step.
    pub fn output_needed(&self, i: usize) -> bool {
        self.outputs_needed.get(i).copied().unwrap_or(true)
    }
}

/// How a kernel treats memory, which tells the memory planner what it may do around it.
/// The default answers are the safe ones: inputs and outputs stay off the arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryTraits {
    /// Reads its inputs only through typed slices and keeps none of them after `compute`,
    /// so they may live in the step's arena.
    pub reads_arena_inputs: bool,
    /// Creates its outputs with [`KernelContext::alloc_output`] (or in place over an input),
    /// so they may be planned in the arena.
    pub writes_arena_outputs: bool,
    /// Output 0 may be written over an input of the same dtype and size that the kernel
    /// holds alone (elementwise kernels).
    pub in_place: bool,
    /// Output 0 may be input 0's buffer itself (Reshape and other views).
    pub forwards_input: bool,
}

impl MemoryTraits {
    /// Elementwise kernels: arena inputs and outputs, output over a dying input.
    pub const ELEMENTWISE: MemoryTraits = MemoryTraits {
        reads_arena_inputs: true,
        writes_arena_outputs: true,
        in_place: true,
        forwards_input: false,
    };
    /// Kernels that read slices and allocate their outputs through the plan.
    pub const PLANNED: MemoryTraits = MemoryTraits {
        reads_arena_inputs: true,
        writes_arena_outputs: true,
        in_place: false,
        forwards_input: false,
    };
    /// Kernels that read slices but allocate their (small) outputs themselves.
    pub const READS: MemoryTraits = MemoryTraits {
        reads_arena_inputs: true,
        writes_arena_outputs: false,
        in_place: false,
        forwards_input: false,
    };
    /// Kernels that return a view of input 0 (same buffer, other dims).
    pub const VIEW: MemoryTraits = MemoryTraits {
        reads_arena_inputs: true,
        writes_arena_outputs: false,
        in_place: false,
        forwards_input: true,
    };
}

/// The computation of one node.
pub trait Kernel: Send + Sync {
    /// What the memory planner may assume about this kernel (see [`MemoryTraits`]).
    fn memory_traits(&self) -> MemoryTraits {
        MemoryTraits::default()
    }

    /// Computes the node's outputs from its inputs. Inputs are owned so that a kernel may
    /// reuse an input's buffer for its output when nothing else holds it.
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;

    /// Whether the executor must call [`Kernel::compute_async`]: the kernel waits for
    /// something outside the step's dataflow (a `_Recv`), and must not hold a thread
    /// while it waits.
    fn is_async(&self) -> bool {
        false
    }

    /// Computes the outputs and hands them to `done`, perhaps later and on another thread;
    /// `done` is called exactly once. The default computes synchronously.
    fn compute_async(&self, cx: &KernelContext, inputs: Vec<Tensor>, done: AsyncDone) {
        done(self.compute(cx, inputs))
    }
}

/// What an asynchronous kernel calls with its outputs (or its error), exactly once.
pub type AsyncDone = Box<dyn FnOnce(Result<Vec<Tensor>>) + Send>;

/// Creates the kernel of a node (reading its attrs once).
pub type KernelFactory = fn(&Node) -> Result<Box<dyn Kernel>>;

/// Kernels by (op, device type, dtype); a kernel registered with dtype `None` serves every
/// dtype of its op (and checks the dtype itself when created).
#[derive(Default)]
pub struct KernelRegistry {
    kernels: HashMap<(String, DeviceType, Option<DType>), KernelFactory>,
}

impl KernelRegistry {
    pub fn new() -> KernelRegistry {
        KernelRegistry::default()
    }

    /// Registers a factory for `op` on `device` for `dtype` (`None`: any dtype).
    pub fn register(
        &mut self,
        op: &str,
        device: DeviceType,
        dtype: Option<DType>,
        factory: KernelFactory,
    ) {
        self.kernels
            .insert((op.to_string(), device, dtype), factory);
    }

    /// Registers a CPU factory for `op` serving every dtype.
    pub fn cpu(&mut self, op: &str, factory: KernelFactory) {
        self.register(op, DeviceType::Cpu, None, factory);
    }

    /// The dtype a node's kernel is selected by: its `T` attr, else `dtype`, else none.
    pub fn kernel_dtype(node: &Node) -> Option<DType> {
        ["T", "dtype", "SrcT"]
            .iter()
            .find_map(|a| node.attr(a).and_then(|v| v.as_type()))
    }

    /// Whether some kernel can run `node` on `device`.
    pub fn supports(&self, node: &Node, device: DeviceType) -> bool {
        self.factory(node, device).is_some()
    }

    fn factory(&self, node: &Node, device: DeviceType) -> Option<KernelFactory> {
        let op = node.op_name().to_string();
        let dtype = Self::kernel_dtype(node);
        self.kernels
            .get(&(op.clone(), device, dtype))
            .or_else(|| self.kernels.get(&(op, device, None)))
            .copied()
    }

    /// Creates the kernel for `node` on `device`; Unimplemented naming the op, dtype and
    /// device when there is none.
    pub fn create(&self, node: &Node, device: DeviceType) -> Result<Box<dyn Kernel>> {
        let factory = self.factory(node, device).ok_or_else(|| {
            let dtype = Self::kernel_dtype(node)
                .map(|d| format!(" for dtype {d}"))
                .unwrap_or_default();
            Error::unimplemented(format!(
                "no {} kernel for op {}{dtype}",
                device.name(),
                node.op_name()
            ))
        })?;
        factory(node).map_err(|e| e.at_node(&node.name, node.op_name()))
    }

    /// Ops with at least one kernel, sorted.
    pub fn ops(&self) -> Vec<&str> {
        let mut ops: Vec<&str> = self.kernels.keys().map(|(op, _, _)| op.as_str()).collect();
        ops.sort_unstable();
        ops.dedup();
        ops
    }

    /// The dtypes `op` has a kernel for on `device`, sorted: `Some(dtype)` for a kernel
    /// registered for that dtype, `None` for one that serves every dtype (and checks the
    /// dtype itself when created). Empty when `op` has no kernel on `device`.
    pub fn dtypes(&self, op: &str, device: DeviceType) -> Vec<Option<DType>> {
        let mut dtypes: Vec<Option<DType>> = self
            .kernels
            .keys()
            .filter(|(o, d, _)| o == op && *d == device)
            .map(|&(_, _, dtype)| dtype)
            .collect();
        dtypes.sort_unstable();
        dtypes
    }
}

/// Every kernel Rill has (built once).
pub fn registry() -> Arc<KernelRegistry> {
    static REGISTRY: OnceLock<Arc<KernelRegistry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            let mut r = KernelRegistry::new();
            cpu::register(&mut r);
            Arc::new(r)
        })
        .clone()
}

/// An error for a dtype a kernel does not handle.
pub fn unsupported_dtype(op: &str, dtype: DType) -> Error {
    Error::unimplemented(format!("op {op} has no CPU kernel for dtype {dtype}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unused(_: &Node) -> Result<Box<dyn Kernel>> {
        Err(Error::internal("not created in this test"))
    }

    #[test]
    fn dtypes_lists_each_op_s_kernels_by_device() {
        let mut r = KernelRegistry::new();
        r.register("A", DeviceType::Cpu, Some(DType::I32), unused);
        r.register("A", DeviceType::Cpu, Some(DType::F32), unused);
        r.cpu("B", unused);
        assert_eq!(
            r.dtypes("A", DeviceType::Cpu),
            vec![Some(DType::F32), Some(DType::I32)]
        );
        assert_eq!(r.dtypes("B", DeviceType::Cpu), vec![None]);
        assert!(r.dtypes("C", DeviceType::Cpu).is_empty());
        assert_eq!(registry().dtypes("MatMul", DeviceType::Cpu), vec![None]);
    }
}
