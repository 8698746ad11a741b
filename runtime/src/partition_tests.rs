//! Tests of the partition.

use super::*;
use crate::placer::{place, PlacerOptions};
use rill_graph::Node;
use rill_ops::Builder;

fn cpu(i: u32) -> DeviceSpec {
    DeviceSpec::parse(&format!("/job:localhost/replica:0/task:0/device:CPU:{i}")).unwrap()
}

fn split(b: Builder, options: &PartitionOptions) -> (DeviceSet, Partitions) {
    let mut g = b.into_graph();
    let devices = DeviceSet::local_cpus(2);
    let kernels = rill_kernels::registry();
    place(&mut g, &devices, &kernels, &PlacerOptions::default()).unwrap();
    let parts = partition(&g, &devices, options).unwrap();
    (devices, parts)
}

fn nodes_of<'a>(p: &'a Partition, op: &str) -> Vec<&'a Node> {
    p.graph
        .nodes()
        .map(|(_, n)| n)
        .filter(|n| n.op_name() == op)
        .collect()
}

fn attr_str(n: &Node, a: &str) -> String {
    n.attr(a)
        .and_then(AttrValue::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The key a Send or Recv builds from its attrs (frame 0:0).
fn key_of(n: &Node) -> RendezvousKey {
    let inc = n
        .attr("send_device_incarnation")
        .and_then(AttrValue::as_int)
        .unwrap();
    RendezvousKey::create(
        &attr_str(n, "send_device"),
        inc as u64,
        &attr_str(n, "recv_device"),
        &attr_str(n, "tensor_name"),
        FrameAndIter::default(),
    )
}

fn on(b: &Builder, op: &str, name: &str, x: Output, device: u32) -> Output {
    let n = b.op(op).name(name).input(x).device(cpu(device));
    n.build_output().unwrap()
}

/// A `dtype` node (`Const` of zeros or `Placeholder`) of `dims` named `name` on `device`.
fn source(b: &Builder, op: &str, name: &str, dims: &[usize], device: u32) -> Output {
    let n = b
        .op(op)
        .name(name)
        .attr("dtype", DType::F32)
        .device(cpu(device));
    let n = match op {
        "Const" => n.attr("value", Tensor::zeros(DType::F32, dims).unwrap()),
        _ => n.attr("shape", Shape::known(dims)),
    };
    n.build_output().unwrap()
}

#[test]
fn cross_device_edges_become_send_recv_pairs() {
    let b = Builder::new();
    let x = source(&b, "Const", "x", &[2, 3], 0);
    let y = on(&b, "Neg", "y", x, 1);
    on(&b, "Neg", "z", y, 0);
    let (devices, parts) = split(b, &PartitionOptions::default());
    assert_eq!(parts.partitions.len(), 2);
    let (p0, p1) = (parts.get(&cpu(0)).unwrap(), parts.get(&cpu(1)).unwrap());
    for n in ["x", "z"] {
        assert!(p0.graph.find(n).is_some(), "{n}");
    }
    assert!(p1.graph.find("y").is_some() && p1.graph.find("x").is_none());
    let send = nodes_of(p0, "_Send")[0];
    let recv = nodes_of(p1, "_Recv")[0];
    assert_eq!(attr_str(send, "tensor_name"), "edge_0_x");
    assert_eq!(attr_str(send, "send_device"), cpu(0).to_string());
    assert_eq!(attr_str(send, "recv_device"), cpu(1).to_string());
    let inc = devices.devices()[0].incarnation as i64;
    assert_eq!(
        send.attr("send_device_incarnation"),
        Some(&AttrValue::Int(inc))
    );
    assert_eq!(
        send.attr("client_terminated"),
        Some(&AttrValue::Bool(false))
    );
    assert_eq!(send.attr("T"), Some(&AttrValue::Type(DType::F32)));
    assert_eq!(recv.attr("tensor_type"), Some(&AttrValue::Type(DType::F32)));
    assert_eq!(key_of(send), key_of(recv));
    // y reads the Recv; y's value goes back to CPU:0 for z.
    let y_node = p1.graph.node(p1.graph.find("y").unwrap());
    assert_eq!(p1.graph.node(y_node.inputs[0].node).op_name(), "_Recv");
    assert_eq!(nodes_of(p1, "_Send").len(), 1);
    assert_eq!(p0.cut_edges.len(), 1);
    let edge = &p0.cut_edges[0];
    assert_eq!((edge.src.as_str(), edge.bytes), ("x:0", Some(24)));
    assert_eq!(parts.bytes_per_step(), (48, false));
    for p in &parts.partitions {
        p.graph.validate().unwrap();
    }
}

#[test]
fn one_recv_per_output_and_partition() {
    let b = Builder::new();
    let x = source(&b, "Placeholder", "x", &[4], 0);
    let a = on(&b, "Neg", "a", x, 1);
    let t = on(&b, "Tanh", "t", x, 1);
    b.op("Add")
        .name("s")
        .input(a)
        .input(t)
        .device(cpu(1))
        .build()
        .unwrap();
    let (_, parts) = split(b, &PartitionOptions::default());
    let p1 = parts.get(&cpu(1)).unwrap();
    assert_eq!(nodes_of(p1, "_Recv").len(), 1);
    assert_eq!(nodes_of(parts.get(&cpu(0)).unwrap(), "_Send").len(), 1);
    let recv = p1.graph.find(&nodes_of(p1, "_Recv")[0].name).unwrap();
    for n in ["a", "t"] {
        assert_eq!(
            p1.graph.node(p1.graph.find(n).unwrap()).inputs[0].node,
            recv
        );
    }
    assert_eq!(parts.cut_edges().count(), 1);
}

#[test]
fn control_edges_travel_as_tiny_tensors() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [4i64]).unwrap();
    let y = on(&b, "Neg", "y", x, 0);
    b.op("NoOp")
        .name("after")
        .control_input(y.node)
        .device(cpu(1))
        .build()
        .unwrap();
    let (_, parts) = split(b, &PartitionOptions::default());
    let (p0, p1) = (parts.get(&cpu(0)).unwrap(), parts.get(&cpu(1)).unwrap());
    let dummy = nodes_of(p0, "Const")[0];
    assert_eq!(dummy.control_inputs, vec![p0.graph.find("y").unwrap()]);
    assert_eq!(dummy.output_shapes, vec![Shape::scalar()]);
    let send = nodes_of(p0, "_Send")[0];
    assert_eq!(p0.graph.node(send.inputs[0].node).name, dummy.name);
    let after = p1.graph.node(p1.graph.find("after").unwrap());
    let recv = p1.graph.node(after.control_inputs[0]);
    assert_eq!(recv.op_name(), "_Recv");
    assert_eq!(key_of(send), key_of(recv));
    assert_eq!(p0.cut_edges[0].src, "^y");
    assert_eq!(p0.cut_edges[0].bytes, Some(4));
}

#[test]
fn feeds_and_fetches_off_the_client_go_through_the_rendezvous() {
    let b = Builder::new();
    let x = source(&b, "Placeholder", "x", &[2], 1);
    on(&b, "Neg", "y", x, 1);
    let options = PartitionOptions {
        feeds: vec!["x:0".into()],
        fetches: vec!["y:0".into()],
        client_device: None,
    };
    let (devices, parts) = split(b, &options);
    let p1 = parts.get(&cpu(1)).unwrap();
    let recv = nodes_of(p1, "_Recv")[0];
    assert_eq!(recv.attr("client_terminated"), Some(&AttrValue::Bool(true)));
    assert_eq!(attr_str(recv, "tensor_name"), "x:0");
    assert_eq!(attr_str(recv, "send_device"), cpu(0).to_string());
    let y = p1.graph.node(p1.graph.find("y").unwrap());
    assert_eq!(p1.graph.node(y.inputs[0].node).name, recv.name);
    assert_eq!(parts.feeds.len(), 1);
    assert_eq!(parts.feeds[0].key, key_of(recv));
    assert_eq!(
        parts.feeds[0].key.src_incarnation,
        devices.client().incarnation
    );
    let send = nodes_of(p1, "_Send")[0];
    assert_eq!(attr_str(send, "recv_device"), cpu(0).to_string());
    assert_eq!(send.attr("client_terminated"), Some(&AttrValue::Bool(true)));
    assert_eq!(parts.fetches[0].key, key_of(send));
    assert_eq!(parts.fetches[0].tensor, "y:0");
    p1.graph.validate().unwrap();
}

#[test]
fn unplaced_graphs_are_rejected() {
    let b = Builder::new();
    b.placeholder("x", DType::F32, [4i64]).unwrap();
    let e = partition(
        &b.into_graph(),
        &DeviceSet::local_cpus(2),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.node.as_deref()),
        (rill_graph::Code::FailedPrecondition, Some("x"))
    );
}
