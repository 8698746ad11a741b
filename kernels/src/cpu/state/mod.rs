//! CPU kernels of the state ops: TF1 reference variables, resource variables, and the
//! optimizer apply ops. Variables live in the session's [`crate::ResourceMgr`].

use crate::KernelRegistry;

mod apply;
mod resource_vars;
mod variables;

pub use variables::{variable_key, variable_spec};

pub(crate) fn register(r: &mut KernelRegistry) {
    variables::register(r);
    resource_vars::register(r);
    apply::register(r);
}
