//! The kernels of `CollectiveBcastSend` (the source rank, `_source_rank`) and
//! `CollectiveBcastRecv` (every other rank): a binomial tree rooted at the source (with
//! virtual rank v = rank - source mod n, rank v receives from v - 2^k, its highest bit,
//! and sends on to v + 2^j for every 2^j above v), log2(n) rounds.

use rill_graph::{DType, Error, Node, Result, Shape, Tensor};

use super::{spawn, Comm, Params};
use crate::cpu::math::util::attr_int;
use crate::cpu::state::wait::block_on;
use crate::{AsyncDone, Kernel, KernelContext};

struct Broadcast {
    params: Params,
    source: usize,
    /// The declared shape (`shape` attr), checked against what arrives.
    shape: Option<Shape>,
    is_source: bool,
}

fn create(node: &Node, is_source: bool) -> Result<Box<dyn Kernel>> {
    let params = Params::read(node)?;
    let source = attr_int(node, "_source_rank", 0)?;
    if source < 0 || source as usize >= params.size() {
        return Err(Error::invalid_argument(format!(
            "{}: source rank {source} is outside the group of {}",
            params.what,
            params.size()
        )));
    }
    if is_source != (source as usize == params.rank) {
        return Err(Error::invalid_argument(format!(
            "{}: rank {} runs {} but the source is rank {source}",
            params.what,
            params.rank,
            node.op_name()
        )));
    }
    let shape = match node.attr("shape") {
        Some(rill_graph::AttrValue::Shape(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Box::new(Broadcast {
        params,
        source: source as usize,
        shape,
        is_source,
    }))
}

pub(super) fn create_send(node: &Node) -> Result<Box<dyn Kernel>> {
    create(node, true)
}

pub(super) fn create_recv(node: &Node) -> Result<Box<dyn Kernel>> {
    create(node, false)
}

/// Runs the tree from this member's side: receives (unless it is the source), then sends.
fn tree(comm: &Comm, source: usize, value: Option<Tensor>) -> Result<Tensor> {
    let n = comm.size();
    let v = (comm.rank + n - source) % n;
    let real = |virt: usize| (virt + source) % n;
    let value = match value {
        Some(t) => t,
        None => {
            let high = 1usize << (usize::BITS - 1 - v.leading_zeros());
            comm.wait(comm.post(real(v - high), "b"))?
        }
    };
    let mut step = if v == 0 {
        1
    } else {
        1usize << (usize::BITS - v.leading_zeros())
    };
    while v + step < n {
        comm.send_tensor(real(v + step), "b", value.clone().detach())?;
        step <<= 1;
    }
    Ok(value)
}

impl Kernel for Broadcast {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        block_on(self, cx, inputs)
    }

    fn is_async(&self) -> bool {
        true
    }

    fn compute_async(&self, cx: &KernelContext, mut inputs: Vec<Tensor>, done: AsyncDone) {
        let p = &self.params;
        let value = if self.is_source {
            match inputs.pop() {
                Some(t) if t.dtype() == p.dtype => Some(t.detach()),
                _ => {
                    return done(Err(Error::invalid_argument(format!(
                        "{}: the source needs one {} input",
                        p.what, p.dtype
                    ))))
                }
            }
        } else {
            None
        };
        if p.size() == 1 {
            let result = value.ok_or_else(|| Error::internal("a group of one is its source"));
            return done(result.map(|t| vec![t]));
        }
        let comm = match p.comm(cx) {
            Ok(c) => c,
            Err(e) => return done(Err(e)),
        };
        let (source, shape, dtype, what) =
            (self.source, self.shape.clone(), p.dtype, p.what.clone());
        spawn(&p.what, done, move || {
            let t = tree(&comm, source, value)?;
            check(&what, dtype, shape.as_ref(), &t)?;
            Ok(t)
        });
    }
}

fn check(what: &str, dtype: DType, shape: Option<&Shape>, t: &Tensor) -> Result<()> {
    let fits = shape.is_none_or(|s| s.is_compatible_with(&t.shape()));
    if t.dtype() != dtype || !fits {
        return Err(Error::invalid_argument(format!(
            "{what}: received {} {:?}, expected {dtype} {}",
            t.dtype(),
            t.dims(),
            shape.map_or("of any shape".to_string(), |s| s.to_string())
        )));
    }
    Ok(())
}
