//! Tests of function lowering: calls run end to end; `If` and `While` lower to the right
//! TF1 nodes and edges; errors (unknown ops in bodies, recursion, missing functions) come
//! at session creation with the node named.

use rill_graph::{Code, Graph, Tensor};

use super::lower_functions;
use crate::{Session, SessionOptions};

fn load(text: &str) -> Graph {
    Graph::from_text(text, rill_ops::registry()).unwrap()
}

fn lowered(text: &str) -> Graph {
    lower_functions(&load(text))
        .unwrap()
        .expect("the graph has calls")
}

fn op_of(g: &Graph, name: &str) -> String {
    g.node(g.node_named(name).unwrap()).op_name().to_string()
}

/// Names of the inputs of `name` (`node:index` / `^node`).
fn inputs_of(g: &Graph, name: &str) -> Vec<String> {
    let n = g.node(g.node_named(name).unwrap());
    let mut v: Vec<String> = n.inputs.iter().map(|&o| g.tensor_name(o)).collect();
    v.extend(
        n.control_inputs
            .iter()
            .map(|&c| format!("^{}", g.node(c).name)),
    );
    v
}

fn count_ops(g: &Graph, op: &str) -> usize {
    g.nodes().filter(|(_, n)| n.op_name() == op).count()
}

fn run_f32(g: Graph, feeds: &[(&str, Tensor)], fetches: &[&str]) -> Vec<Vec<f32>> {
    let mut out = vec![];
    for options in [SessionOptions::default(), SessionOptions::unoptimized()] {
        let s = Session::new(g.clone(), options).unwrap();
        let got = s.run(feeds, fetches, &[]).unwrap();
        out = got
            .iter()
            .map(|t| t.as_slice::<f32>().unwrap().to_vec())
            .collect();
    }
    out
}

const FLOAT: &str = "attr { key: 'T' value { type: DT_FLOAT } }";

/// `f(x) = (x * 2 + 1, top-1 of x, the 2nd row of x)`, through outputs of multi-output ops.
fn library() -> String {
    format!(
        r#"
library {{
  function {{
    signature {{
      name: "f"
      input_arg {{ name: "x" type: DT_FLOAT }}
      output_arg {{ name: "y" type: DT_FLOAT }}
      output_arg {{ name: "top" type: DT_FLOAT }}
      output_arg {{ name: "row" type: DT_FLOAT }}
    }}
    node_def {{ name: "two" op: "Const"
      attr {{ key: "dtype" value {{ type: DT_FLOAT }} }}
      attr {{ key: "value" value {{ tensor {{ dtype: DT_FLOAT tensor_shape {{}} float_val: 2 }} }} }} }}
    node_def {{ name: "one" op: "Const"
      attr {{ key: "dtype" value {{ type: DT_FLOAT }} }}
      attr {{ key: "value" value {{ tensor {{ dtype: DT_FLOAT tensor_shape {{}} float_val: 1 }} }} }} }}
    node_def {{ name: "k" op: "Const"
      attr {{ key: "dtype" value {{ type: DT_INT32 }} }}
      attr {{ key: "value" value {{ tensor {{ dtype: DT_INT32 tensor_shape {{}} int_val: 1 }} }} }} }}
    node_def {{ name: "m" op: "Mul" input: "x" input: "two:output:0" {FLOAT} }}
    node_def {{ name: "a" op: "AddV2" input: "m:z:0" input: "one:output:0" {FLOAT} }}
    node_def {{ name: "topk" op: "TopKV2" input: "x" input: "k:output:0" {FLOAT} }}
    node_def {{ name: "rows" op: "Unpack" input: "x" {FLOAT}
      attr {{ key: "num" value {{ i: 2 }} }} }}
    ret {{ key: "y" value: "a:z:0" }}
    ret {{ key: "top" value: "topk:values:0" }}
    ret {{ key: "row" value: "rows:output:1" }}
  }}
}}
"#
    )
}

fn x_node() -> &'static str {
    r#"node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } } }
node { name: "go" op: "NoOp" }
"#
}

#[test]
fn no_calls_no_change() {
    let g = load(x_node());
    assert!(lower_functions(&g).unwrap().is_none());
}

#[test]
fn partitioned_call_runs_inlined() {
    for op in ["PartitionedCall", "StatefulPartitionedCall"] {
        let text = format!(
            r#"{}
node {{ name: "call" op: "{op}" input: "x" input: "^go"
  attr {{ key: "Tin" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "Tout" value {{ list {{ type: DT_FLOAT type: DT_FLOAT type: DT_FLOAT }} }} }}
  attr {{ key: "f" value {{ func {{ name: "f" }} }} }}
  attr {{ key: "_read_only_resource_inputs" value {{ list {{}} }} }}
  attr {{ key: "config_proto" value {{ s: "" }} }} }}
node {{ name: "y" op: "Identity" input: "call:0" {FLOAT} }}
{}"#,
            x_node(),
            library()
        );
        let g = lowered(&text);
        assert_eq!(op_of(&g, "call"), "IdentityN");
        assert_eq!(op_of(&g, "call/x"), "Identity");
        assert_eq!(inputs_of(&g, "call/x"), ["x:0", "^call/input_control_node"]);
        assert_eq!(inputs_of(&g, "call/input_control_node"), ["^go"]);
        // Constants wait for the call's control inputs too.
        assert_eq!(inputs_of(&g, "call/two"), ["^call/input_control_node"]);
        assert_eq!(
            inputs_of(&g, "call"),
            ["call/a:0", "call/topk:0", "call/rows:1"]
        );
        assert_eq!(count_ops(&g, op), 0);
        let x = Tensor::new(&[2, 2], vec![1.0f32, 4.0, 3.0, 2.0]).unwrap();
        let got = run_f32(
            load(&text),
            &[("x:0", x)],
            &["y:0", "call:0", "call:1", "call:2"],
        );
        assert_eq!(got[0], [3.0, 9.0, 7.0, 5.0]);
        assert_eq!(got[1], got[0]);
        assert_eq!(got[2], [4.0, 3.0]);
        assert_eq!(got[3], [3.0, 2.0]);
    }
}

#[test]
fn direct_call_loads_and_runs() {
    let text = format!(
        r#"{}
node {{ name: "call" op: "f" input: "x" }}
{}"#,
        x_node(),
        library()
    );
    let g = load(&text);
    let call = g.node(g.node_named("call").unwrap());
    assert_eq!(call.num_outputs(), 3);
    let x = Tensor::new(&[2, 1], vec![1.0f32, -1.0]).unwrap();
    let got = run_f32(g, &[("x:0", x)], &["call:0", "call:2"]);
    assert_eq!(got, [vec![3.0, -1.0], vec![-1.0]]);
    // An op that is neither registered nor a function still fails at load.
    let e = Graph::from_text(
        &format!(
            "{}node {{ name: 'z' op: 'g' input: 'x' }}\n{}",
            x_node(),
            library()
        ),
        rill_ops::registry(),
    )
    .unwrap_err();
    assert_eq!(e.code, Code::Unimplemented);
    assert_eq!(e.node.as_deref(), Some("z"));
}

#[test]
fn nested_calls_and_placeholders() {
    // `outer<T>(x) = inner<T>(x)`, `inner<T>(x) = Identity<T>(x)` with `$T` placeholders.
    let text = format!(
        r#"{}
node {{ name: "call" op: "PartitionedCall" input: "x"
  attr {{ key: "Tin" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "Tout" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "f" value {{ func {{ name: "outer" attr {{ key: "T" value {{ type: DT_FLOAT }} }} }} }} }} }}
library {{
  function {{
    signature {{ name: "outer" input_arg {{ name: "x" type_attr: "T" }}
      output_arg {{ name: "y" type_attr: "T" }} attr {{ name: "T" type: "type" }} }}
    node_def {{ name: "c" op: "PartitionedCall" input: "x"
      attr {{ key: "Tin" value {{ list {{ type: DT_FLOAT }} }} }}
      attr {{ key: "Tout" value {{ list {{ type: DT_FLOAT }} }} }}
      attr {{ key: "f" value {{ func {{ name: "inner" attr {{ key: "T" value {{ placeholder: "T" }} }} }} }} }} }}
    node_def {{ name: "d" op: "inner" input: "c:output:0" attr {{ key: "T" value {{ placeholder: "T" }} }} }}
    ret {{ key: "y" value: "d:y:0" }}
  }}
  function {{
    signature {{ name: "inner" input_arg {{ name: "x" type_attr: "T" }}
      output_arg {{ name: "y" type_attr: "T" }} attr {{ name: "T" type: "type" }} }}
    node_def {{ name: "i" op: "Neg" input: "x" attr {{ key: "T" value {{ placeholder: "T" }} }} }}
    ret {{ key: "y" value: "i:y:0" }}
  }}
}}"#,
        x_node()
    );
    let g = lowered(&text);
    assert_eq!(op_of(&g, "call/c/i"), "Neg");
    assert_eq!(op_of(&g, "call/d/i"), "Neg");
    assert_eq!(inputs_of(&g, "call/d/x"), ["call/c:0"]);
    let x = Tensor::vector(vec![1.5f32, -2.0]);
    assert_eq!(
        run_f32(load(&text), &[("x:0", x)], &["call:0"]),
        [vec![1.5, -2.0]]
    );
}

#[test]
fn control_ret_orders_the_call() {
    let text = format!(
        r#"{}
node {{ name: "call" op: "StatefulPartitionedCall"
  attr {{ key: "Tin" value {{ list {{}} }} }}
  attr {{ key: "Tout" value {{ list {{}} }} }}
  attr {{ key: "f" value {{ func {{ name: "effects" }} }} }} }}
node {{ name: "after" op: "NoOp" input: "^call" }}
library {{
  function {{
    signature {{ name: "effects" is_stateful: true control_output: "done" }}
    node_def {{ name: "n" op: "NoOp" }}
    control_ret {{ key: "done" value: "n" }}
  }}
}}"#,
        x_node()
    );
    let g = lowered(&text);
    assert_eq!(op_of(&g, "call"), "NoOp");
    assert_eq!(inputs_of(&g, "call"), ["^call/n"]);
    assert_eq!(inputs_of(&g, "after"), ["^call"]);
    let s = Session::new(load(&text), SessionOptions::default()).unwrap();
    s.run(&[], &[], &["after"]).unwrap();
}

#[test]
fn unsupported_op_in_body_fails_at_session_creation() {
    let text = format!(
        r#"{}
node {{ name: "call" op: "PartitionedCall" input: "x"
  attr {{ key: "Tin" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "Tout" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "f" value {{ func {{ name: "bad" }} }} }} }}
library {{
  function {{
    signature {{ name: "bad" input_arg {{ name: "x" type: DT_FLOAT }} output_arg {{ name: "y" type: DT_FLOAT }} }}
    node_def {{ name: "q" op: "FrobnicateV3" input: "x" }}
    ret {{ key: "y" value: "q:y:0" }}
  }}
  function {{
    signature {{ name: "unused" }}
    node_def {{ name: "q" op: "AlsoUnknown" }}
  }}
}}"#,
        x_node()
    );
    // Loading accepts it (the body is only looked at when instantiated) ...
    let g = load(&text);
    // ... and creating the session fails, naming the node and the op.
    let e = Session::new(g, SessionOptions::default()).err().unwrap();
    assert_eq!(e.code, Code::Unimplemented, "{e}");
    assert_eq!(e.node.as_deref(), Some("call/q"));
    assert_eq!(e.op.as_deref(), Some("FrobnicateV3"));
}

#[test]
fn recursion_and_missing_functions_are_errors() {
    let text = format!(
        r#"{}
node {{ name: "call" op: "rec" input: "x" }}
library {{
  function {{
    signature {{ name: "rec" input_arg {{ name: "x" type: DT_FLOAT }} output_arg {{ name: "y" type: DT_FLOAT }} }}
    node_def {{ name: "again" op: "rec" input: "x" }}
    ret {{ key: "y" value: "again:y:0" }}
  }}
}}"#,
        x_node()
    );
    let e = lower_functions(&load(&text)).unwrap_err();
    assert_eq!(e.code, Code::Unimplemented, "{e}");
    assert!(e.message.contains("recursive"), "{e}");
    let text = format!(
        r#"{}
node {{ name: "call" op: "PartitionedCall" input: "x"
  attr {{ key: "Tin" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "Tout" value {{ list {{ type: DT_FLOAT }} }} }}
  attr {{ key: "f" value {{ func {{ name: "nowhere" }} }} }} }}"#,
        x_node()
    );
    let e = lower_functions(&load(&text)).unwrap_err();
    assert_eq!(e.code, Code::NotFound, "{e}");
    assert_eq!(e.node.as_deref(), Some("call"));
}

/// Branches `then(a, b) = a * b`, `else(a, b) = a - b` plus a constant result.
fn if_library() -> String {
    format!(
        r#"
library {{
  function {{
    signature {{ name: "then" input_arg {{ name: "a" type: DT_FLOAT }} input_arg {{ name: "b" type: DT_FLOAT }}
      output_arg {{ name: "y" type: DT_FLOAT }} output_arg {{ name: "c" type: DT_FLOAT }} }}
    node_def {{ name: "m" op: "Mul" input: "a" input: "b" {FLOAT} }}
    node_def {{ name: "k" op: "Const"
      attr {{ key: "dtype" value {{ type: DT_FLOAT }} }}
      attr {{ key: "value" value {{ tensor {{ dtype: DT_FLOAT tensor_shape {{}} float_val: 1 }} }} }} }}
    ret {{ key: "y" value: "m:z:0" }}
    ret {{ key: "c" value: "k:output:0" }}
  }}
  function {{
    signature {{ name: "else" input_arg {{ name: "a" type: DT_FLOAT }} input_arg {{ name: "b" type: DT_FLOAT }}
      output_arg {{ name: "y" type: DT_FLOAT }} output_arg {{ name: "c" type: DT_FLOAT }} }}
    node_def {{ name: "s" op: "Sub" input: "a" input: "b" {FLOAT} }}
    node_def {{ name: "k" op: "Const"
      attr {{ key: "dtype" value {{ type: DT_FLOAT }} }}
      attr {{ key: "value" value {{ tensor {{ dtype: DT_FLOAT tensor_shape {{}} float_val: 2 }} }} }} }}
    ret {{ key: "y" value: "s:z:0" }}
    ret {{ key: "c" value: "k:output:0" }}
  }}
}}"#
    )
}

fn if_graph(op: &str, cond_type: &str) -> String {
    format!(
        r#"node {{ name: "p" op: "Placeholder" attr {{ key: "dtype" value {{ type: {cond_type} }} }} }}
node {{ name: "a" op: "Placeholder" attr {{ key: "dtype" value {{ type: DT_FLOAT }} }} }}
node {{ name: "b" op: "Placeholder" attr {{ key: "dtype" value {{ type: DT_FLOAT }} }} }}
node {{ name: "cond" op: "{op}" input: "p" input: "a" input: "b"
  attr {{ key: "Tcond" value {{ type: {cond_type} }} }}
  attr {{ key: "Tin" value {{ list {{ type: DT_FLOAT type: DT_FLOAT }} }} }}
  attr {{ key: "Tout" value {{ list {{ type: DT_FLOAT type: DT_FLOAT }} }} }}
  attr {{ key: "then_branch" value {{ func {{ name: "then" }} }} }}
  attr {{ key: "else_branch" value {{ func {{ name: "else" }} }} }}
  attr {{ key: "output_shapes" value {{ list {{ shape {{}} shape {{}} }} }} }}
  attr {{ key: "_lower_using_switch_merge" value {{ b: true }} }} }}
node {{ name: "out" op: "Identity" input: "cond:1" {FLOAT} }}
{}"#,
        if_library()
    )
}

#[test]
fn if_lowers_to_switch_and_merge() {
    for op in ["If", "StatelessIf"] {
        let g = lowered(&if_graph(op, "DT_BOOL"));
        assert_eq!(count_ops(&g, op), 0);
        assert_eq!(op_of(&g, "cond"), "IdentityN");
        assert_eq!(
            inputs_of(&g, "cond"),
            [
                "cond/output_0:0",
                "cond/output_1:0",
                "^cond/branch_executed"
            ]
        );
        assert_eq!(inputs_of(&g, "cond/switch_pred"), ["p:0", "p:0"]);
        assert_eq!(inputs_of(&g, "cond/pivot_t"), ["cond/switch_pred:1"]);
        assert_eq!(inputs_of(&g, "cond/pivot_f"), ["cond/switch_pred:0"]);
        assert_eq!(inputs_of(&g, "cond/input_1"), ["b:0", "p:0"]);
        assert_eq!(
            inputs_of(&g, "cond/then/b"),
            ["cond/input_1:1", "^cond/then/input_control_node"]
        );
        assert_eq!(
            inputs_of(&g, "cond/else/a"),
            ["cond/input_0:0", "^cond/else/input_control_node"]
        );
        assert_eq!(
            inputs_of(&g, "cond/then/input_control_node"),
            ["^cond/pivot_t"]
        );
        // The branch constant lives under its pivot, so it is dead with its branch.
        assert_eq!(
            inputs_of(&g, "cond/else/k"),
            ["^cond/else/input_control_node"]
        );
        assert_eq!(op_of(&g, "cond/output_1"), "Merge");
        assert_eq!(
            inputs_of(&g, "cond/output_1"),
            ["cond/then/k:0", "cond/else/k:0"]
        );
        assert_eq!(
            inputs_of(&g, "cond/branch_executed"),
            ["cond/pivot_t:0", "cond/pivot_f:0"]
        );
        assert_eq!(inputs_of(&g, "out"), ["cond:1"]);
    }
    // A non-bool cond is converted like TensorFlow's truthiness (non-zero is true).
    let g = lowered(&if_graph("If", "DT_INT32"));
    assert_eq!(op_of(&g, "cond/cond_bool"), "Cast");
    assert_eq!(
        inputs_of(&g, "cond/switch_pred"),
        ["cond/cond_bool:0", "cond/cond_bool:0"]
    );
}

fn while_graph(op: &str) -> String {
    format!(
        r#"node {{ name: "n" op: "Placeholder" attr {{ key: "dtype" value {{ type: DT_INT32 }} }} }}
node {{ name: "x" op: "Placeholder" attr {{ key: "dtype" value {{ type: DT_FLOAT }} }} }}
node {{ name: "zero" op: "Const" attr {{ key: "dtype" value {{ type: DT_INT32 }} }}
  attr {{ key: "value" value {{ tensor {{ dtype: DT_INT32 tensor_shape {{}} int_val: 0 }} }} }} }}
node {{ name: "loop" op: "{op}" input: "zero" input: "x" input: "n"
  attr {{ key: "T" value {{ list {{ type: DT_INT32 type: DT_FLOAT type: DT_INT32 }} }} }}
  attr {{ key: "cond" value {{ func {{ name: "cond" }} }} }}
  attr {{ key: "body" value {{ func {{ name: "body" }} }} }}
  attr {{ key: "parallel_iterations" value {{ i: 7 }} }} }}
node {{ name: "out" op: "Identity" input: "loop:1" {FLOAT} }}
library {{
  function {{
    signature {{ name: "cond" input_arg {{ name: "i" type: DT_INT32 }} input_arg {{ name: "x" type: DT_FLOAT }}
      input_arg {{ name: "n" type: DT_INT32 }} output_arg {{ name: "c" type: DT_BOOL }} }}
    node_def {{ name: "less" op: "Less" input: "i" input: "n" attr {{ key: "T" value {{ type: DT_INT32 }} }} }}
    ret {{ key: "c" value: "less:z:0" }}
  }}
  function {{
    signature {{ name: "body" input_arg {{ name: "i" type: DT_INT32 }} input_arg {{ name: "x" type: DT_FLOAT }}
      input_arg {{ name: "n" type: DT_INT32 }} output_arg {{ name: "i2" type: DT_INT32 }}
      output_arg {{ name: "x2" type: DT_FLOAT }} output_arg {{ name: "n2" type: DT_INT32 }} }}
    node_def {{ name: "one" op: "Const" attr {{ key: "dtype" value {{ type: DT_INT32 }} }}
      attr {{ key: "value" value {{ tensor {{ dtype: DT_INT32 tensor_shape {{}} int_val: 1 }} }} }} }}
    node_def {{ name: "inc" op: "AddV2" input: "i" input: "one:output:0" attr {{ key: "T" value {{ type: DT_INT32 }} }} }}
    node_def {{ name: "dbl" op: "AddV2" input: "x" input: "x" {FLOAT} }}
    ret {{ key: "i2" value: "inc:z:0" }}
    ret {{ key: "x2" value: "dbl:z:0" }}
    ret {{ key: "n2" value: "n" }}
  }}
}}"#
    )
}

#[test]
fn while_lowers_to_a_loop_frame() {
    for op in ["While", "StatelessWhile"] {
        let g = lowered(&while_graph(op));
        assert_eq!(count_ops(&g, op), 0);
        assert_eq!(count_ops(&g, "Enter"), 3);
        assert_eq!(count_ops(&g, "Exit"), 3);
        assert_eq!(count_ops(&g, "NextIteration"), 3);
        assert_eq!(count_ops(&g, "LoopCond"), 1);
        assert_eq!(op_of(&g, "loop"), "IdentityN");
        assert_eq!(
            inputs_of(&g, "loop"),
            ["loop/exit_0:0", "loop/exit_1:0", "loop/exit_2:0"]
        );
        let enter = g.node(g.node_named("loop/enter_1").unwrap());
        assert_eq!(inputs_of(&g, "loop/enter_1"), ["x:0"]);
        assert_eq!(
            enter.attr("frame_name").unwrap().as_str(),
            Some("loop/while_context")
        );
        assert_eq!(enter.attr("parallel_iterations").unwrap().as_int(), Some(7));
        assert_eq!(
            inputs_of(&g, "loop/merge_1"),
            ["loop/enter_1:0", "loop/next_iteration_1:0"]
        );
        assert_eq!(
            inputs_of(&g, "loop/cond/i"),
            ["loop/merge_0:0", "^loop/cond/input_control_node"]
        );
        assert_eq!(inputs_of(&g, "loop/loop_cond"), ["loop/cond/less:0"]);
        assert_eq!(
            inputs_of(&g, "loop/switch_1"),
            ["loop/merge_1:0", "loop/loop_cond:0"]
        );
        assert_eq!(inputs_of(&g, "loop/exit_1"), ["loop/switch_1:0"]);
        assert_eq!(inputs_of(&g, "loop/body_in_1"), ["loop/switch_1:1"]);
        // The body's constant is inside the frame (after the body's first input).
        assert_eq!(
            inputs_of(&g, "loop/body/one"),
            ["^loop/body/input_control_node"]
        );
        assert_eq!(
            inputs_of(&g, "loop/body/input_control_node"),
            ["^loop/body_in_0"]
        );
        assert_eq!(inputs_of(&g, "loop/next_iteration_2"), ["loop/body/n:0"]);
        assert_eq!(inputs_of(&g, "out"), ["loop:1"]);
        g.validate().unwrap();
    }
}
