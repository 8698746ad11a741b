//! Test helpers for shape functions in TensorFlow's style:
//! `infer("MatMul", &attrs, "[2,?];[?,3]")` returns `"[2,3]"` (outputs joined by `;`).

use rill_graph::{AttrValue, Attrs, InferenceContext, Result, Shape, Tensor};

/// Attrs from `(name, value)` pairs.
pub fn attrs(pairs: &[(&str, AttrValue)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Runs `op`'s shape function on inputs written as `"[2,?];[3];?"` (empty string: no
/// inputs). `values[i]`, when given, is the constant value of input `i`. Attrs get the
/// op's defaults first.
pub fn infer_with_values(
    op: &str,
    attrs: &Attrs,
    inputs: &str,
    values: &[Option<Tensor>],
) -> Result<String> {
    let registry = crate::registry();
    let def = registry.lookup(op)?;
    let mut attrs = attrs.clone();
    def.complete_attrs(&mut attrs)?;
    let input_shapes: Vec<Shape> = if inputs.trim().is_empty() {
        vec![]
    } else {
        inputs.split(';').map(Shape::parse).collect::<Result<_>>()?
    };
    let input_dtypes = def.arg_types(&def.inputs, &attrs)?;
    let num_outputs = def.arg_types(&def.outputs, &attrs)?.len();
    let n = input_shapes.len();
    let mut input_values = values.to_vec();
    input_values.resize(n, None);
    let cx = InferenceContext {
        op,
        attrs: &attrs,
        input_dtypes,
        input_shapes,
        input_values,
        input_shape_values: vec![None; n],
        input_names: (0..n).map(|i| format!("in{i}:0")).collect(),
        num_outputs,
    };
    let shapes = (def.shape_fn)(&cx)?;
    Ok(shapes
        .iter()
        .map(Shape::to_string)
        .collect::<Vec<_>>()
        .join(";"))
}

/// [`infer_with_values`] without constant inputs.
pub fn infer(op: &str, attrs: &Attrs, inputs: &str) -> Result<String> {
    infer_with_values(op, attrs, inputs, &[])
}
