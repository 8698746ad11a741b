//! The placer (TensorFlow's `Placer` / `ColocationGraph`): gives every node of a graph an
//! `assigned_device` from a [`DeviceSet`], honouring requested devices, colocation and
//! kernel availability, and spreading unconstrained work by a [`Strategy`].
//!
//! Colocation groups (union-find): both ends of every edge into a `Ref` input (`Assign`,
//! `Apply*` on a TF1 variable) and of every `DT_RESOURCE` edge (a `VarHandleOp` and the ops
//! using its handle); and all nodes naming the same `loc:@name` in their `_class` attr,
//! together with the node `name`. A plain read of a TF1 variable's value (a non-ref input)
//! does not colocate: the value crosses devices like any tensor. A group's requested devices are merged;
//! incompatible requests are an InvalidArgument naming both nodes and both devices.
//!
//! Invariants: after a successful `place`, every live node has a full `assigned_device`
//! of the set, all members of a group share it, and the device's type has a kernel for
//! every member (a node with no kernel on any device type of the set does not constrain
//! placement: compiling its kernel reports that later). Results are deterministic.
//! Placed collectives without `_group_devices` then get their groups from the graph
//! ([`crate::collective_groups`]).

use std::collections::HashMap;

use rill_graph::{is_back_edge, AttrValue, DeviceSpec, Error, Graph, NodeId, Result};
use rill_kernels::{DeviceType, KernelRegistry};

use crate::collective_groups::resolve_collective_groups;
use crate::device::{local_defaults, DeviceSet};

/// Device types Rill has kernels for (a request for another type has no kernel).
const KERNEL_DEVICE_TYPES: [DeviceType; 1] = [DeviceType::Cpu];

/// Where nodes without a device request go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Everything on the client device.
    #[default]
    Client,
    /// Across all devices, balancing node counts and following producers (depth-first
    /// topological order keeps chains together); a `Const` with one consumer group goes
    /// with that group.
    Spread,
}

/// How to place.
#[derive(Debug, Clone, Default)]
pub struct PlacerOptions {
    /// Move a node whose requested device cannot run it to one that can, instead of failing.
    pub soft_placement: bool,
    pub strategy: Strategy,
}

/// What the placer decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlacementLog {
    /// `(node, device)` for every node, in node id order.
    pub assignments: Vec<(String, String)>,
    /// One line per soft-placement move:
    /// `moved 'node' (Op) from /device:GPU:0 to /job:.../device:CPU:0: no GPU kernel`.
    pub moves: Vec<String>,
}

impl PlacementLog {
    /// `node -> device` lines followed by the moves.
    pub fn lines(&self) -> Vec<String> {
        self.assignments
            .iter()
            .map(|(n, d)| format!("{n} -> {d}"))
            .chain(self.moves.iter().cloned())
            .collect()
    }
}

/// Disjoint sets over `0..n` (path halving; the smaller index is always the root).
pub struct UnionFind(Vec<usize>);

impl UnionFind {
    pub fn new(n: usize) -> UnionFind {
        UnionFind((0..n).collect())
    }

    /// The root of `x`'s set.
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    /// Joins the sets of `a` and `b`.
    pub fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        // The smaller index is the root, so group roots are deterministic.
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        self.0[hi] = lo;
    }
}

/// Merges two partial specs, or `None` when they set a part differently.
fn merge_specs(a: &DeviceSpec, b: &DeviceSpec) -> Option<DeviceSpec> {
    fn part<T: Clone + PartialEq>(x: &Option<T>, y: &Option<T>) -> Option<Option<T>> {
        match (x, y) {
            (Some(p), Some(q)) if p != q => None,
            _ => Some(x.clone().or_else(|| y.clone())),
        }
    }
    Some(DeviceSpec {
        job: part(&a.job, &b.job)?,
        replica: part(&a.replica, &b.replica)?,
        task: part(&a.task, &b.task)?,
        device_type: part(&a.device_type, &b.device_type)?,
        device_index: part(&a.device_index, &b.device_index)?,
    })
}

/// For each data input of `id`, whether the edge pins the node to its producer's device:
/// a `Ref` input (an update of a TF1 variable) or a `DT_RESOURCE` one (a variable handle).
/// A plain read of a TF1 variable's value does not pin (it may run anywhere, as in
/// TensorFlow).
pub fn pinning_inputs(graph: &Graph, id: NodeId) -> Vec<bool> {
    let node = graph.node(id);
    let op = &node.op;
    let refs: Vec<bool> = match op.arg_lengths(&op.inputs, &node.attrs) {
        Ok(lengths) => op
            .inputs
            .iter()
            .zip(lengths)
            .flat_map(|(arg, n)| std::iter::repeat_n(arg.is_ref, n))
            .collect(),
        Err(_) => vec![],
    };
    node.inputs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let live = graph.get(o.node).is_some();
            live && (refs.get(k) == Some(&true) || graph.dtype(*o) == rill_graph::DType::Resource)
        })
        .collect()
}

/// The colocation groups of the graph's nodes (indices into `ids`), each sorted, ordered by
/// their smallest member.
fn colocation_groups(graph: &Graph, ids: &[NodeId]) -> Vec<Vec<usize>> {
    let pos: HashMap<NodeId, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut uf = UnionFind::new(ids.len());
    let mut classes: HashMap<String, usize> = HashMap::new();
    for (i, &id) in ids.iter().enumerate() {
        let node = graph.node(id);
        for (k, pinned) in pinning_inputs(graph, id).into_iter().enumerate() {
            if let Some(&src) = pos.get(&node.inputs[k].node).filter(|_| pinned) {
                uf.union(src, i);
            }
        }
        if let Some(AttrValue::StringList(list)) = node.attr("_class") {
            for class in list {
                let Some(name) = std::str::from_utf8(class)
                    .ok()
                    .and_then(|c| c.strip_prefix("loc:@"))
                else {
                    continue;
                };
                let first = *classes.entry(name.to_string()).or_insert(i);
                uf.union(first, i);
                if let Some(&named) = graph.find(name).and_then(|n| pos.get(&n)) {
                    uf.union(named, i);
                }
            }
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..ids.len() {
        let root = uf.find(i);
        by_root.entry(root).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_root.into_values().collect();
    groups.sort_by_key(|g| g[0]);
    groups
}

/// The merged request of a group: `None` when no member requests a device; otherwise the
/// merged spec and the first requesting member. InvalidArgument on incompatible requests.
fn group_request(
    graph: &Graph,
    ids: &[NodeId],
    members: &[usize],
) -> Result<Option<(DeviceSpec, usize)>> {
    let mut merged: Option<(DeviceSpec, usize)> = None;
    let mut seen: Vec<usize> = vec![];
    for &m in members {
        let node = graph.node(ids[m]);
        if node.requested_device.is_empty() {
            continue;
        }
        let spec = &node.requested_device;
        match &merged {
            None => merged = Some((spec.clone(), m)),
            Some((acc, first)) => match merge_specs(acc, spec) {
                Some(next) => merged = Some((next, *first)),
                None => {
                    let other = seen
                        .iter()
                        .map(|&s| graph.node(ids[s]))
                        .find(|o| merge_specs(&o.requested_device, spec).is_none())
                        .unwrap_or_else(|| graph.node(ids[*first]));
                    return Err(Error::invalid_argument(format!(
                        "cannot colocate '{}' (requested {}) with '{}' (requested {}): \
                         the devices are incompatible",
                        node.name, spec, other.name, other.requested_device
                    ))
                    .at_node(&node.name, node.op_name()));
                }
            },
        }
        seen.push(m);
    }
    Ok(merged)
}

/// Live nodes in a depth-first topological order (a ready consumer runs before siblings
/// waiting in the queue), as indices into `ids`; loop back-edges do not order nodes.
fn depth_first_order(graph: &Graph, ids: &[NodeId]) -> Vec<usize> {
    let pos: HashMap<NodeId, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut pending = vec![0usize; ids.len()];
    let mut consumers: Vec<Vec<usize>> = vec![vec![]; ids.len()];
    for (i, &id) in ids.iter().enumerate() {
        let node = graph.node(id);
        let inputs = node.inputs.iter().map(|o| o.node);
        for src in inputs.chain(node.control_inputs.iter().copied()) {
            let Some(&s) = pos.get(&src) else { continue };
            if is_back_edge(graph.node(src).op_name(), node.op_name()) {
                continue;
            }
            pending[i] += 1;
            consumers[s].push(i);
        }
    }
    let mut stack: Vec<usize> = (0..ids.len()).rev().filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(ids.len());
    let mut done = vec![false; ids.len()];
    while let Some(i) = stack.pop() {
        order.push(i);
        done[i] = true;
        let mut ready = vec![];
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
        ready.sort_unstable();
        ready.dedup();
        stack.extend(ready.into_iter().rev());
    }
    // Nodes on a cycle (the graph is invalid; validation reports it) go last.
    order.extend((0..ids.len()).filter(|&i| !done[i]));
    order
}

/// Why no device matching `spec` can run the group.
fn reason(
    graph: &Graph,
    ids: &[NodeId],
    members: &[usize],
    spec: &DeviceSpec,
    devices: &DeviceSet,
    kernels: &KernelRegistry,
) -> String {
    let full = spec.merged_with(&local_defaults());
    if let Some(ty) = &full.device_type {
        if !KERNEL_DEVICE_TYPES.iter().any(|t| t.name() == ty) {
            if ty == "GPU" {
                // Say what the machine has too: a missing driver or build feature is the
                // usual reason a TensorFlow graph's GPU pin cannot be honoured.
                let found = match &rill_kernels::gpu::probe().why_none {
                    Some(why) => format!("no GPU: {why}"),
                    None => "Rill has no GPU kernels yet".to_string(),
                };
                return format!("no GPU kernel ({found})");
            }
            return format!("no {ty} kernel");
        }
    }
    let matching = devices.find_matching(spec);
    let Some(first) = matching.first() else {
        let names: Vec<String> = devices.devices().iter().map(|d| d.name()).collect();
        return format!(
            "no device matches {full} (the session has {})",
            names.join(", ")
        );
    };
    let ty = first.device_type;
    match members
        .iter()
        .map(|&m| graph.node(ids[m]))
        .find(|n| !kernels.supports(n, ty))
    {
        Some(n) => format!(
            "no {} kernel for op {} ('{}')",
            ty.name(),
            n.op_name(),
            n.name
        ),
        None => format!("no device matching {full} can run the group"),
    }
}

/// Sets `assigned_device` on every node of `graph`; see the module doc for the rules.
pub fn place(
    graph: &mut Graph,
    devices: &DeviceSet,
    kernels: &KernelRegistry,
    options: &PlacerOptions,
) -> Result<PlacementLog> {
    let ids = graph.node_ids();
    let groups = colocation_groups(graph, &ids);
    let mut group_of = vec![0usize; ids.len()];
    for (g, members) in groups.iter().enumerate() {
        for &m in members {
            group_of[m] = g;
        }
    }
    let types: Vec<DeviceType> = devices.devices().iter().map(|d| d.device_type).collect();
    // Whether node `m` can run on a device of type `ty` (true for nodes no type can run).
    let runs_on = |m: usize, ty: DeviceType| {
        let node = graph.node(ids[m]);
        kernels.supports(node, ty) || !types.iter().any(|&t| kernels.supports(node, t))
    };
    let client = devices.index_of(&devices.client().spec).unwrap_or(0);
    let capacity = ids.len().div_ceil(devices.len().max(1)).max(1);
    let mut load = vec![0usize; devices.len()];
    let mut placed: Vec<Option<usize>> = vec![None; groups.len()];
    let mut log = PlacementLog::default();
    let mut group_order: Vec<usize> = vec![];
    let mut listed = vec![false; groups.len()];
    for m in depth_first_order(graph, &ids) {
        if !std::mem::replace(&mut listed[group_of[m]], true) {
            group_order.push(group_of[m]);
        }
    }
    let consumers = graph.consumers();
    let mut deferred: Vec<(usize, Vec<usize>)> = vec![];
    for g in group_order {
        let members = &groups[g];
        let request = group_request(graph, &ids, members)?;
        let runnable: Vec<usize> = (0..devices.len())
            .filter(|&d| members.iter().all(|&m| runs_on(m, types[d])))
            .collect();
        let mut candidates: Vec<usize> = match &request {
            None => runnable.clone(),
            Some((spec, _)) => {
                let matching = devices.find_matching(spec);
                runnable
                    .iter()
                    .copied()
                    .filter(|&d| matching.iter().any(|m| m.spec == devices.devices()[d].spec))
                    .collect()
            }
        };
        if candidates.is_empty() {
            let (spec, who) = request
                .clone()
                .unwrap_or((DeviceSpec::default(), members[0]));
            let why = reason(graph, &ids, members, &spec, devices, kernels);
            let node = graph.node(ids[who]);
            if !options.soft_placement || runnable.is_empty() {
                return Err(Error::invalid_argument(format!(
                    "cannot assign a device for operation '{}' ({}): requested {}: {why}",
                    node.name,
                    node.op_name(),
                    if spec.is_empty() {
                        "any device".to_string()
                    } else {
                        spec.to_string()
                    }
                ))
                .at_node(&node.name, node.op_name()));
            }
            candidates = runnable.clone();
            let to = if candidates.contains(&client) {
                client
            } else {
                candidates[0]
            };
            let others = match members.len() {
                1 => String::new(),
                n => format!(" (with {} colocated nodes)", n - 1),
            };
            log.moves.push(format!(
                "moved '{}' ({}) from {} to {}{others}: {why}",
                node.name,
                node.op_name(),
                node.requested_device,
                devices.devices()[to].spec
            ));
            candidates = vec![to];
        }
        // A lone unconstrained Const feeding one group goes where that group goes.
        if options.strategy == Strategy::Spread && request.is_none() && members.len() == 1 {
            let node = graph.node(ids[members[0]]);
            let users: Vec<usize> = consumers
                .get(&ids[members[0]])
                .map(|c| {
                    c.iter()
                        .filter_map(|n| ids.binary_search(n).ok())
                        .map(|i| group_of[i])
                        .collect()
                })
                .unwrap_or_default();
            if node.op_name() == "Const"
                && !users.is_empty()
                && users.iter().all(|&u| u == users[0])
            {
                deferred.push((g, candidates));
                continue;
            }
        }
        let producer = members
            .iter()
            .flat_map(|&m| graph.node(ids[m]).inputs.iter())
            .filter_map(|o| ids.binary_search(&o.node).ok())
            .find_map(|i| placed[group_of[i]].filter(|_| group_of[i] != g));
        let d = choose(
            options.strategy,
            &candidates,
            client,
            producer,
            &load,
            capacity,
        );
        placed[g] = Some(d);
        load[d] += members.len();
    }
    for (g, candidates) in deferred {
        let m = groups[g][0];
        let user = consumers
            .get(&ids[m])
            .and_then(|c| c.first())
            .and_then(|n| ids.binary_search(n).ok())
            .and_then(|i| placed[group_of[i]]);
        let d = match user {
            Some(d) if candidates.contains(&d) => d,
            _ => choose(options.strategy, &candidates, client, None, &load, capacity),
        };
        placed[g] = Some(d);
        load[d] += 1;
    }
    for (g, members) in groups.iter().enumerate() {
        let Some(d) = placed[g] else {
            return Err(Error::internal("placer left a colocation group unplaced"));
        };
        for &m in members {
            graph.node_mut(ids[m]).assigned_device = Some(devices.devices()[d].spec.clone());
        }
    }
    resolve_collective_groups(graph)?;
    log.assignments = graph
        .nodes()
        .map(|(_, n)| {
            let device = n
                .assigned_device
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default();
            (n.name.clone(), device)
        })
        .collect();
    Ok(log)
}

/// Picks a device among `candidates` (non-empty).
fn choose(
    strategy: Strategy,
    candidates: &[usize],
    client: usize,
    producer: Option<usize>,
    load: &[usize],
    capacity: usize,
) -> usize {
    match strategy {
        Strategy::Client if candidates.contains(&client) => client,
        Strategy::Client => candidates[0],
        Strategy::Spread => match producer {
            Some(p) if candidates.contains(&p) && load[p] < capacity => p,
            _ => candidates
                .iter()
                .copied()
                .min_by_key(|&d| (load[d], d))
                .unwrap_or(client),
        },
    }
}

#[cfg(test)]
#[path = "placer_tests.rs"]
mod tests;
