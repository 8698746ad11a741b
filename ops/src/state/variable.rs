//! TF1 reference variables: `VariableV2` and the older `Variable` (a mutable buffer whose
//! output is a `Ref`), `Assign`, `AssignAdd`, `AssignSub` and `IsVariableInitialized`.
//!
//! TensorFlow leaves the ops that take a `Ref` input unmarked and has its rewrites skip
//! ref inputs; Rill marks them stateful instead, so no rewrite merges or folds them.
//!
//! Variables and initialization checks are not differentiable (a gradient with respect to
//! a variable is taken at its output).

use rill_graph::shape_fn::scalars;
use rill_graph::{DType, InferenceContext, OpDef, Output, Result, Shape};

use crate::array::common::{name, NUMBER_TYPES};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for op in ["VariableV2", "Variable"] {
        r.register(
            OpDef::build(op)
                .output("ref: Ref(dtype)")
                .attr("shape: shape")
                .attr("dtype: type")
                .attr("container: string = ''")
                .attr("shared_name: string = ''")
                .stateful()
                .shape_fn(variable_shape),
        )?;
    }
    r.register(
        OpDef::build("Assign")
            .input("ref: Ref(T)")
            .input("value: T")
            .output("output_ref: Ref(T)")
            .attr("T: type")
            .attr("validate_shape: bool = true")
            .attr("use_locking: bool = true")
            .allows_uninitialized_input()
            .stateful()
            .shape_fn(assign_shape),
    )?;
    for op in ["AssignAdd", "AssignSub"] {
        r.register(
            OpDef::build(op)
                .input("ref: Ref(T)")
                .input("value: T")
                .output("output_ref: Ref(T)")
                .attr(&format!("T: {{{NUMBER_TYPES}}}"))
                .attr("use_locking: bool = false")
                .stateful()
                .shape_fn(merged_shape),
        )?;
    }
    r.register(
        OpDef::build("IsVariableInitialized")
            .input("ref: Ref(dtype)")
            .output("is_initialized: bool")
            .attr("dtype: type")
            .allows_uninitialized_input()
            .stateful()
            .shape_fn(scalars),
    )?;
    for op in ["VariableV2", "Variable", "IsVariableInitialized"] {
        r.no_gradient(op)?;
    }
    Ok(())
}

fn variable_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.attr_shape("shape")?.clone()])
}

/// The variable and the value must have compatible shapes; the result is their merge.
fn merged_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let (var, value) = (cx.input(0)?, cx.input(1)?);
    let merged = var.merge(value).map_err(|_| {
        cx.error(format!(
            "variable '{}' has shape {var} but the value '{}' has shape {value}",
            name(cx, 0),
            name(cx, 1)
        ))
    })?;
    Ok(vec![merged])
}

/// With `validate_shape = false` the variable takes the value's shape.
fn assign_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    if cx.attr_bool("validate_shape")? {
        merged_shape(cx)
    } else {
        Ok(vec![cx.input(1)?.clone()])
    }
}

impl Builder {
    /// A TF1 `VariableV2` named `name`, of `dtype` and `shape`; its output is the variable's
    /// reference, read by any op that takes it as an input.
    pub fn variable(&self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Result<Output> {
        self.op("VariableV2")
            .name(name)
            .attr("dtype", dtype)
            .attr("shape", shape.into())
            .build_output()
    }

    /// `tf.compat.v1.assign`: stores `value` in the variable `var`; returns the variable's
    /// reference after the assignment.
    pub fn assign(&self, var: Output, value: Output) -> Result<Output> {
        self.op("Assign").input(var).input(value).build_output()
    }

    /// `Assign` with `validate_shape = false`: the variable takes `value`'s shape.
    pub fn assign_reshaping(&self, var: Output, value: Output) -> Result<Output> {
        self.op("Assign")
            .input(var)
            .input(value)
            .attr("validate_shape", false)
            .build_output()
    }

    /// `tf.compat.v1.assign_add`: `var += value`.
    pub fn assign_add(&self, var: Output, value: Output) -> Result<Output> {
        self.op("AssignAdd").input(var).input(value).build_output()
    }

    /// `tf.compat.v1.assign_sub`: `var -= value`.
    pub fn assign_sub(&self, var: Output, value: Output) -> Result<Output> {
        self.op("AssignSub").input(var).input(value).build_output()
    }

    /// `tf.compat.v1.is_variable_initialized`.
    pub fn is_variable_initialized(&self, var: Output) -> Result<Output> {
        self.op("IsVariableInitialized").input(var).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};

    #[test]
    fn variable_shape_is_the_attr() {
        let a = attrs(&[
            ("dtype", DType::F32.into()),
            ("shape", Shape::from([5i64, 8]).into()),
        ]);
        assert_eq!(infer("VariableV2", &a, "").unwrap(), "[5,8]");
        assert_eq!(infer("Variable", &a, "").unwrap(), "[5,8]");
        let registry = crate::registry();
        let def = registry.lookup("VariableV2").unwrap();
        assert!(def.is_stateful && def.outputs[0].is_ref);
    }

    #[test]
    fn assign_shapes() {
        let a = attrs(&[("T", DType::F32.into())]);
        assert_eq!(infer("Assign", &a, "[2,?];[?,3]").unwrap(), "[2,3]");
        let e = infer("Assign", &a, "[2,3];[3,2]").unwrap_err();
        assert!(
            e.message.contains("in0:0") && e.message.contains("[3,2]"),
            "{e}"
        );
        let loose = attrs(&[("T", DType::F32.into()), ("validate_shape", false.into())]);
        assert_eq!(infer("Assign", &loose, "[2,3];[3,2]").unwrap(), "[3,2]");
        assert_eq!(infer("AssignAdd", &a, "[2,3];[2,3]").unwrap(), "[2,3]");
        assert!(infer("AssignSub", &a, "[2,3];[2]").is_err());
        let d = attrs(&[("dtype", DType::F32.into())]);
        assert_eq!(infer("IsVariableInitialized", &d, "[2,3]").unwrap(), "[]");
        let registry = crate::registry();
        assert!(
            registry
                .lookup("Assign")
                .unwrap()
                .allows_uninitialized_input
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let w = b.variable("w", DType::F32, [5i64, 8]).unwrap();
        assert_eq!(b.graph().tensor_name(w), "w:0");
        assert_eq!(
            (b.dtype(w), b.shape(w).to_string()),
            (DType::F32, "[5,8]".to_string())
        );
        let init = b.zeros_const(DType::F32, &[5, 8]).unwrap();
        let a = b.assign(w, init).unwrap();
        assert_eq!(b.shape(a).to_string(), "[5,8]");
        assert!(b
            .assign(w, b.zeros_const(DType::F32, &[8, 5]).unwrap())
            .is_err());
        let r = b
            .assign_reshaping(w, b.zeros_const(DType::F32, &[2]).unwrap())
            .unwrap();
        assert_eq!(b.shape(r).to_string(), "[2]");
        assert_eq!(b.shape(b.assign_add(w, init).unwrap()).to_string(), "[5,8]");
        assert_eq!(b.shape(b.assign_sub(w, init).unwrap()).to_string(), "[5,8]");
        assert_eq!(b.dtype(b.is_variable_initialized(w).unwrap()), DType::Bool);
    }
}
