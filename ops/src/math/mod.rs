//! Math ops: elementwise unary and binary ops (declared by tables), n-ary ops (`AddN`,
//! `Select`, `ClipByValue`), reductions, cumulative scans and matrix products; each with
//! its shape function and builder methods.

use rill_graph::Result;

mod binary;
pub(crate) mod common;
mod fused_elementwise;
pub(crate) mod fused_matmul;
mod matmul;
mod nary;
mod reduction;
mod scan;
pub(crate) mod unary;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    unary::register(r)?;
    binary::register(r)?;
    nary::register(r)?;
    reduction::register(r)?;
    scan::register(r)?;
    matmul::register(r)?;
    fused_elementwise::register(r)?;
    fused_matmul::register(r)?;
    Ok(())
}
