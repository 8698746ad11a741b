//! The `CollectiveReduce` kernel: copies its input, all-reduces the copy with the group
//! (the algorithm `communication_hint` names, or the automatic choice by size and hosts)
//! and applies `final_op` (`Div`: by the group size) on every member.

use rill_graph::{Error, Node, Result, Tensor};

use super::algorithms::{all_reduce, Algorithm};
use super::elements::{dispatch_wire, MergeOp, Wire};
use super::{spawn, Params};
use crate::cpu::math::util::attr_str;
use crate::cpu::state::wait::block_on;
use crate::{AsyncDone, Kernel, KernelContext};

struct Reduce {
    params: Params,
    merge: MergeOp,
    divide: bool,
}

pub(super) fn create(node: &Node) -> Result<Box<dyn Kernel>> {
    let params = Params::read(node)?;
    let merge = MergeOp::parse(&attr_str(node, "merge_op", "Add")?)?;
    let divide = match attr_str(node, "final_op", "Id")?.as_str() {
        "Id" => false,
        "Div" => true,
        other => {
            return Err(Error::invalid_argument(format!(
                "final_op '{other}' is not one of Id, Div"
            )))
        }
    };
    Ok(Box::new(Reduce {
        params,
        merge,
        divide,
    }))
}

impl Reduce {
    fn run<T: Wire>(&self, comm: Option<super::Comm>, input: &Tensor) -> Result<Tensor> {
        let mut buf = input.as_slice::<T>()?.to_vec();
        if let Some(comm) = comm {
            let p = &self.params;
            let bytes = std::mem::size_of_val(buf.as_slice());
            let algorithm = Algorithm::choose(&p.hint, bytes, &p.hosts);
            all_reduce(algorithm, &comm, &mut buf, self.merge, &p.hosts)?;
        }
        if self.divide {
            T::divide(&mut buf, self.params.size());
        }
        Tensor::new(input.dims(), buf)
    }
}

impl Kernel for Reduce {
    fn compute(&self, cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        block_on(self, cx, inputs)
    }

    fn is_async(&self) -> bool {
        true
    }

    fn compute_async(&self, cx: &KernelContext, mut inputs: Vec<Tensor>, done: AsyncDone) {
        let Some(input) = inputs.pop() else {
            return done(Err(Error::invalid_argument(
                "CollectiveReduce takes one input",
            )));
        };
        if input.dtype() != self.params.dtype {
            return done(Err(Error::invalid_argument(format!(
                "{}: declares {} but got a {} input",
                self.params.what,
                self.params.dtype,
                input.dtype()
            ))));
        }
        let comm = match self.params.peers(cx) {
            Ok(c) => c,
            Err(e) => return done(Err(e)),
        };
        let me = Reduce {
            params: self.params.clone(),
            merge: self.merge,
            divide: self.divide,
        };
        let what = self.params.what.clone();
        spawn(
            &what,
            done,
            move || dispatch_wire!(me.params.dtype, "CollectiveReduce", T => me.run::<T>(comm, &input)),
        );
    }
}
