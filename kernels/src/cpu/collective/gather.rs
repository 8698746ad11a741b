//! The `CollectiveGather` kernel: ring all-gather of equal-shaped inputs, concatenated
//! along dim 0 in rank order (at step s, rank r passes block r-s on to rank r+1 and
//! receives block r-s-1 from rank r-1). Every hint runs the ring: gathers are bandwidth
//! bound, and there is nothing to merge.

use rill_graph::{Error, Node, Result, Tensor};

use super::elements::{dispatch_wire, Wire};
use super::{spawn, Comm, Params};
use crate::cpu::state::wait::block_on;
use crate::{AsyncDone, Kernel, KernelContext};

struct Gather {
    params: Params,
}

pub(super) fn create(node: &Node) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Gather {
        params: Params::read(node)?,
    }))
}

fn ring_gather<T: Wire>(comm: Option<Comm>, n: usize, input: &Tensor) -> Result<Tensor> {
    let block = input.as_slice::<T>()?;
    let m = block.len();
    let mut out = vec![T::default(); m * n];
    let mut dims = input.dims().to_vec();
    dims[0] *= n;
    let Some(comm) = comm else {
        out.copy_from_slice(block);
        return Tensor::new(&dims, out);
    };
    let r = comm.rank;
    let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
    out[r * m..(r + 1) * m].copy_from_slice(block);
    let incoming: Vec<_> = (0..n - 1)
        .map(|s| comm.post(prev, &format!("g{s}")))
        .collect();
    comm.send(next, "g0", block.to_vec())?;
    for (s, inc) in incoming.into_iter().enumerate() {
        let b = (r + 2 * n - s - 1) % n;
        let got = comm.wait_values::<T>(inc, m)?;
        let values = got.as_slice::<T>()?;
        out[b * m..(b + 1) * m].copy_from_slice(values);
        if s + 1 < n - 1 {
            comm.send(next, &format!("g{}", s + 1), values.to_vec())?;
        }
    }
    Tensor::new(&dims, out)
}

impl Kernel for Gather {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        block_on(self, cx, inputs)
    }

    fn is_async(&self) -> bool {
        true
    }

    fn compute_async(&self, cx: &KernelContext, mut inputs: Vec<Tensor>, done: AsyncDone) {
        let p = &self.params;
        let input = match inputs.pop() {
            Some(t) if t.rank() >= 1 && t.dtype() == p.dtype => t,
            Some(t) => {
                return done(Err(Error::invalid_argument(format!(
                    "{}: needs a {} input of rank >= 1, got {} {:?}",
                    p.what,
                    p.dtype,
                    t.dtype(),
                    t.dims()
                ))))
            }
            None => {
                return done(Err(Error::invalid_argument(
                    "CollectiveGather takes one input",
                )))
            }
        };
        let n = p.size();
        let comm = match p.peers(cx) {
            Ok(c) => c,
            Err(e) => return done(Err(e)),
        };
        let dtype = p.dtype;
        spawn(
            &p.what,
            done,
            move || dispatch_wire!(dtype, "CollectiveGather", T => ring_gather::<T>(comm, n, &input)),
        );
    }
}
