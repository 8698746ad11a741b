//! Graph partitioning (TensorFlow's `graph_partition.cc`): splits a placed graph into one
//! graph per device and turns every edge between devices into a `_Send` / `_Recv` pair
//! that meets in the step's rendezvous.
//!
//! - A data edge `src:i -> dst` across devices: a `_Send` of `src:i` in the source
//!   partition and ONE `_Recv` per (source output, destination partition), shared by all
//!   consumers there. `tensor_name` is `edge_<id>_<src node>` (the id of the first such
//!   edge in node order, as TensorFlow names them by edge id).
//! - A control edge across devices travels as a tiny tensor: a scalar `Const` with a control
//!   input from the source feeds a `_Send`; the destination takes the matching `_Recv` as a
//!   control input (one per source node and destination partition).
//! - Feeds and fetches whose node is not on the client device ([`PartitionOptions`]):
//!   a fed `node:i` becomes a `_Recv` (client_terminated, sent by the client, `tensor_name`
//!   = `node:i`) that every user on that device reads instead; a fetched `node:i` gets a
//!   `_Send` to the client. The caller sends feeds to and receives fetches from the
//!   rendezvous with the keys in [`Partitions::feeds`] and [`Partitions::fetches`]; feeds
//!   and fetches on the client device are fed and fetched by name in its partition.
//!   A fed node itself stays in its partition (unread there); the caller runs each
//!   partition for its `_Send`s, fetches and targets, so pruning drops it.
//!
//! Invariants: every node of the input lands, under its own name and with its attrs, in
//! the partition of its assigned device; every partition passes `Graph::validate`; the key
//! a `_Send` builds from its attrs equals the key its `_Recv` builds (frame `0:0`). A
//! back-edge (`NextIteration -> Merge`) across devices is Unimplemented.

use std::collections::HashMap;

use rill_graph::{
    AttrValue, Attrs, DType, DeviceSpec, Error, Graph, NodeId, NodeSpec, Output, Result, Shape,
    Tensor,
};
use rill_kernels::rendezvous::{FrameAndIter, RendezvousKey};

use crate::device::{Device, DeviceSet};

/// What the partitioner needs beyond the placed graph.
#[derive(Debug, Clone, Default)]
pub struct PartitionOptions {
    /// Tensors (`node:i`) the client feeds.
    pub feeds: Vec<String>,
    /// Tensors (`node:i`) the client fetches.
    pub fetches: Vec<String>,
    /// The client's device (full name); `None`: the set's client (CPU:0).
    pub client_device: Option<String>,
}

/// One tensor crossing devices per step.
#[derive(Debug, Clone, PartialEq)]
pub struct CutEdge {
    /// The source tensor (`node:i`), or `^node` for a control edge.
    pub src: String,
    pub dst_device: String,
    /// The rendezvous tensor name (the `tensor_name` attr of the Send/Recv pair).
    pub tensor_name: String,
    pub dtype: DType,
    pub shape: Shape,
    /// Bytes per step, when the shape and dtype size are known.
    pub bytes: Option<usize>,
}

/// A fed or fetched tensor that travels between the client and another device.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTensor {
    /// `node:i` in the original graph.
    pub tensor: String,
    /// The device its node is on.
    pub device: String,
    /// The rendezvous key: client -> device for a feed, device -> client for a fetch.
    pub key: RendezvousKey,
}

/// One device's share of the graph.
#[derive(Debug, Clone)]
pub struct Partition {
    pub device: DeviceSpec,
    pub graph: Graph,
    /// The edges this partition sends to other devices.
    pub cut_edges: Vec<CutEdge>,
}

/// The result of [`partition`]: partitions in device-set order (devices with nodes only).
#[derive(Debug, Clone)]
pub struct Partitions {
    pub partitions: Vec<Partition>,
    /// Feeds delivered to a non-client device through the rendezvous.
    pub feeds: Vec<ClientTensor>,
    /// Fetches sent to the client through the rendezvous.
    pub fetches: Vec<ClientTensor>,
}

impl Partitions {
    /// The partition of `device`.
    pub fn get(&self, device: &DeviceSpec) -> Option<&Partition> {
        self.partitions.iter().find(|p| &p.device == device)
    }

    /// All cut edges, partition by partition.
    pub fn cut_edges(&self) -> impl Iterator<Item = &CutEdge> {
        self.partitions.iter().flat_map(|p| &p.cut_edges)
    }

    /// Bytes per step crossing devices where known, and whether some edge is unknown.
    pub fn bytes_per_step(&self) -> (usize, bool) {
        let known = self.cut_edges().filter_map(|e| e.bytes).sum();
        (known, self.cut_edges().any(|e| e.bytes.is_none()))
    }
}

/// One partition under construction.
struct Part {
    device: Device,
    graph: Graph,
    cut_edges: Vec<CutEdge>,
}

struct Partitioner<'a> {
    src: &'a Graph,
    parts: Vec<Part>,
    /// Original node -> (partition, node there).
    copies: HashMap<NodeId, (usize, NodeId)>,
    /// Fed outputs on a non-client device -> the feed `_Recv` there.
    feed_recvs: HashMap<Output, NodeId>,
    feeds: Vec<Output>,
    /// (source output, destination partition) -> `_Recv` there.
    recvs: HashMap<(Output, usize), NodeId>,
    /// (source node, destination partition) -> control `_Recv` there.
    control_recvs: HashMap<(NodeId, usize), NodeId>,
    /// Original edges numbered in node order: (consumer, input index) -> edge id.
    edge_ids: HashMap<(NodeId, usize), usize>,
    client: Device,
}

fn comm_attrs(
    type_attr: &str,
    dtype: DType,
    name: &str,
    from: &Device,
    to: &Device,
    client: bool,
) -> Attrs {
    [
        (type_attr, AttrValue::Type(dtype)),
        ("tensor_name", name.into()),
        ("send_device", from.name().into()),
        (
            "send_device_incarnation",
            AttrValue::Int(from.incarnation as i64),
        ),
        ("recv_device", to.name().into()),
        ("client_terminated", AttrValue::Bool(client)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn bytes_of(dtype: DType, shape: &Shape) -> Option<usize> {
    let n = usize::try_from(shape.num_elements()?).ok()?;
    n.checked_mul(dtype.size()?)
}

impl Partitioner<'_> {
    /// Adds a node to partition `p` on that partition's device.
    fn add(
        &mut self,
        p: usize,
        name: &str,
        op: &str,
        inputs: Vec<Vec<Output>>,
        attrs: Attrs,
    ) -> Result<NodeId> {
        let part = &mut self.parts[p];
        let spec = NodeSpec {
            name: part.graph.unique_name(name),
            op: op.to_string(),
            input_groups: inputs,
            control_inputs: vec![],
            attrs,
            device: part.device.spec.clone(),
        };
        let id = part.graph.add_node(spec)?;
        part.graph.node_mut(id).assigned_device = Some(part.device.spec.clone());
        Ok(id)
    }

    /// A `_Send` of `value` (an output in partition `from`) to partition `to`, and the
    /// matching `_Recv` there; returns the `_Recv`.
    fn send_recv(
        &mut self,
        from: usize,
        value: Output,
        to: usize,
        tensor_name: &str,
        label: &str,
        shape: Shape,
    ) -> Result<NodeId> {
        let dtype = self.parts[from].graph.dtype(value);
        let (src_dev, dst_dev) = (
            self.parts[from].device.clone(),
            self.parts[to].device.clone(),
        );
        let attrs = comm_attrs("T", dtype, tensor_name, &src_dev, &dst_dev, false);
        self.add(
            from,
            &format!("{tensor_name}/_send"),
            "_Send",
            vec![vec![value]],
            attrs,
        )?;
        let attrs = comm_attrs("tensor_type", dtype, tensor_name, &src_dev, &dst_dev, false);
        let recv = self.add(to, &format!("{tensor_name}/_recv"), "_Recv", vec![], attrs)?;
        self.parts[to].graph.node_mut(recv).output_shapes = vec![shape.clone()];
        let bytes = bytes_of(dtype, &shape);
        self.parts[from].cut_edges.push(CutEdge {
            src: label.to_string(),
            dst_device: dst_dev.name(),
            tensor_name: tensor_name.to_string(),
            dtype,
            shape,
            bytes,
        });
        Ok(recv)
    }

    /// Where output `o` of the original graph can be read in its own partition.
    fn local_value(&mut self, o: Output) -> Result<(usize, Output)> {
        let (p, id) = self.copies[&o.node];
        if !self.feeds.contains(&o) || self.parts[p].device == self.client {
            return Ok((p, id.output(o.index)));
        }
        if let Some(&recv) = self.feed_recvs.get(&o) {
            return Ok((p, recv.output(0)));
        }
        let name = self.src.tensor_name(o);
        let (client, dev) = (self.client.clone(), self.parts[p].device.clone());
        let attrs = comm_attrs("tensor_type", self.src.dtype(o), &name, &client, &dev, true);
        let base = format!("{}/_feed_{}", self.src.node(o.node).name, o.index);
        let recv = self.add(p, &base, "_Recv", vec![], attrs)?;
        self.parts[p].graph.node_mut(recv).output_shapes = vec![self.src.shape(o).clone()];
        self.feed_recvs.insert(o, recv);
        Ok((p, recv.output(0)))
    }

    /// The value of input `k` of original node `dst`, readable in partition `p`.
    fn input_in(&mut self, dst: NodeId, k: usize, o: Output, p: usize) -> Result<Output> {
        let (sp, value) = self.local_value(o)?;
        if sp == p {
            return Ok(value);
        }
        if let Some(&recv) = self.recvs.get(&(o, p)) {
            return Ok(recv.output(0));
        }
        let edge = self.edge_ids.get(&(dst, k)).copied().unwrap_or(0);
        let name = format!("edge_{edge}_{}", self.src.node(o.node).name);
        let label = self.src.tensor_name(o);
        let recv = self.send_recv(sp, value, p, &name, &label, self.src.shape(o).clone())?;
        self.recvs.insert((o, p), recv);
        Ok(recv.output(0))
    }

    /// The control `_Recv` in partition `p` standing for original node `src`.
    fn control_in(&mut self, src: NodeId, p: usize) -> Result<NodeId> {
        if let Some(&recv) = self.control_recvs.get(&(src, p)) {
            return Ok(recv);
        }
        let (sp, copy) = self.copies[&src];
        let src_name = self.src.node(src).name.clone();
        let attrs: Attrs = [
            ("dtype".to_string(), AttrValue::Type(DType::F32)),
            ("value".to_string(), AttrValue::Tensor(Tensor::scalar(0f32))),
        ]
        .into();
        let dummy = self.add(
            sp,
            &format!("{src_name}/_ctrl_const"),
            "Const",
            vec![],
            attrs,
        )?;
        self.parts[sp].graph.add_control_input(dummy, copy);
        let name = format!("edge_ctrl_{}_{src_name}", self.control_recvs.len());
        let recv = self.send_recv(
            sp,
            dummy.output(0),
            p,
            &name,
            &format!("^{src_name}"),
            Shape::scalar(),
        )?;
        self.control_recvs.insert((src, p), recv);
        Ok(recv)
    }
}

/// Splits a placed `graph` into one graph per device of `devices`; see the module doc.
pub fn partition(
    graph: &Graph,
    devices: &DeviceSet,
    options: &PartitionOptions,
) -> Result<Partitions> {
    graph.validate()?;
    let client = match &options.client_device {
        Some(name) => devices.lookup(name)?.clone(),
        None => devices.client().clone(),
    };
    let mut device_of: HashMap<NodeId, usize> = HashMap::new();
    for (id, node) in graph.nodes() {
        let spec = node.assigned_device.as_ref().ok_or_else(|| {
            Error::failed_precondition("the graph is not placed: the node has no assigned device")
                .at_node(&node.name, node.op_name())
        })?;
        let index = devices.index_of(spec).ok_or_else(|| {
            Error::invalid_argument(format!(
                "assigned device {spec} is not a device of this session"
            ))
            .at_node(&node.name, node.op_name())
        })?;
        device_of.insert(id, index);
    }
    let mut part_of_device: HashMap<usize, usize> = HashMap::new();
    let mut parts = vec![];
    for (d, device) in devices.devices().iter().enumerate() {
        if device_of.values().any(|&x| x == d) {
            part_of_device.insert(d, parts.len());
            let mut g = Graph::new(graph.registry().clone());
            g.versions = graph.versions.clone();
            g.library = graph.library.clone();
            parts.push(Part {
                device: device.clone(),
                graph: g,
                cut_edges: vec![],
            });
        }
    }
    let mut edge_ids = HashMap::new();
    for (id, node) in graph.nodes() {
        for k in 0..node.inputs.len() {
            let n = edge_ids.len();
            edge_ids.insert((id, k), n);
        }
    }
    let resolve = |names: &[String]| {
        names
            .iter()
            .map(|n| graph.output_named(n))
            .collect::<Result<Vec<_>>>()
    };
    let feeds = resolve(&options.feeds)?;
    let fetches = resolve(&options.fetches)?;
    let mut pt = Partitioner {
        src: graph,
        parts,
        copies: HashMap::new(),
        feed_recvs: HashMap::new(),
        feeds: feeds.clone(),
        recvs: HashMap::new(),
        control_recvs: HashMap::new(),
        edge_ids,
        client: client.clone(),
    };
    let mut back_edges = vec![];
    for id in graph.topo_order()? {
        let node = graph.node(id);
        let p = part_of_device[&device_of[&id]];
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for (k, &o) in node.inputs.iter().enumerate() {
            if pt.copies.contains_key(&o.node) {
                inputs.push(Some(pt.input_in(id, k, o, p)?));
            } else {
                // A loop back-edge: its source comes later; closed after all nodes exist.
                if part_of_device[&device_of[&o.node]] != p {
                    return Err(Error::unimplemented("a loop back-edge crosses devices")
                        .at_node(&node.name, node.op_name()));
                }
                back_edges.push((id, k, o));
                inputs.push(None);
            }
        }
        // A back-edge input stands in with another input of the same dtype until closed.
        let flat: Vec<Output> = inputs
            .iter()
            .enumerate()
            .map(|(k, i)| {
                i.or_else(|| {
                    inputs.iter().enumerate().find_map(|(j, x)| {
                        x.filter(|_| node.input_types.get(j) == node.input_types.get(k))
                    })
                })
                .ok_or_else(|| {
                    Error::unimplemented("a node whose inputs are all loop back-edges")
                        .at_node(&node.name, node.op_name())
                })
            })
            .collect::<Result<_>>()?;
        let lengths = node.op.arg_lengths(&node.op.inputs, &node.attrs)?;
        let mut rest = flat.as_slice();
        let mut groups = Vec::with_capacity(lengths.len());
        for n in lengths {
            let (group, tail) = rest.split_at(n.min(rest.len()));
            groups.push(group.to_vec());
            rest = tail;
        }
        let mut control_inputs = vec![];
        for &c in &node.control_inputs {
            let (cp, copy) = match pt.copies.get(&c) {
                Some(&x) => x,
                None => continue,
            };
            control_inputs.push(if cp == p { copy } else { pt.control_in(c, p)? });
        }
        let part = &mut pt.parts[p];
        let copy = part
            .graph
            .add_node(NodeSpec {
                name: node.name.clone(),
                op: node.op_name().to_string(),
                input_groups: groups,
                control_inputs,
                attrs: node.attrs.clone(),
                device: node.requested_device.clone(),
            })
            .map_err(|e| e.at_node(&node.name, node.op_name()))?;
        let n = part.graph.node_mut(copy);
        n.assigned_device = node.assigned_device.clone();
        n.output_shapes = node.output_shapes.clone();
        n.extras = node.extras.clone();
        pt.copies.insert(id, (p, copy));
    }
    for (dst, k, o) in back_edges {
        let (p, copy) = pt.copies[&dst];
        let value = pt.input_in(dst, k, o, p)?;
        pt.parts[p].graph.set_input(copy, k, value)?;
    }
    let mut feed_keys = vec![];
    for &o in &feeds {
        let (p, _) = pt.copies[&o.node];
        let device = pt.parts[p].device.clone();
        if device == client {
            continue;
        }
        pt.local_value(o)?;
        let key = RendezvousKey::create(
            &client.name(),
            client.incarnation,
            &device.name(),
            &graph.tensor_name(o),
            FrameAndIter::default(),
        );
        feed_keys.push(ClientTensor {
            tensor: graph.tensor_name(o),
            device: device.name(),
            key,
        });
    }
    let mut fetch_keys = vec![];
    for &o in &fetches {
        let (p, value) = pt.local_value(o)?;
        let device = pt.parts[p].device.clone();
        if device == client {
            continue;
        }
        let name = graph.tensor_name(o);
        let attrs = comm_attrs("T", graph.dtype(o), &name, &device, &client, true);
        let base = format!("{}/_fetch_{}", graph.node(o.node).name, o.index);
        pt.add(p, &base, "_Send", vec![vec![value]], attrs)?;
        let key = RendezvousKey::create(
            &device.name(),
            device.incarnation,
            &client.name(),
            &name,
            FrameAndIter::default(),
        );
        fetch_keys.push(ClientTensor {
            tensor: name,
            device: device.name(),
            key,
        });
    }
    let mut partitions = Vec::with_capacity(pt.parts.len());
    for (p, part) in pt.parts.into_iter().enumerate() {
        let mut g = part.graph;
        for (name, ids) in &graph.collections {
            for id in ids {
                match pt.copies.get(id) {
                    Some(&(cp, copy)) if cp == p => g.add_to_collection(name, copy),
                    _ => {}
                }
            }
        }
        g.validate().map_err(|e| {
            Error::internal(format!(
                "partition for {} is invalid: {e}",
                part.device.spec
            ))
        })?;
        partitions.push(Partition {
            device: part.device.spec,
            graph: g,
            cut_edges: part.cut_edges,
        });
    }
    Ok(Partitions {
        partitions,
        feeds: feed_keys,
        fetches: fetch_keys,
    })
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
