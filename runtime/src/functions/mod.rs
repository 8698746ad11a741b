//! TF2 functions: instantiating the bodies of a graph's `FunctionDefLibrary` in place of
//! the calls to them (`PartitionedCall`, `StatefulPartitionedCall`, direct calls, `If`,
//! `While` and their stateless forms), so the rest of the runtime sees a plain graph.
//!
//! [`lower_functions`] runs once when a session is created, the way TensorFlow's
//! `LowerFunctionalOpsPass` and function inlining do:
//!
//! - a call (`PartitionedCall`, `StatefulPartitionedCall`, or a node whose op is a library
//!   function) is replaced by the function's body ([`inline`]), its nodes renamed under
//!   `<call>/`, arguments entering through `Identity` nodes and results leaving through an
//!   `IdentityN` that takes the call's own name, so `call:1` and `^call` keep their meaning;
//! - `If` / `StatelessIf` become `Switch`/`Merge` with each branch inlined under its side of
//!   the switch ([`lower_if`], as TensorFlow's `LowerIfOp`);
//! - `While` / `StatelessWhile` become an `Enter`/`Merge`/`Switch`/`Exit`/`NextIteration`
//!   frame with `LoopCond`, the condition and body inlined inside it ([`lower_while`], as
//!   `LowerWhileOp`).
//!
//! Calls inside bodies are lowered the same way (nested functions, conditionals in loops);
//! recursion and nesting deeper than [`MAX_DEPTH`] are errors. The work is done on the
//! GraphDef form: the lowered nodes are imported again, which checks every op (an op Rill
//! does not know, inside any instantiated body, is Unimplemented at session creation, never
//! at a step), completes attrs and infers dtypes and shapes.
//!
//! Invariants: the lowered graph has no call node; every node of the original graph that is
//! not a call keeps its name, op, inputs and attrs; a call's outputs keep their tensor names.

mod inline;
mod lower_if;
mod lower_while;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rill_graph::{AttrValue, Attrs, Code, Error, Graph, OpDef, OpRegistry, Result};
use rill_proto::{attr_value, AttrValue as AttrProto, FunctionDef, GraphDef, NodeDef};

/// How deeply calls may nest (a function calling a function ...) before lowering gives up.
pub const MAX_DEPTH: usize = 64;

/// The functional ops lowered here (besides direct calls of library functions).
const CALL_OPS: &[&str] = &["PartitionedCall", "StatefulPartitionedCall"];
const IF_OPS: &[&str] = &["If", "StatelessIf"];
const WHILE_OPS: &[&str] = &["While", "StatelessWhile"];

/// The graph with every function call, `If` and `While` replaced by plain nodes, or `None`
/// when it has none. The result keeps the library (so it still round-trips) and the
/// graph's collections.
pub fn lower_functions(graph: &Graph) -> Result<Option<Graph>> {
    let library: HashMap<&str, &FunctionDef> = graph
        .library
        .function
        .iter()
        .filter_map(|f| f.signature.as_ref().map(|s| (s.name.as_str(), f)))
        .collect();
    if !graph.nodes().any(|(_, n)| is_call(&library, n.op_name())) {
        return Ok(None);
    }
    let def = graph.to_graph_def();
    let mut lowerer = Lowerer {
        registry: graph.registry(),
        library,
        names: def.node.iter().map(|n| n.name.clone()).collect(),
        ops: HashMap::new(),
        queue: def
            .node
            .iter()
            .map(|n| Pending {
                node: n.clone(),
                stack: vec![],
            })
            .collect(),
        out: Vec::with_capacity(def.node.len()),
    };
    while let Some(p) = lowerer.queue.pop_front() {
        if is_call(&lowerer.library, &p.node.op) {
            let (name, op) = (p.node.name.clone(), p.node.op.clone());
            lowerer.lower(p).map_err(|e| e.at_node(&name, &op))?;
        } else {
            lowerer.out.push(p.node);
        }
    }
    let lowered = GraphDef {
        node: lowerer.out,
        ..def
    };
    let mut result = Graph::from_graph_def(&lowered, graph.registry().clone())?;
    for (key, ids) in &graph.collections {
        let ids = ids
            .iter()
            .filter_map(|&id| result.find(&graph.get(id)?.name))
            .collect();
        result.collections.insert(key.clone(), ids);
    }
    Ok(Some(result))
}

/// Whether `op` is lowered here: a library function or a functional op.
fn is_call(library: &HashMap<&str, &FunctionDef>, op: &str) -> bool {
    library.contains_key(op)
        || CALL_OPS.contains(&op)
        || IF_OPS.contains(&op)
        || WHILE_OPS.contains(&op)
}

/// A node still to look at, with the functions whose bodies it comes from (outermost
/// first).
struct Pending {
    node: NodeDef,
    stack: Vec<String>,
}

/// What lowering works with: the library, names in use, and the nodes done and to do.
struct Lowerer<'a> {
    registry: &'a Arc<OpRegistry>,
    library: HashMap<&'a str, &'a FunctionDef>,
    /// Every node name used so far (the graph's and the lowered ones).
    names: HashSet<String>,
    /// Op definitions by op type, library signatures included.
    ops: HashMap<String, Arc<OpDef>>,
    queue: VecDeque<Pending>,
    out: Vec<NodeDef>,
}

/// The data and control inputs of a NodeDef, apart.
fn split_inputs(node: &NodeDef) -> (Vec<String>, Vec<String>) {
    let (control, data): (Vec<&String>, Vec<&String>) =
        node.input.iter().partition(|i| i.starts_with('^'));
    (
        data.into_iter().cloned().collect(),
        control.into_iter().map(|c| c[1..].to_string()).collect(),
    )
}

impl<'a> Lowerer<'a> {
    /// A node name not in use, `base` itself or `base_1`, `base_2`, ...; reserves it.
    fn fresh_name(&mut self, base: &str) -> String {
        let name = if self.names.contains(base) {
            (1..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| !self.names.contains(n))
                .expect("an unused name exists")
        } else {
            base.to_string()
        };
        self.names.insert(name.clone());
        name
    }

    /// The op definition of `op`: a library function's signature or a registered op.
    fn op_def(&mut self, op: &str) -> Result<Arc<OpDef>> {
        if let Some(d) = self.ops.get(op) {
            return Ok(d.clone());
        }
        let def = match self.library.get(op).and_then(|f| f.signature.as_ref()) {
            Some(sig) => Arc::new(OpDef::from_proto(sig)?),
            None => self.registry.lookup(op)?.clone(),
        };
        self.ops.insert(op.to_string(), def.clone());
        Ok(def)
    }

    /// Queues a new node produced while lowering a call of `stack`'s last function.
    fn emit(&mut self, node: NodeDef, stack: &[String]) {
        self.queue.push_back(Pending {
            node,
            stack: stack.to_vec(),
        });
    }

    /// Replaces one call, `If` or `While` node by the nodes it lowers to.
    fn lower(&mut self, p: Pending) -> Result<()> {
        let op = p.node.op.as_str();
        if IF_OPS.contains(&op) {
            lower_if::lower_if(self, p)
        } else if WHILE_OPS.contains(&op) {
            lower_while::lower_while(self, p)
        } else {
            self.lower_call(p)
        }
    }

    /// A `PartitionedCall`, `StatefulPartitionedCall` or direct call: the body, then an
    /// `IdentityN` named like the call with its results.
    fn lower_call(&mut self, p: Pending) -> Result<()> {
        let node = &p.node;
        let (function, attrs) = if CALL_OPS.contains(&node.op.as_str()) {
            func_attr(node, "f")?
        } else {
            let attrs = node
                .attr
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (node.op.clone(), attrs)
        };
        let (data, control) = split_inputs(node);
        let body = self.inline(&inline::Call {
            function: &function,
            attrs: &attrs,
            prefix: &node.name,
            inputs: &data,
            controls: &control,
            device: &node.device,
            stack: &p.stack,
        })?;
        if let Some(tout) = node.attr.get("Tout").and_then(type_list) {
            if tout.len() != body.outputs.len() {
                return Err(Error::invalid_argument(format!(
                    "the call expects {} results (Tout) but function '{function}' returns {}",
                    tout.len(),
                    body.outputs.len()
                )));
            }
        }
        let mut controls = body.control_outputs;
        if body.outputs.is_empty() {
            controls.extend(body.input_control);
        }
        let out = outputs_node(&node.name, &node.device, body.outputs, &controls);
        self.emit(out, &p.stack);
        Ok(())
    }
}

/// The node that stands for a lowered call: `IdentityN` of its results named like the call
/// (so `call:i` still names result `i`), waiting for `controls`; a `NoOp` when there are no
/// results.
fn outputs_node(name: &str, device: &str, outputs: Vec<String>, controls: &[String]) -> NodeDef {
    let op = if outputs.is_empty() {
        "NoOp"
    } else {
        "IdentityN"
    };
    let mut input = outputs;
    input.extend(controls.iter().map(|c| format!("^{c}")));
    NodeDef {
        name: name.to_string(),
        op: op.to_string(),
        input,
        device: device.to_string(),
        ..Default::default()
    }
}

/// A NodeDef with the given name, op, inputs, device and attrs.
fn node_def(name: &str, op: &str, input: Vec<String>, device: &str, attrs: Attrs) -> NodeDef {
    NodeDef {
        name: name.to_string(),
        op: op.to_string(),
        input,
        device: device.to_string(),
        attr: attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_proto()))
            .collect(),
        ..Default::default()
    }
}

/// The function named by attr `key` (`NameAttrList`) and the attrs it is instantiated with.
fn func_attr(node: &NodeDef, key: &str) -> Result<(String, HashMap<String, AttrProto>)> {
    match node.attr.get(key).and_then(|v| v.value.as_ref()) {
        Some(attr_value::Value::Func(f)) => Ok((f.name.clone(), f.attr.clone())),
        _ => Err(Error::invalid_argument(format!(
            "{} needs attr '{key}' naming a function",
            node.op
        ))),
    }
}

/// The dtypes of a `list(type)` attr.
fn type_list(v: &AttrProto) -> Option<Vec<rill_graph::DType>> {
    match AttrValue::from_proto(v, Some("list(type)")).ok()? {
        AttrValue::TypeList(t) => Some(t),
        _ => None,
    }
}

/// The dtype of a `type` attr.
fn type_attr(node: &NodeDef, key: &str) -> Option<rill_graph::DType> {
    AttrValue::from_proto(node.attr.get(key)?, Some("type"))
        .ok()?
        .as_type()
}

/// An error about a function being instantiated.
fn function_error(code: Code, function: &str, message: impl std::fmt::Display) -> Error {
    Error::new(code, format!("function '{function}': {message}"))
}
