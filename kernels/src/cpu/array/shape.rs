//! `Shape`, `ShapeN`, `Size` and `Rank`: a tensor's shape as a tensor.
//!
//! Invariant: outputs are int32 or int64 as `out_type` says (`Rank` is always int32); a
//! value that does not fit int32 is an InvalidArgument, never a wrapped number.

use rill_graph::{DType, Node, Result, Tensor};

use super::util::{attr_index_type, index_tensor, kernel, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Shape", shape);
    r.cpu("ShapeN", shape_n);
    r.cpu("Size", size);
    r.cpu("Rank", rank);
}

fn shape_of(t: &Tensor, out: DType) -> Result<Tensor> {
    let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
    index_tensor(out, &[dims.len()], dims)
}

fn shape(node: &Node) -> Result<Box<dyn Kernel>> {
    let out = attr_index_type(node, "out_type", DType::I32)?;
    kernel(move |inputs| {
        let [x] = take(inputs)?;
        Ok(vec![shape_of(&x, out)?])
    })
}

fn shape_n(node: &Node) -> Result<Box<dyn Kernel>> {
    let out = attr_index_type(node, "out_type", DType::I32)?;
    kernel(move |inputs| inputs.iter().map(|x| shape_of(x, out)).collect())
}

fn size(node: &Node) -> Result<Box<dyn Kernel>> {
    let out = attr_index_type(node, "out_type", DType::I32)?;
    kernel(move |inputs| {
        let [x] = take(inputs)?;
        Ok(vec![index_tensor(out, &[], vec![x.num_elements() as i64])?])
    })
}

fn rank(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        Ok(vec![Tensor::scalar(x.rank() as i32)])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{DType, Tensor};

    #[test]
    fn shapes_sizes_ranks() {
        let x = Tensor::zeros(DType::Bool, &[2, 0, 3]).unwrap();
        assert_eq!(
            ints(&run1("Shape", &[], vec![x.clone()]).unwrap()),
            (vec![3], vec![2, 0, 3])
        );
        let s = run1("Shape", &[("out_type", DType::I64.into())], vec![x.clone()]).unwrap();
        assert_eq!(longs(&s), (vec![3], vec![2, 0, 3]));
        assert_eq!(
            ints(&run1("Size", &[], vec![x.clone()]).unwrap()),
            (vec![], vec![0])
        );
        assert_eq!(
            ints(&run1("Rank", &[], vec![x.clone()]).unwrap()),
            (vec![], vec![3])
        );
        let scalar = Tensor::scalar(1.5f32);
        assert_eq!(
            ints(&run1("Shape", &[], vec![scalar.clone()]).unwrap()),
            (vec![0], vec![])
        );
        assert_eq!(
            ints(&run1("Size", &[], vec![scalar.clone()]).unwrap()),
            (vec![], vec![1])
        );
        let out = run("ShapeN", &[("N", 2i64.into())], vec![x, scalar]).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(ints(&out[1]), (vec![0], vec![]));
        assert!(run(
            "Shape",
            &[("out_type", DType::F32.into())],
            vec![f(&[1], &[1.0])]
        )
        .is_err());
    }
}
