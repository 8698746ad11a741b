//! TF1 dataflow control flow: `Switch` and `Merge` (conditionals), `Enter`, `Exit`,
//! `NextIteration` and `LoopCond` (while loops), and the `Ref*` forms that forward
//! references to variables.
//!
//! `Merge` sees a loop's back edge (from `NextIteration`) before that input's shape is
//! inferred, so its shape function never fails: inputs that disagree give unknown dims
//! (or an unknown rank), as in TensorFlow.

use rill_graph::shape_fn::unchanged;
use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for (op, arg) in [("Switch", "T"), ("RefSwitch", "Ref(T)")] {
        let def = OpDef::build(op)
            .input(&format!("data: {arg}"))
            .input("pred: bool")
            .output(&format!("output_false: {arg}"))
            .output(&format!("output_true: {arg}"))
            .attr("T: type")
            .shape_fn(switch_shape);
        r.register(if op == "RefSwitch" {
            def.allows_uninitialized_input()
        } else {
            def
        })?;
    }
    for (op, input, output) in [
        ("Merge", "N * T", "T"),
        ("RefMerge", "Ref(N * T)", "Ref(T)"),
    ] {
        r.register(
            OpDef::build(op)
                .input(&format!("inputs: {input}"))
                .output(&format!("output: {output}"))
                .output("value_index: int32")
                .attr("T: type")
                .attr("N: int >= 1")
                .shape_fn(merge_shape),
        )?;
    }
    for (op, arg) in [("Enter", "T"), ("RefEnter", "Ref(T)")] {
        r.register(
            OpDef::build(op)
                .input(&format!("data: {arg}"))
                .output(&format!("output: {arg}"))
                .attr("T: type")
                .attr("frame_name: string")
                .attr("is_constant: bool = false")
                .attr("parallel_iterations: int = 10")
                .shape_fn(unchanged),
        )?;
    }
    for (op, arg) in [
        ("Exit", "T"),
        ("RefExit", "Ref(T)"),
        ("NextIteration", "T"),
        ("RefNextIteration", "Ref(T)"),
    ] {
        r.register(
            OpDef::build(op)
                .input(&format!("data: {arg}"))
                .output(&format!("output: {arg}"))
                .attr("T: type")
                .shape_fn(unchanged),
        )?;
    }
    r.register(
        OpDef::build("LoopCond")
            .input("input: bool")
            .output("output: bool")
            .shape_fn(loop_cond_shape),
    )
}

fn switch_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    cx.with_rank(1, 0)?;
    let data = cx.input(0)?.clone();
    Ok(vec![data.clone(), data])
}

/// The dims all inputs agree on; unknown where they differ, unknown rank if ranks differ.
fn merge_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let mut out = cx.input(0)?.clone();
    for s in cx.input_shapes.iter().skip(1) {
        out = match (out.dims(), s.dims()) {
            (Some(a), Some(b)) if a.len() == b.len() => Shape::from_dims(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| if x == y { *x } else { Dim::Unknown }),
            ),
            _ => Shape::unknown(),
        };
    }
    Ok(vec![out, Shape::scalar()])
}

fn loop_cond_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.with_rank(0, 0)?])
}

impl Builder {
    /// `Switch`: forwards `data` to `output_true` if `pred` (a bool scalar) holds, else to
    /// `output_false`; returns `(output_false, output_true)`.
    pub fn switch(&self, data: Output, pred: Output) -> Result<(Output, Output)> {
        let id = self.op("Switch").input(data).input(pred).build()?;
        Ok((id.output(0), id.output(1)))
    }

    /// `Merge`: forwards whichever input becomes available; returns `(output,
    /// value_index)`. A loop's back edge is closed later with `Graph::set_input`.
    pub fn merge(&self, inputs: &[Output]) -> Result<(Output, Output)> {
        let id = self.op("Merge").input_list(inputs).build()?;
        Ok((id.output(0), id.output(1)))
    }

    /// `Enter`: makes `data` available inside the loop frame `frame_name`; a constant enter
    /// (`is_constant`) is visible to every iteration.
    pub fn enter(
        &self,
        data: Output,
        frame_name: &str,
        is_constant: bool,
        parallel_iterations: i64,
    ) -> Result<Output> {
        self.op("Enter")
            .input(data)
            .attr("frame_name", frame_name)
            .attr("is_constant", is_constant)
            .attr("parallel_iterations", parallel_iterations)
            .build_output()
    }

    /// `Exit`: makes `data` available outside its loop frame.
    pub fn exit(&self, data: Output) -> Result<Output> {
        self.op("Exit").input(data).build_output()
    }

    /// `NextIteration`: passes `data` to the next iteration of its loop.
    pub fn next_iteration(&self, data: Output) -> Result<Output> {
        self.op("NextIteration").input(data).build_output()
    }

    /// `LoopCond`: marks `pred` (a bool scalar) as a loop's continuation condition.
    pub fn loop_cond(&self, pred: Output) -> Result<Output> {
        self.op("LoopCond").input(pred).build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::{DType, Tensor};

    fn t() -> rill_graph::Attrs {
        attrs(&[("T", DType::F32.into())])
    }

    #[test]
    fn switch_and_merge() {
        assert_eq!(infer("Switch", &t(), "[2,3];[]").unwrap(), "[2,3];[2,3]");
        assert_eq!(infer("Switch", &t(), "?;?").unwrap(), "?;?");
        assert!(infer("Switch", &t(), "[2,3];[1]").is_err());
        assert_eq!(infer("RefSwitch", &t(), "[2];[]").unwrap(), "[2];[2]");
        let n = |k: i64| attrs(&[("T", DType::F32.into()), ("N", k.into())]);
        assert_eq!(infer("Merge", &n(2), "[2,3];[2,3]").unwrap(), "[2,3];[]");
        assert_eq!(infer("Merge", &n(2), "[2,3];[4,3]").unwrap(), "[?,3];[]");
        assert_eq!(infer("Merge", &n(2), "[2,3];[2]").unwrap(), "?;[]");
        assert_eq!(infer("Merge", &n(2), "[2,3];?").unwrap(), "?;[]");
        assert_eq!(infer("Merge", &n(3), "?;[2];[2]").unwrap(), "?;[]");
        assert_eq!(infer("Merge", &n(1), "[5]").unwrap(), "[5];[]");
        assert_eq!(infer("RefMerge", &n(2), "[5];[5]").unwrap(), "[5];[]");
    }

    #[test]
    fn loop_ops() {
        let e = attrs(&[("T", DType::F32.into()), ("frame_name", "while".into())]);
        assert_eq!(infer("Enter", &e, "[2,?]").unwrap(), "[2,?]");
        assert_eq!(infer("RefEnter", &e, "[2]").unwrap(), "[2]");
        for op in ["Exit", "NextIteration", "RefExit", "RefNextIteration"] {
            assert_eq!(infer(op, &t(), "[7]").unwrap(), "[7]");
        }
        assert_eq!(infer("LoopCond", &attrs(&[]), "[]").unwrap(), "[]");
        assert_eq!(infer("LoopCond", &attrs(&[]), "?").unwrap(), "[]");
        assert!(infer("LoopCond", &attrs(&[]), "[2]").is_err());
        assert!(
            infer("Enter", &t(), "[2]").is_err(),
            "frame_name has no default"
        );
        let r = crate::registry();
        assert!(r.lookup("RefMerge").unwrap().inputs[0].is_ref);
        assert!(r.lookup("RefSwitch").unwrap().allows_uninitialized_input);
    }

    /// `while i < 10: i = i` in TF1 form, closing the back edge after the fact.
    #[test]
    fn builder_while_loop() {
        let b = Builder::new();
        let i0 = b.constant(Tensor::vector(vec![0i32, 0])).unwrap();
        let enter = b.enter(i0, "loop", false, 10).unwrap();
        let (merged, index) = b.merge(&[enter, enter]).unwrap();
        assert_eq!(b.dtype(index), DType::I32);
        let p = b.placeholder("p", DType::Bool, Shape::scalar()).unwrap();
        let cond = b.loop_cond(p).unwrap();
        let (out_false, out_true) = b.switch(merged, cond).unwrap();
        let body = b.identity(out_true).unwrap();
        let next = b.next_iteration(body).unwrap();
        let exit = b.exit(out_false).unwrap();
        b.graph_mut().set_input(merged.node, 1, next).unwrap();
        b.graph_mut().infer_shapes().unwrap();
        assert_eq!(b.shape(exit).to_string(), "[2]");
        assert_eq!(b.shape(next).to_string(), "[2]");
        let node = b.graph().node(enter.node).clone();
        assert_eq!(node.attr("frame_name"), Some(&"loop".into()));
        assert!(b.loop_cond(i0).is_err());
    }
}
