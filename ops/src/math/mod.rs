//! math ops.

use rill_graph::{OpRegistry, Result};

pub(crate) fn register(_r: &mut OpRegistry) -> Result<()> {
    Ok(())
}
