//! [`CommonSubexpressionElimination`]: merges nodes that compute the same thing — same op,
//! same attrs, same data inputs in order (as a sorted multiset for commutative ops), the
//! same set of control inputs and the same device. The later node's data and control uses
//! move to the earlier one, and it is removed; walking in topological order collapses
//! chains of duplicates in one run. `Const`s merge when their values are equal bit for bit
//! (dtype, dims and bytes) and under 1 MB.
//!
//! Invariants: never merges a stateful or random op, a placeholder, variable, TF1 control
//! flow, a node with `Ref` inputs or outputs or reading a TF1 variable (the read happens
//! when the node runs), or a fed node; a kept (fetched or target)
//! node is never the one removed (when the later node is kept, the earlier one merges into
//! it, which cannot make a cycle: nothing that reads the earlier node feeds the later).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rill_graph::{
    AttrValue, Attrs, Graph, Node, NodeId, Output, Pass, PassContext, Result, Tensor,
};

use super::edit::{detach, rewire, Uses};
use super::util::{
    any_output_fed, has_ref, is_control_flow, is_random, is_source_of_state, reads_variable,
    tensor_bytes,
};

/// Merges duplicate computations.
pub struct CommonSubexpressionElimination;

/// Largest `Const` (in bytes) CSE compares.
const MAX_CONST_BYTES: usize = 1 << 20;

/// What two mergeable nodes share exactly; attrs are compared within a bucket.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    op: String,
    inputs: Vec<Output>,
    controls: Vec<NodeId>,
    device: String,
    assigned: Option<String>,
    value_hash: u64,
}

impl Pass for CommonSubexpressionElimination {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut uses = Uses::of(graph);
        let mut buckets: HashMap<Key, Vec<NodeId>> = HashMap::new();
        let mut changed = false;
        for id in graph.topo_order()? {
            let Some(node) = graph.get(id) else { continue };
            let Some(key) = key(graph, cx, node) else {
                continue;
            };
            let bucket = buckets.entry(key).or_default();
            let Some(at) = bucket.iter().position(|&s| {
                graph
                    .get(s)
                    .is_some_and(|s| same_attrs(&s.attrs, &node.attrs))
            }) else {
                bucket.push(id);
                continue;
            };
            let first = bucket[at];
            let (survivor, dup) = match (cx.keeps(&graph.node(first).name), cx.keeps(&node.name)) {
                (_, false) => (first, id),
                (false, true) => {
                    bucket[at] = id;
                    (id, first)
                }
                (true, true) => {
                    bucket.push(id);
                    continue;
                }
            };
            let (s_name, op) = (
                graph.node(survivor).name.clone(),
                node.op_name().to_string(),
            );
            let (old, consumers) = detach(graph, &mut uses, dup)?;
            let outputs: Vec<Option<Output>> = (0..old.num_outputs())
                .map(|i| Some(survivor.output(i)))
                .collect();
            rewire(
                graph,
                &mut uses,
                dup,
                &consumers,
                &outputs,
                &[survivor],
                &[],
            )?;
            cx.note(format!("merged '{}' ({op}) into '{s_name}'", old.name));
            changed = true;
        }
        Ok(changed)
    }
}

/// The node's key, or `None` when it must not be merged.
fn key(graph: &Graph, cx: &PassContext, node: &Node) -> Option<Key> {
    let op = node.op_name();
    if node.op.is_stateful
        || is_random(op)
        || is_source_of_state(op)
        || is_control_flow(op)
        || node.num_outputs() == 0
        || has_ref(node)
        || node.inputs.iter().any(|&o| reads_variable(graph, o))
        || any_output_fed(cx, &node.name)
    {
        return None;
    }
    let mut value_hash = 0;
    if op == "Const" {
        let value = node.attr("value")?.as_tensor()?;
        if tensor_bytes(value)? > MAX_CONST_BYTES {
            return None;
        }
        let mut h = DefaultHasher::new();
        value.dtype().hash(&mut h);
        value.dims().hash(&mut h);
        match value.raw_bytes() {
            Some(bytes) => bytes.hash(&mut h),
            None => value.as_slice::<Vec<u8>>().ok()?.hash(&mut h),
        }
        value_hash = h.finish();
    }
    let mut inputs = node.inputs.clone();
    if node.op.is_commutative {
        inputs.sort();
    }
    let mut controls = node.control_inputs.clone();
    controls.sort();
    controls.dedup();
    Some(Key {
        op: op.to_string(),
        inputs,
        controls,
        device: node.requested_device.to_string(),
        assigned: node.assigned_device.as_ref().map(|d| d.to_string()),
        value_hash,
    })
}

/// Attrs equal value for value, floats and tensors compared bit for bit.
fn same_attrs(a: &Attrs, b: &Attrs) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &AttrValue, b: &AttrValue) -> bool {
    match (a, b) {
        (AttrValue::Float(x), AttrValue::Float(y)) => x.to_bits() == y.to_bits(),
        (AttrValue::FloatList(x), AttrValue::FloatList(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (AttrValue::Tensor(x), AttrValue::Tensor(y)) => same_tensor(x, y),
        (AttrValue::TensorList(x), AttrValue::TensorList(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_tensor(p, q))
        }
        _ => a == b,
    }
}

fn same_tensor(a: &Tensor, b: &Tensor) -> bool {
    a.dtype() == b.dtype()
        && a.dims() == b.dims()
        && match (a.raw_bytes(), b.raw_bytes()) {
            (Some(x), Some(y)) => x == y,
            (None, None) => a == b,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_support::{changed, count, run_pass};
    use crate::testing::{assert_same_results, random_tensor};
    use rill_graph::DType;
    use rill_ops::Builder;

    fn bin(b: &Builder, op: &str, x: Output, y: Output) -> Output {
        b.op(op).input(x).input(y).build_output().unwrap()
    }

    #[test]
    fn merges_duplicates_and_commutative_operands() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [2i64, 3]).unwrap();
        let a1 = bin(&b, "AddV2", x, y);
        let a2 = bin(&b, "AddV2", y, x);
        // Chains of duplicates collapse in one run.
        let e1 = b.op("Exp").input(a1).build_output().unwrap();
        let e2 = b.op("Exp").input(a2).build_output().unwrap();
        // Sub is not commutative.
        let s1 = bin(&b, "Sub", x, y);
        let s2 = bin(&b, "Sub", y, x);
        let c1 = b.scalar_f32(2.0).unwrap();
        let c2 = b.scalar_f32(2.0).unwrap();
        let c3 = b.scalar_f32(-0.0).unwrap();
        let c4 = b.scalar_f32(0.0).unwrap();
        let m1 = bin(&b, "Mul", e1, c1);
        let m2 = bin(&b, "Mul", e2, c2);
        let parts = [m1, m2, s1, s2];
        let t = b.op("AddN").input_list(&parts).build_output().unwrap();
        let u = bin(&b, "AddV2", t, c3);
        b.op("AddV2")
            .name("out")
            .input(u)
            .input(c4)
            .build()
            .unwrap();
        let before = b.into_graph();
        let mut after = before.clone();
        let records = run_pass(
            CommonSubexpressionElimination,
            &mut after,
            &["x:0", "y:0"],
            &["out:0"],
            &[],
        );
        assert!(changed(&records));
        // x+y twice, then the two additions of the constants.
        assert_eq!(count(&after, "AddV2"), 3);
        assert_eq!(count(&after, "Exp"), 1);
        assert_eq!(count(&after, "Mul"), 1);
        assert_eq!(count(&after, "Sub"), 2);
        // 2.0 twice merges; -0.0 and 0.0 differ in their bits.
        assert_eq!(count(&after, "Const"), 3, "{after:?}");
        let feeds = [
            ("x:0", random_tensor(DType::F32, &[2, 3], 10).unwrap()),
            ("y:0", random_tensor(DType::F32, &[2, 3], 11).unwrap()),
        ];
        assert_same_results(&before, &after, &feeds, &["out:0"], 1e-6);
    }

    #[test]
    fn never_merges_random_or_stateful_ops_or_different_control_inputs() {
        let b = crate::passes::test_support::builder_with_random();
        let shape = b.constant(Tensor::vector(vec![2i32])).unwrap();
        let random = |name: &str| {
            b.op("RandomUniform")
                .name(name)
                .input(shape)
                .attr("dtype", DType::F32)
                .build_output()
                .unwrap()
        };
        let (r1, r2) = (random("r1"), random("r2"));
        let sum = bin(&b, "AddV2", r1, r2);
        let v = b
            .variable_with_init("v", Tensor::vector(vec![1f32, 2.]))
            .unwrap();
        let one = b.constant(Tensor::vector(vec![1f32, 1.])).unwrap();
        let a1 = b.assign_add(v, one).unwrap();
        let a2 = b.assign_add(v, one).unwrap();
        let n1 = b
            .op("Neg")
            .input(sum)
            .control_input(a1.node)
            .build_output()
            .unwrap();
        let n2 = b
            .op("Neg")
            .input(sum)
            .control_input(a2.node)
            .build_output()
            .unwrap();
        let names: Vec<String> = [n1, n2].iter().map(|&o| b.graph().tensor_name(o)).collect();
        let fetches: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut g = b.into_graph();
        let records = run_pass(CommonSubexpressionElimination, &mut g, &[], &fetches, &[]);
        assert!(!changed(&records), "{:?}", records[0].notes);
        assert_eq!(count(&g, "RandomUniform"), 2);
        assert_eq!(count(&g, "AssignAdd"), 2);
        assert_eq!(count(&g, "Neg"), 2);
    }

    #[test]
    fn a_kept_duplicate_survives() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [3i64]).unwrap();
        let first = b.op("Exp").name("first").input(x).build_output().unwrap();
        let kept = b.op("Exp").name("kept").input(x).build_output().unwrap();
        let out = bin(&b, "Mul", first, kept);
        let out_name = b.graph().tensor_name(out);
        let before = b.into_graph();
        let mut after = before.clone();
        run_pass(
            CommonSubexpressionElimination,
            &mut after,
            &["x:0"],
            &[&out_name, "kept:0"],
            &[],
        );
        assert!(after.find("first").is_none() && after.find("kept").is_some());
        let xv = random_tensor(DType::F32, &[3], 12).unwrap();
        assert_same_results(
            &before,
            &after,
            &[("x:0", xv)],
            &[&out_name, "kept:0"],
            1e-6,
        );
    }
}
