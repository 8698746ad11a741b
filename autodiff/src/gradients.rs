//! The gradient walk (TensorFlow's `_GradientsHelper`): mark the nodes reachable forward
//! from `xs`, keep those that reach `ys` going back (the "between" nodes), count for each
//! how many between consumers read it, then process nodes in reverse topological order
//! from `ys`: sum the gradients arriving at each output (`AddN` when there are several),
//! call the op's gradient function, and hand each result to the producing input.
//!
//! Rules: `ys` are seeded with `grad_ys` or ones (`Fill(Shape(y), 1)`); an op registered
//! not differentiable (`StopGradient`, `Shape`, ...) passes no gradient; an op without any
//! gradient entry fails with Unimplemented naming it, but only when a gradient actually
//! reaches it; the walk does not go past a node producing an `x` unless other `xs` lie
//! behind it; gradients through loops (cycles) are Unimplemented. TF1 conditionals need
//! nothing special here: their `Switch`/`Merge` gradient functions (in `rill-ops`) keep
//! the untaken branch's gradients dead, so no sum mixes a live and a dead gradient.
//!
//! Invariant: every node added lies under one fresh `gradients[_N]/` scope, and on error
//! every node added is removed again.

use std::collections::{HashMap, HashSet, VecDeque};

use rill_graph::{Code, DType, Error, Graph, NodeId, Output, Result};
use rill_ops::gradient::scalar_like;
use rill_ops::{lookup_gradient, Builder, GradContext, Gradient};

/// Adds the gradients of `sum(ys)` (each `y` weighted by its `grad_ys` entry, default
/// ones) with respect to each of `xs`; `None` where the `ys` do not depend on an `x`.
pub fn gradients(
    b: &Builder,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
) -> Result<Vec<Option<Output>>> {
    let watermark = b.graph().node_ids().last().map(|id| id.index());
    let result = gradients_inner(b, ys, xs, grad_ys);
    if result.is_err() {
        let mut g = b.graph_mut();
        for id in g.node_ids() {
            if watermark.is_none_or(|w| id.index() > w) {
                g.remove_node(id);
            }
        }
    }
    result
}

/// [`gradients`] on a graph rather than a builder.
pub fn add_gradients(
    graph: &mut Graph,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
) -> Result<Vec<Option<Output>>> {
    let empty = Graph::new(graph.registry().clone());
    let b = Builder::from_graph(std::mem::replace(graph, empty));
    let result = gradients(&b, ys, xs, grad_ys);
    *graph = b.into_graph();
    result
}

fn check_output(g: &Graph, o: Output, what: &str) -> Result<()> {
    match g.get(o.node) {
        Some(n) if o.index < n.num_outputs() => Ok(()),
        _ => Err(Error::invalid_argument(format!(
            "gradients: {what} is not an output of a node of this graph"
        ))),
    }
}

/// The between nodes and, for each, how many data edges from it lead to between nodes.
fn pending_counts(g: &Graph, ys: &[Output], xs: &[Output]) -> HashMap<NodeId, usize> {
    let consumers = g.consumers();
    let mut reached: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = xs.iter().map(|x| x.node).collect();
    while let Some(id) = stack.pop() {
        if reached.insert(id) {
            for &c in consumers.get(&id).map(Vec::as_slice).unwrap_or_default() {
                // Control edges do not carry gradients.
                if g.node(c).inputs.iter().any(|i| i.node == id) {
                    stack.push(c);
                }
            }
        }
    }
    let mut between: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = ys.iter().map(|y| y.node).collect();
    while let Some(id) = stack.pop() {
        if reached.contains(&id) && between.insert(id) {
            stack.extend(g.node(id).inputs.iter().map(|i| i.node));
        }
    }
    let mut pending: HashMap<NodeId, usize> = between.iter().map(|&id| (id, 0)).collect();
    for &id in &between {
        for i in &g.node(id).inputs {
            if let Some(p) = pending.get_mut(&i.node) {
                *p += 1;
            }
        }
    }
    pending
}

/// A scope name not used by any node yet: `gradients`, `gradients_1`, ...
fn fresh_scope(g: &Graph) -> String {
    let used = |s: &str| {
        let prefix = format!("{s}/");
        g.nodes()
            .any(|(_, n)| n.name == s || n.name.starts_with(&prefix))
    };
    std::iter::once("gradients".to_string())
        .chain((1..).map(|i| format!("gradients_{i}")))
        .find(|s| !used(s))
        .expect("an unused scope exists")
}

/// The sum of the gradients collected for `o` (cached as the single entry).
fn aggregate(
    b: &Builder,
    grads: &mut HashMap<Output, Vec<Output>>,
    o: Output,
) -> Result<Option<Output>> {
    let Some(list) = grads.get_mut(&o) else {
        return Ok(None);
    };
    match list.len() {
        0 => Ok(None),
        1 => Ok(Some(list[0])),
        _ => {
            let sum = b.add_n(list)?;
            *list = vec![sum];
            Ok(Some(sum))
        }
    }
}

fn gradients_inner(
    b: &Builder,
    ys: &[Output],
    xs: &[Output],
    grad_ys: Option<&[Output]>,
) -> Result<Vec<Option<Output>>> {
    let (mut pending, scope) = {
        let g = b.graph();
        for &y in ys {
            check_output(&g, y, "a y")?;
            let dtype = g.dtype(y);
            if !dtype.is_float() {
                return Err(Error::invalid_argument(format!(
                    "gradients: '{}' has dtype {dtype}; only floating-point tensors can be \
                     differentiated",
                    g.tensor_name(y)
                )));
            }
        }
        for &x in xs {
            check_output(&g, x, "an x")?;
        }
        if let Some(gy) = grad_ys {
            if gy.len() != ys.len() {
                return Err(Error::invalid_argument(format!(
                    "gradients: {} grad_ys given for {} ys",
                    gy.len(),
                    ys.len()
                )));
            }
            for (&y, &d) in ys.iter().zip(gy) {
                check_output(&g, d, "a grad_y")?;
                if g.dtype(d) != g.dtype(y) {
                    return Err(Error::invalid_argument(format!(
                        "gradients: grad_y '{}' has dtype {} but y '{}' has dtype {}",
                        g.tensor_name(d),
                        g.dtype(d),
                        g.tensor_name(y),
                        g.dtype(y)
                    )));
                }
            }
        }
        (pending_counts(&g, ys, xs), fresh_scope(&g))
    };
    let _scope = b.name_scope(&scope);
    let mut grads: HashMap<Output, Vec<Output>> = HashMap::new();
    for (i, &y) in ys.iter().enumerate() {
        let seed = match grad_ys {
            Some(gy) => gy[i],
            None => {
                let one = scalar_like(b, b.dtype(y), 1.0)?;
                b.op("Fill")
                    .name(&format!("grad_ys_{i}"))
                    .input(b.shape_of(y)?)
                    .input(one)
                    .build_output()?
            }
        };
        grads.entry(y).or_default().push(seed);
    }
    let mut queue: VecDeque<NodeId> = VecDeque::new();
    let mut queued: HashSet<NodeId> = HashSet::new();
    for y in ys {
        if pending.get(&y.node) == Some(&0) && queued.insert(y.node) {
            queue.push_back(y.node);
        }
    }
    // Nodes producing an x are not differentiated through unless other xs lie behind them.
    let stop: HashSet<NodeId> = {
        let g = b.graph();
        xs.iter()
            .map(|x| x.node)
            .filter(|&id| {
                g.node(id)
                    .inputs
                    .iter()
                    .all(|i| pending.get(&i.node).is_none_or(|&p| p == 0))
            })
            .collect()
    };
    while let Some(id) = queue.pop_front() {
        let (inputs, n_out) = {
            let g = b.graph();
            let n = g.node(id);
            (n.inputs.clone(), n.num_outputs())
        };
        let out_grads = (0..n_out)
            .map(|i| aggregate(b, &mut grads, id.output(i)))
            .collect::<Result<Vec<_>>>()?;
        let in_grads = if out_grads.iter().any(Option::is_some) && !stop.contains(&id) {
            differentiate(b, id, out_grads)?
        } else {
            vec![None; inputs.len()]
        };
        for (&input, g) in inputs.iter().zip(in_grads) {
            if let Some(g) = g {
                grads.entry(input).or_default().push(g);
            }
        }
        for input in &inputs {
            if let Some(p) = pending.get_mut(&input.node) {
                *p = p.saturating_sub(1);
                if *p == 0 && queued.insert(input.node) {
                    queue.push_back(input.node);
                }
            }
        }
    }
    if let Some((&id, _)) = pending.iter().find(|(_, &p)| p > 0) {
        let g = b.graph();
        let n = g.node(id);
        return Err(Error::unimplemented(
            "gradients through loops (cycles in the graph) are not supported",
        )
        .at_node(&n.name, n.op_name()));
    }
    xs.iter().map(|&x| aggregate(b, &mut grads, x)).collect()
}

/// Calls node `id`'s gradient function with the gradients of its outputs.
fn differentiate(
    b: &Builder,
    id: NodeId,
    out_grads: Vec<Option<Output>>,
) -> Result<Vec<Option<Output>>> {
    let (name, op, input_types) = {
        let g = b.graph();
        let n = g.node(id);
        let types: Vec<DType> = n.inputs.iter().map(|&i| g.dtype(i)).collect();
        (n.name.clone(), n.op_name().to_string(), types)
    };
    let f = match lookup_gradient(&op) {
        Some(Gradient::Fn(f)) => f,
        Some(Gradient::NotDifferentiable) => return Ok(vec![None; input_types.len()]),
        None => {
            return Err(Error::unimplemented(format!(
                "no gradient is defined for op {op} (node '{name}'), which lies between the \
                 differentiated tensors and the tensors differentiated against"
            ))
            .at_node(&name, &op))
        }
    };
    let _scope = b.name_scope(&format!("{name}_grad"));
    let cx = GradContext::new(b, id, out_grads);
    let in_grads = f(&cx).map_err(|e| {
        let message = format!("computing the gradient of '{name}' ({op}): {}", e.message);
        Error { message, ..e }.at_node(&name, &op)
    })?;
    if in_grads.len() != input_types.len() {
        return Err(Error::internal(format!(
            "the gradient function of {op} returned {} gradients for {} inputs",
            in_grads.len(),
            input_types.len()
        ))
        .at_node(&name, &op));
    }
    for (i, (g, &want)) in in_grads.iter().zip(&input_types).enumerate() {
        if let Some(g) = g {
            let have = b.dtype(*g);
            if have != want && want != DType::Resource {
                return Err(Error::new(
                    Code::Internal,
                    format!(
                        "the gradient function of {op} returned a {have} gradient for input \
                         {i} of dtype {want}"
                    ),
                )
                .at_node(&name, &op));
            }
        }
    }
    Ok(in_grads)
}
