//! Losses: `SoftmaxCrossEntropyWithLogits` (dense labels, broadcasting to a
//! `[batch, classes]` matrix), `SparseSoftmaxCrossEntropyWithLogits` (class-index labels)
//! and `L2Loss`; with builder methods.
//!
//! Shapes: `loss` is `[batch]`, `backprop` is `[batch, classes]`; `L2Loss` is a scalar.
//! Gradients: TensorFlow's (the logits' gradient reuses the `backprop` output; sparse labels
//! get none).

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use crate::gradient::{sum_to, GradContext};
use crate::math::common::{
    merge_input_dims, replace_dim, type_attr, type_attr_default, FLOAT, INDEX,
};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("SoftmaxCrossEntropyWithLogits")
            .input("features: T")
            .input("labels: T")
            .output("loss: T")
            .output("backprop: T")
            .attr(&type_attr("T", FLOAT))
            .shape_fn(dense_xent_shape),
    )?;
    r.register(
        OpDef::build("SparseSoftmaxCrossEntropyWithLogits")
            .input("features: T")
            .input("labels: Tlabels")
            .output("loss: T")
            .output("backprop: T")
            .attr(&type_attr("T", FLOAT))
            .attr(&type_attr_default("Tlabels", INDEX, "DT_INT64"))
            .shape_fn(sparse_xent_shape),
    )?;
    r.register(
        OpDef::build("L2Loss")
            .input("t: T")
            .output("output: T")
            .attr(&type_attr("T", FLOAT))
            .shape_fn(rill_graph::shape_fn::scalars),
    )?;
    r.gradient("SoftmaxCrossEntropyWithLogits", |c| {
        let b = c.b;
        let (features, labels) = (c.x(0), c.x(1));
        let g = logits_grad(c)?;
        // d loss / d labels = -log_softmax(logits); d backprop / d labels = -1 (a term
        // TensorFlow leaves out).
        let mut parts = vec![];
        if let Some(gl) = c.grads[0] {
            let neg_log = b.neg(b.log_softmax(features)?)?;
            parts.push(b.mul(b.expand_dims(gl, -1)?, neg_log)?);
        }
        if let Some(gg) = c.grads[1] {
            parts.push(b.neg(gg)?);
        }
        let labels_grad = match parts.as_slice() {
            [] => None,
            [one] => Some(sum_to(b, *one, labels)?),
            _ => Some(sum_to(b, b.add_n(&parts)?, labels)?),
        };
        Ok(vec![Some(sum_to(b, g, features)?), labels_grad])
    })?;
    r.gradient("SparseSoftmaxCrossEntropyWithLogits", |c| {
        Ok(vec![Some(logits_grad(c)?), None])
    })?;
    r.gradient("L2Loss", |c| Ok(c.only(c.b.mul(c.x(0), c.dy(0)?)?)))
}

/// The logits' gradient of a softmax cross-entropy (TensorFlow's rule): the loss gradient
/// times the op's `backprop` output (`softmax - labels`, so exact when each row of labels
/// sums to 1, as the op requires), plus, when the `backprop` output itself has a gradient
/// `gg`, `(gg - sum(gg * softmax)) * softmax`.
fn logits_grad(c: &GradContext) -> Result<Output> {
    let b = c.b;
    let mut parts = vec![];
    if let Some(gl) = c.grads[0] {
        parts.push(b.mul(b.expand_dims(gl, -1)?, c.y(1))?);
    }
    if let Some(gg) = c.grads[1] {
        let softmax = b.softmax(c.x(0))?;
        let dot = b.sum(b.mul(gg, softmax)?, &[-1], true)?;
        parts.push(b.mul(b.sub(gg, dot)?, softmax)?);
    }
    match parts.as_slice() {
        [] => b.zeros_like(c.y(1)),
        [one] => Ok(*one),
        _ => b.add_n(&parts),
    }
}

fn dense_xent_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    // The common case: both [batch, classes].
    if let Ok(m) = cx.with_rank(0, 2).and_then(|f| f.merge(cx.input(1)?)) {
        return Ok(vec![Shape::from_dims([m.dim(0)]), m]);
    }
    let both = cx.broadcast(0, 1)?;
    match both.rank() {
        Some(2) => Ok(vec![Shape::from_dims([both.dim(0)]), both]),
        _ => Err(cx.error(format!(
            "features '{}' ({}) and labels '{}' ({}) must broadcast to a [batch, classes] matrix, got {both}",
            cx.input_names[0], cx.input_shapes[0], cx.input_names[1], cx.input_shapes[1]
        ))),
    }
}

fn sparse_xent_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let features = cx.with_rank(0, 2)?;
    let labels = cx.with_rank(1, 1)?;
    let batch = merge_input_dims(
        cx,
        0,
        features.dim(0),
        1,
        labels.dim(0),
        "the batch sizes of features and labels",
    )?;
    Ok(vec![
        Shape::from_dims([batch]),
        replace_dim(&features, 0, batch),
    ])
}

impl Builder {
    /// `SoftmaxCrossEntropyWithLogits`: `(loss [batch], backprop [batch, classes])`.
    pub fn softmax_cross_entropy_with_logits(
        &self,
        features: Output,
        labels: Output,
    ) -> Result<(Output, Output)> {
        let id = self
            .op("SoftmaxCrossEntropyWithLogits")
            .input(features)
            .input(labels)
            .build()?;
        Ok((id.output(0), id.output(1)))
    }

    /// `SparseSoftmaxCrossEntropyWithLogits` with int32 or int64 class `labels`:
    /// `(loss [batch], backprop [batch, classes])`.
    pub fn sparse_softmax_cross_entropy_with_logits(
        &self,
        features: Output,
        labels: Output,
    ) -> Result<(Output, Output)> {
        let id = self
            .op("SparseSoftmaxCrossEntropyWithLogits")
            .input(features)
            .input(labels)
            .build()?;
        Ok((id.output(0), id.output(1)))
    }

    /// `L2Loss`: `sum(t ** 2) / 2`, a scalar.
    pub fn l2_loss(&self, t: Output) -> Result<Output> {
        self.op("L2Loss").input(t).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    #[test]
    fn dense() {
        let f = attrs(&[("T", DType::F32.into())]);
        let op = "SoftmaxCrossEntropyWithLogits";
        assert_eq!(infer(op, &f, "[?,10];[32,?]").unwrap(), "[32];[32,10]");
        assert_eq!(infer(op, &f, "?;?").unwrap(), "[?];[?,?]");
        assert_eq!(infer(op, &f, "[1,10];[32,10]").unwrap(), "[32];[32,10]");
        assert_eq!(infer(op, &f, "[32,10];[10]").unwrap(), "[32];[32,10]");
        let e = infer(op, &f, "[32,10];[32,5]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[32,5]"),
            "{e}"
        );
        assert!(infer(op, &f, "[2,3,4];[2,3,4]").is_err());
        assert!(infer(op, &f, "[10];[10]").is_err());
    }

    #[test]
    fn sparse() {
        let f = attrs(&[("T", DType::F32.into())]);
        let op = "SparseSoftmaxCrossEntropyWithLogits";
        assert_eq!(infer(op, &f, "[?,10];[32]").unwrap(), "[32];[32,10]");
        let e = infer(op, &f, "[16,10];[32]").unwrap_err();
        assert!(
            e.message.contains("in0:0")
                && e.message.contains("in1:0")
                && e.message.contains("16 vs 32"),
            "{e}"
        );
        let r = crate::registry();
        let d = r.lookup(op).unwrap();
        let mut a = f.clone();
        d.complete_attrs(&mut a).unwrap();
        assert_eq!(
            d.arg_types(&d.inputs, &a).unwrap(),
            vec![DType::F32, DType::I64]
        );
    }

    #[test]
    fn l2_loss() {
        assert_eq!(
            infer("L2Loss", &attrs(&[("T", DType::F32.into())]), "[3,4]").unwrap(),
            "[]"
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let logits = b.placeholder("logits", DType::F32, [-1i64, 10]).unwrap();
        let labels = b.placeholder("labels", DType::F32, [-1i64, 10]).unwrap();
        let (loss, backprop) = b.softmax_cross_entropy_with_logits(logits, labels).unwrap();
        assert_eq!(b.shape(loss).to_string(), "[?]");
        assert_eq!(b.shape(backprop).to_string(), "[?,10]");
        let ids = b.placeholder("ids", DType::I32, [-1i64]).unwrap();
        let (loss, _) = b
            .sparse_softmax_cross_entropy_with_logits(logits, ids)
            .unwrap();
        assert_eq!(b.shape(loss).to_string(), "[?]");
        assert_eq!(b.shape(b.l2_loss(logits).unwrap()).to_string(), "[]");
    }
}
