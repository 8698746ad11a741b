//! TF2 functional ops: function calls (`PartitionedCall`, `StatefulPartitionedCall`),
//! conditionals (`If`, `StatelessIf`) and loops (`While`, `StatelessWhile`), with
//! TensorFlow's exact inputs, outputs and attrs.
//!
//! Rill never runs these ops as kernels: `rill_runtime::functions` replaces them by the
//! bodies of their functions (and `Switch`/`Merge` or `Enter`/`Exit` frames) when a session
//! is created. Their shape functions give the `output_shapes` attr where a writer set it,
//! unknown shapes otherwise.

use rill_graph::{InferenceContext, OpDef, Result, Shape};

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for op in ["PartitionedCall", "StatefulPartitionedCall"] {
        let def = OpDef::build(op)
            .input("args: Tin")
            .output("output: Tout")
            .attr("Tin: list(type) >= 0")
            .attr("Tout: list(type) >= 0")
            .attr("f: func")
            .attr("config: string = ''")
            .attr("config_proto: string = ''")
            .attr("executor_type: string = ''")
            .shape_fn(declared_shapes);
        r.register(if op == "StatefulPartitionedCall" {
            def.stateful()
        } else {
            def
        })?;
    }
    for op in ["If", "StatelessIf"] {
        let def = OpDef::build(op)
            .input("cond: Tcond")
            .input("input: Tin")
            .output("output: Tout")
            .attr("Tcond: type")
            .attr("Tin: list(type) >= 0")
            .attr("Tout: list(type) >= 0")
            .attr("then_branch: func")
            .attr("else_branch: func")
            .attr("output_shapes: list(shape) = []")
            .shape_fn(declared_shapes);
        r.register(if op == "If" { def.stateful() } else { def })?;
    }
    for op in ["While", "StatelessWhile"] {
        let def = OpDef::build(op)
            .input("input: T")
            .output("output: T")
            .attr("T: list(type) >= 0")
            .attr("cond: func")
            .attr("body: func")
            .attr("output_shapes: list(shape) = []")
            .attr("parallel_iterations: int = 10")
            .shape_fn(declared_shapes);
        r.register(if op == "While" { def.stateful() } else { def })?;
    }
    // No gradient functions: Rill does not differentiate through calls yet (TensorFlow
    // does), so reaching one while differentiating is an error, never a silent zero.
    Ok(())
}

/// The `output_shapes` attr when it has one shape per output, unknown shapes otherwise.
fn declared_shapes(cx: &InferenceContext) -> Result<Vec<Shape>> {
    match cx.attrs.get("output_shapes") {
        Some(rill_graph::AttrValue::ShapeList(s)) if s.len() == cx.num_outputs => Ok(s.clone()),
        _ => Ok(vec![Shape::unknown(); cx.num_outputs]),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType, FuncAttr, Shape};

    fn func(name: &str) -> AttrValue {
        AttrValue::Func(FuncAttr {
            name: name.into(),
            attrs: Default::default(),
        })
    }

    #[test]
    fn signatures_match_tensorflow() {
        let r = crate::registry();
        let call = r.lookup("PartitionedCall").unwrap();
        assert!(!call.is_stateful);
        assert!(r.lookup("StatefulPartitionedCall").unwrap().is_stateful);
        assert_eq!(call.inputs[0].name, "args");
        let if_op = r.lookup("If").unwrap();
        assert!(if_op.is_stateful && !r.lookup("StatelessIf").unwrap().is_stateful);
        let names: Vec<&str> = if_op.inputs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["cond", "input"]);
        let w = r.lookup("StatelessWhile").unwrap();
        assert_eq!(
            w.attr("parallel_iterations").unwrap().default,
            Some(AttrValue::Int(10))
        );
    }

    #[test]
    fn shapes_come_from_output_shapes() {
        let a = attrs(&[
            ("T", AttrValue::TypeList(vec![DType::I32, DType::F32])),
            ("cond", func("c")),
            ("body", func("b")),
        ]);
        assert_eq!(infer("While", &a, "[];[2]").unwrap(), "?;?");
        let mut b = a.clone();
        b.insert(
            "output_shapes".into(),
            AttrValue::ShapeList(vec![Shape::scalar(), Shape::known(&[2])]),
        );
        assert_eq!(infer("StatelessWhile", &b, "[];[2]").unwrap(), "[];[2]");
        let c = attrs(&[
            ("Tcond", DType::Bool.into()),
            ("Tin", AttrValue::TypeList(vec![DType::F32])),
            ("Tout", AttrValue::TypeList(vec![DType::F32])),
            ("then_branch", func("t")),
            ("else_branch", func("e")),
        ]);
        assert_eq!(infer("StatelessIf", &c, "[];[3]").unwrap(), "?");
        let p = attrs(&[
            ("Tin", AttrValue::TypeList(vec![])),
            ("Tout", AttrValue::TypeList(vec![DType::F32, DType::F32])),
            ("f", func("f")),
        ]);
        assert_eq!(infer("PartitionedCall", &p, "").unwrap(), "?;?");
    }
}
