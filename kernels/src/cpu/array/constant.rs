//! `Const`, `Placeholder`, `PlaceholderWithDefault` and `NoOp`: graph inputs and constants.
//!
//! Invariants: `Const` hands out clones of its `value` attr (sharing the buffer, never
//! copying); `Placeholder` only computes when nothing fed it, which is always an error.

use rill_graph::{AttrValue, Error, Node, Result};

use super::util::{attr_type, kernel, take};
use crate::{Kernel, KernelRegistry};

pub(super) fn register(r: &mut KernelRegistry) {
    r.cpu("Const", constant);
    r.cpu("Placeholder", placeholder);
    r.cpu("PlaceholderWithDefault", forward_input);
    r.cpu("NoOp", no_op);
}

fn constant(node: &Node) -> Result<Box<dyn Kernel>> {
    let value = match node.attr("value") {
        Some(AttrValue::Tensor(t)) => t.clone(),
        _ => return Err(Error::invalid_argument("Const needs a tensor attr 'value'")),
    };
    if let Some(dtype) = node.attr("dtype").and_then(AttrValue::as_type) {
        if dtype != value.dtype() {
            return Err(Error::invalid_argument(format!(
                "Type mismatch between value ({}) and dtype ({dtype})",
                value.dtype()
            )));
        }
    }
    kernel(move |_| Ok(vec![value.clone()]))
}

fn placeholder(node: &Node) -> Result<Box<dyn Kernel>> {
    let dtype = attr_type(node, "dtype", None)?;
    let shape = node.attr("shape").and_then(AttrValue::as_shape);
    let shape = match shape.and_then(|s| s.rank()) {
        Some(rank) if rank > 0 => format!(" and shape {}", shape.expect("has rank")),
        _ => String::new(),
    };
    let message = format!(
        "You must feed a value for placeholder tensor '{}' with dtype {dtype}{shape}",
        node.name
    );
    kernel(move |_| Err(Error::failed_precondition(message.clone())))
}

fn forward_input(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let [x] = take(inputs)?;
        Ok(vec![x])
    })
}

fn no_op(_node: &Node) -> Result<Box<dyn Kernel>> {
    kernel(|_| Ok(vec![]))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use rill_graph::{Code, DType, Shape, Tensor};

    #[test]
    fn const_shares_its_value() {
        let v = f(&[2], &[1.0, 2.0]);
        let out = run1(
            "Const",
            &[("value", v.clone().into()), ("dtype", DType::F32.into())],
            vec![],
        )
        .unwrap();
        assert_eq!(out, v);
        let (code, msg) = run_err(
            "Const",
            &[("value", v.into()), ("dtype", DType::I32.into())],
            vec![],
        );
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.contains("Type mismatch"), "{msg}");
    }

    #[test]
    fn placeholder_must_be_fed() {
        let a = [
            ("dtype", DType::F32.into()),
            ("shape", Shape::from([-1i64, 784]).into()),
        ];
        let (code, msg) = run_err("Placeholder", &a, vec![]);
        assert_eq!(code, Code::FailedPrecondition);
        assert_eq!(
            msg,
            "You must feed a value for placeholder tensor 'test_Placeholder' with dtype float and shape [?,784]"
        );
        let (_, msg) = run_err("Placeholder", &[("dtype", DType::I64.into())], vec![]);
        assert!(msg.ends_with("with dtype int64"), "{msg}");
    }

    #[test]
    fn with_default_and_no_op() {
        let x = Tensor::scalar(true);
        assert_eq!(
            run1("PlaceholderWithDefault", &[], vec![x.clone()]).unwrap(),
            x
        );
        assert!(run("NoOp", &[], vec![]).unwrap().is_empty());
    }
}
