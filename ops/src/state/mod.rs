//! State ops: TF1 reference variables and their assignments, resource variables, and the
//! optimizer update ops that modify variables in place.

use rill_graph::Result;

mod init;
mod resource_variable;
mod training;
mod variable;

pub use init::INITIALIZERS;
pub use training::{AdamParams, RmsPropParams};

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    variable::register(r)?;
    resource_variable::register(r)?;
    training::register(r)?;
    Ok(())
}
