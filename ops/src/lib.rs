//! Rill's ops: TensorFlow's op definitions (names, arg order, attrs and defaults), each with
//! its shape function, one file per op or tight family, and the graph builder API.
//!
//! Invariant: [`registry`] holds every op Rill knows, declared exactly once; the families
//! below are the only places ops are declared.

use std::sync::{Arc, OnceLock};

pub use rill_graph::{OpRegistry, Result};

pub mod array;
mod builder;
pub mod control;
pub mod math;
pub mod nn;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;

pub use builder::{Builder, NodeBuilder, ScopeGuard};

/// The registry of every op Rill supports (built once).
pub fn registry() -> Arc<OpRegistry> {
    static REGISTRY: OnceLock<Arc<OpRegistry>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            let mut r = OpRegistry::new();
            let families: [fn(&mut OpRegistry) -> Result<()>; 5] = [
                array::register,
                control::register,
                math::register,
                nn::register,
                state::register,
            ];
            for register in families {
                // A failure is a bug in an op declaration, caught by the tests below.
                register(&mut r).expect("op declarations are valid");
            }
            Arc::new(r)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_op_declaration_is_valid() {
        assert!(!super::registry().is_empty());
    }
}
