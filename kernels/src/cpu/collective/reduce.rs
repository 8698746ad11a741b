//! The `CollectiveReduce` kernel: all-reduces its input in place (copy on write) with the
//! group (the algorithm `communication_hint` names, or the automatic choice by size and
//! hosts) and applies `final_op` (`Div`: by the group size) on every member.

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
    /// Reduces in place: the input's own buffer when no other tensor shares it (the
    /// usual case: the collective is its only consumer), a copy otherwise.
    fn run<T: Wire>(&self, comm: Option<super::Comm>, input: Tensor) -> Result<Tensor> {
        let mut output = input.detach();
        let buf = output.as_mut_slice::<T>()?;
        if let Some(comm) = comm {
            let p = &self.params;
            let bytes = std::mem::size_of_val(buf);
            let algorithm = Algorithm::choose(&p.hint, bytes, &p.hosts);
            all_reduce(algorithm, &comm, buf, self.merge, &p.hosts)?;
        }
        if self.divide {
            T::divide(buf, self.params.size());
        }
        Ok(output)
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
            move || dispatch_wire!(me.params.dtype, "CollectiveReduce", T => me.run::<T>(comm, input)),
        );
    }
}
