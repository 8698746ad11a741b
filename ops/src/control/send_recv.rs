//! `_Send`, `_Recv`, `_HostSend` and `_HostRecv`: the internal ops the partitioner puts at
//! both ends of an edge that crosses devices (TensorFlow's `sendrecv_ops.cc`). A `_Send`
//! hands its input to the step's rendezvous under the key its attrs name; the `_Recv` with
//! the same attrs takes it out.
//!
//! Invariants: the signatures are TensorFlow's exactly (so partition graphs round-trip as
//! GraphDefs); all four are stateful (never folded, merged or pruned as duplicates) and not
//! differentiable; a `_Recv`'s output shape is unknown at graph time.

use rill_graph::shape_fn::unknown_outputs;
use rill_graph::{OpDef, Result};

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for op in ["_Send", "_HostSend"] {
        r.register(
            OpDef::build(op)
                .input("tensor: T")
                .attr("T: type")
                .attr("tensor_name: string")
                .attr("send_device: string")
                .attr("send_device_incarnation: int")
                .attr("recv_device: string")
                .attr("client_terminated: bool = false")
                .stateful()
                .shape_fn(unknown_outputs),
        )?;
        r.no_gradient(op)?;
    }
    for op in ["_Recv", "_HostRecv"] {
        r.register(
            OpDef::build(op)
                .output("tensor: tensor_type")
                .attr("tensor_type: type")
                .attr("tensor_name: string")
                .attr("send_device: string")
                .attr("send_device_incarnation: int")
                .attr("recv_device: string")
                .attr("client_terminated: bool = false")
                .stateful()
                .shape_fn(unknown_outputs),
        )?;
        r.no_gradient(op)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testing::{attrs, infer};
    use rill_graph::{AttrValue, DType, Graph, NodeSpec, Shape};

    fn comm_attrs(type_attr: &str) -> rill_graph::Attrs {
        attrs(&[
            (type_attr, AttrValue::Type(DType::F32)),
            ("tensor_name", "edge_1_x".into()),
            (
                "send_device",
                "/job:localhost/replica:0/task:0/device:CPU:0".into(),
            ),
            ("send_device_incarnation", AttrValue::Int(42)),
            (
                "recv_device",
                "/job:localhost/replica:0/task:0/device:CPU:1".into(),
            ),
        ])
    }

    #[test]
    fn registered_stateful_without_gradient() {
        let registry = crate::registry();
        for op in ["_Send", "_Recv", "_HostSend", "_HostRecv"] {
            let def = registry.lookup(op).unwrap();
            assert!(def.is_stateful, "{op}");
            assert!(
                matches!(
                    crate::lookup_gradient(op),
                    Some(crate::Gradient::NotDifferentiable)
                ),
                "{op}"
            );
            let default = def.attr("client_terminated").unwrap().default.clone();
            assert_eq!(default, Some(AttrValue::Bool(false)), "{op}");
        }
        assert_eq!(infer("_Recv", &comm_attrs("tensor_type"), "").unwrap(), "?");
        assert_eq!(infer("_Send", &comm_attrs("T"), "[2,3]").unwrap(), "");
    }

    #[test]
    fn a_send_recv_pair_goes_into_graphs() {
        let mut sender = Graph::new(crate::registry());
        let x = sender
            .add_node(NodeSpec {
                name: "x".into(),
                op: "Const".into(),
                attrs: attrs(&[
                    ("dtype", AttrValue::Type(DType::F32)),
                    ("value", rill_graph::Tensor::vector(vec![1f32, 2.0]).into()),
                ]),
                ..Default::default()
            })
            .unwrap();
        let send = sender
            .add_node(NodeSpec {
                name: "x/_send".into(),
                op: "_Send".into(),
                input_groups: vec![vec![x.output(0)]],
                attrs: comm_attrs("T"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(sender.node(send).num_outputs(), 0);
        sender.validate().unwrap();

        let mut receiver = Graph::new(crate::registry());
        let recv = receiver
            .add_node(NodeSpec {
                name: "x/_recv".into(),
                op: "_Recv".into(),
                attrs: comm_attrs("tensor_type"),
                ..Default::default()
            })
            .unwrap();
        let node = receiver.node(recv);
        assert_eq!(node.output_types, vec![DType::F32]);
        assert_eq!(node.output_shapes, vec![Shape::unknown()]);
        receiver.validate().unwrap();
    }
}
