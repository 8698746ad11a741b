//! Array ops: graph inputs and constants, shape manipulation, slicing, gathering, casting.

use rill_graph::{OpRegistry, Result};

mod placeholder;

pub(crate) fn register(r: &mut OpRegistry) -> Result<()> {
    placeholder::register(r)?;
    Ok(())
}
