//! State ops: TF1 reference variables and their assignments, resource variables, and the
//! optimizer update ops that modify variables in place.

use rill_graph::{OpRegistry, Result};

mod resource_variable;
mod training;
mod variable;

pub use training::{AdamParams, RmsPropParams};

pub(crate) fn register(r: &mut OpRegistry) -> Result<()> {
    variable::register(r)?;
    resource_variable::register(r)?;
    training::register(r)?;
    Ok(())
}
