//! Fusion passes: declared patterns that rewrite groups of nodes into one fused node.
//!
//! - [`FoldBatchNorm`]: inference batch norms after convolutions become a folded constant
//!   filter and a `BiasAdd`.
//! - [`FuseContraction`]: `MatMul` / `Conv2D` + `BiasAdd` (+ `Add`) (+ activation) become
//!   `_FusedMatMul` / `_FusedConv2D`.
//! - [`FuseElementwise`]: trees of elementwise float ops become `_FusedElementwise`.
//!
//! `pattern` holds what they share: [`pattern::Pattern`] trees of op alternatives with
//! captures, the [`pattern::Matcher`] and the [`pattern::replace`] rewrite.
//!
//! Invariants (every pass): results stay the same (the fused kernels compute what the
//! unfused ops compute); a node that is fed, fetched or a target is never absorbed, except
//! that the last node of a fused chain gives the fused node its name (so fetching it still
//! works); nothing is fused across devices; every rewrite is noted; `run` returns whether
//! the graph changed. Fusion runs after gradients are built (fused ops have none).

#[cfg(test)]
mod elementwise_tests;
mod fold_batch_norm;
mod fuse_contraction;
mod fuse_elementwise;
pub mod pattern;
#[cfg(test)]
mod tests;

pub use fold_batch_norm::FoldBatchNorm;
pub use fuse_contraction::FuseContraction;
pub use fuse_elementwise::{Fusable, FuseElementwise, FUSABLE};

/// The fusion passes in the order they are meant to run as one group: batch norms fold
/// into convolutions first (leaving a `BiasAdd` to fuse), then contractions take their
/// bias and activation, then what remains elementwise fuses.
pub fn fusion_passes() -> Vec<Box<dyn rill_graph::Pass>> {
    vec![
        Box::new(FoldBatchNorm),
        Box::new(FuseContraction),
        Box::new(FuseElementwise),
    ]
}
