//! Resource variables (TF2): `VarHandleOp` (a scalar `resource` handle), `ReadVariableOp`,
//! `AssignVariableOp`, `AssignAddVariableOp`, `AssignSubVariableOp`, `VarIsInitializedOp`
//! and `DestroyResourceOp`.
//!
//! Shape inference sees only the handle (a scalar), not the variable behind it, so
//! `ReadVariableOp`'s output shape is unknown at graph time. Reads and writes are marked
//! stateful so that graph rewrites never merge or reorder them.
//!
//! Gradients: `ReadVariableOp` passes its gradient to the handle (so gradients can be taken
//! with respect to a variable's handle); handles and initialization checks have none.

use rill_graph::shape_fn::{no_outputs, scalars, unknown_outputs};
use rill_graph::{DType, NodeId, OpDef, Output, Result, Shape};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("VarHandleOp")
            .output("resource: resource")
            .attr("container: string = ''")
            .attr("shared_name: string = ''")
            .attr("debug_name: string = ''")
            .attr("dtype: type")
            .attr("shape: shape")
            .attr("allowed_devices: list(string) = []")
            .stateful()
            .shape_fn(scalars),
    )?;
    r.register(
        OpDef::build("ReadVariableOp")
            .input("resource: resource")
            .output("value: dtype")
            .attr("dtype: type")
            .stateful()
            .shape_fn(unknown_outputs),
    )?;
    r.register(
        OpDef::build("AssignVariableOp")
            .input("resource: resource")
            .input("value: dtype")
            .attr("dtype: type")
            .attr("validate_shape: bool = false")
            .stateful()
            .shape_fn(no_outputs),
    )?;
    for op in ["AssignAddVariableOp", "AssignSubVariableOp"] {
        r.register(
            OpDef::build(op)
                .input("resource: resource")
                .input("value: dtype")
                .attr("dtype: type")
                .stateful()
                .shape_fn(no_outputs),
        )?;
    }
    r.register(
        OpDef::build("VarIsInitializedOp")
            .input("resource: resource")
            .output("is_initialized: bool")
            .stateful()
            .shape_fn(scalars),
    )?;
    r.register(
        OpDef::build("DestroyResourceOp")
            .input("resource: resource")
            .attr("ignore_lookup_error: bool = true")
            .stateful()
            .shape_fn(no_outputs),
    )?;
    // A read passes its gradient on to the handle (TensorFlow's `_ReadGrad`).
    r.gradient("ReadVariableOp", |c| Ok(c.only(c.dy(0)?)))?;
    r.no_gradient("VarHandleOp")?;
    r.no_gradient("VarIsInitializedOp")?;
    Ok(())
}

impl Builder {
    /// A resource variable's handle (`VarHandleOp`) named `name`, shared under that name.
    pub fn var_handle(&self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Result<Output> {
        let shared = self.graph().unique_name(&self.scoped_name(name));
        self.op("VarHandleOp")
            .name(name)
            .attr("dtype", dtype)
            .attr("shape", shape.into())
            .attr("shared_name", shared)
            .build_output()
    }

    /// `ReadVariableOp`: the current value of the variable behind `handle`.
    pub fn read_variable(&self, handle: Output, dtype: DType) -> Result<Output> {
        self.op("ReadVariableOp")
            .input(handle)
            .attr("dtype", dtype)
            .build_output()
    }

    /// `AssignVariableOp`: stores `value` in the variable behind `handle`.
    pub fn assign_variable(&self, handle: Output, value: Output) -> Result<NodeId> {
        self.op("AssignVariableOp")
            .input(handle)
            .input(value)
            .build()
    }

    /// `AssignAddVariableOp`: adds `value` to the variable behind `handle`.
    pub fn assign_add_variable(&self, handle: Output, value: Output) -> Result<NodeId> {
        self.op("AssignAddVariableOp")
            .input(handle)
            .input(value)
            .build()
    }

    /// `AssignSubVariableOp`: subtracts `value` from the variable behind `handle`.
    pub fn assign_sub_variable(&self, handle: Output, value: Output) -> Result<NodeId> {
        self.op("AssignSubVariableOp")
            .input(handle)
            .input(value)
            .build()
    }

    /// `VarIsInitializedOp`: whether the variable behind `handle` holds a value.
    pub fn var_is_initialized(&self, handle: Output) -> Result<Output> {
        self.op("VarIsInitializedOp").input(handle).build_output()
    }

    /// `DestroyResourceOp`: deletes the resource behind `handle`.
    pub fn destroy_resource(&self, handle: Output) -> Result<NodeId> {
        self.op("DestroyResourceOp").input(handle).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::AttrValue;

    #[test]
    fn shapes() {
        let a = attrs(&[
            ("dtype", DType::F32.into()),
            ("shape", Shape::from([2i64, 3]).into()),
        ]);
        assert_eq!(infer("VarHandleOp", &a, "").unwrap(), "[]");
        let d = attrs(&[("dtype", DType::F32.into())]);
        assert_eq!(infer("ReadVariableOp", &d, "[]").unwrap(), "?");
        assert_eq!(infer("AssignVariableOp", &d, "[];[2,3]").unwrap(), "");
        assert_eq!(infer("AssignAddVariableOp", &d, "[];[2,3]").unwrap(), "");
        assert_eq!(
            infer("VarIsInitializedOp", &attrs(&[]), "[]").unwrap(),
            "[]"
        );
        assert_eq!(infer("DestroyResourceOp", &attrs(&[]), "[]").unwrap(), "");
        assert!(
            crate::registry()
                .lookup("ReadVariableOp")
                .unwrap()
                .is_stateful
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let h = b.var_handle("v", DType::F32, [2i64, 3]).unwrap();
        assert_eq!(b.dtype(h), DType::Resource);
        let node = b.graph().node(h.node).clone();
        assert_eq!(node.attr("shared_name"), Some(&AttrValue::from("v")));
        assert_eq!(
            node.attr("allowed_devices"),
            Some(&AttrValue::StringList(vec![]))
        );
        let init = b.zeros_const(DType::F32, &[2, 3]).unwrap();
        let assign = b.assign_variable(h, init).unwrap();
        assert_eq!(b.graph().node(assign).num_outputs(), 0);
        b.assign_add_variable(h, init).unwrap();
        b.assign_sub_variable(h, init).unwrap();
        let v = b.read_variable(h, DType::F32).unwrap();
        assert_eq!(
            (b.dtype(v), b.shape(v).to_string()),
            (DType::F32, "?".to_string())
        );
        assert_eq!(b.dtype(b.var_is_initialized(h).unwrap()), DType::Bool);
        b.destroy_resource(h).unwrap();
        let h2 = b.var_handle("v", DType::F32, [2i64]).unwrap();
        let node = b.graph().node(h2.node).clone();
        assert_eq!(node.name, "v_1");
        assert_eq!(node.attr("shared_name"), Some(&AttrValue::from("v_1")));
    }
}
