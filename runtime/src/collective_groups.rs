//! Collective group resolution (TensorFlow's collective param resolver, done once per
//! compiled step instead of by RPC at run time): after placement, every collective node
//! that does not already carry `_group_devices` gets its group's members from the graph
//! itself. The members of one execution are the collective nodes sharing its
//! `(group_key, instance_key)`; their assigned devices, in TensorFlow's order (job,
//! replica, task, device type, index), are the ranks. A broadcast's `_source_rank` is the
//! rank of its `CollectiveBcastSend`. Graphs exported by TensorFlow with in-graph
//! collectives, or written by hand, run without Rill's underscore attrs.
//!
//! Invariants: nodes that already list `_group_devices` are left as they are; a resolved
//! instance has exactly `group_size` members on distinct devices, every instance of one
//! group key resolves to the same devices (so ranks agree across instances and steps), and
//! a broadcast has exactly one sender; any other graph is an InvalidArgument naming a node,
//! found at compile time instead of as a hang at run time.

use std::collections::BTreeMap;

use rill_graph::{AttrValue, DeviceSpec, Error, Graph, NodeId, Result};
use rill_ops::collective::COLLECTIVE_OPS;

/// One execution's members, before resolution.
struct Instance {
    group_size: i64,
    /// `(device, node)` per member.
    members: Vec<(DeviceSpec, NodeId)>,
}

fn int_attr(graph: &Graph, id: NodeId, name: &str) -> Result<i64> {
    let node = graph.node(id);
    node.attr(name).and_then(AttrValue::as_int).ok_or_else(|| {
        Error::invalid_argument(format!(
            "{} '{}' has no int attr '{name}'",
            node.op_name(),
            node.name
        ))
    })
}

/// Sets `_group_devices` (and `_source_rank` on broadcasts) on every placed collective
/// node of `graph` that lacks it; see the module documentation.
pub fn resolve_collective_groups(graph: &mut Graph) -> Result<()> {
    let mut instances: BTreeMap<(i64, i64), Instance> = BTreeMap::new();
    for (id, node) in graph.nodes() {
        if !COLLECTIVE_OPS.contains(&node.op_name()) || node.attr("_group_devices").is_some() {
            continue;
        }
        let device = node
            .assigned_device
            .clone()
            .ok_or_else(|| Error::internal(format!("collective '{}' was not placed", node.name)))?;
        let key = (
            int_attr(graph, id, "group_key")?,
            int_attr(graph, id, "instance_key")?,
        );
        let group_size = int_attr(graph, id, "group_size")?;
        let instance = instances.entry(key).or_insert(Instance {
            group_size,
            members: vec![],
        });
        if instance.group_size != group_size {
            return Err(Error::invalid_argument(format!(
                "{} '{}' (group {}, instance {}) has group_size {group_size}, another member \
                 {}",
                node.op_name(),
                node.name,
                key.0,
                key.1,
                instance.group_size
            )));
        }
        instance.members.push((device, id));
    }
    let mut group_devices: BTreeMap<i64, (Vec<DeviceSpec>, NodeId)> = BTreeMap::new();
    for ((group_key, instance_key), mut instance) in instances {
        instance.members.sort();
        let devices: Vec<DeviceSpec> = instance.members.iter().map(|(d, _)| d.clone()).collect();
        let first = instance.members[0].1;
        let what = |id: NodeId| {
            let n = graph.node(id);
            format!(
                "{} '{}' (group {group_key}, instance {instance_key})",
                n.op_name(),
                n.name
            )
        };
        if devices.len() as i64 != instance.group_size {
            return Err(Error::invalid_argument(format!(
                "{}: group_size is {} but the graph has {} members of this instance, on {}",
                what(first),
                instance.group_size,
                devices.len(),
                list(&devices)
            )));
        }
        if let Some(w) = devices.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid_argument(format!(
                "{}: two members of one instance are placed on {} (each member needs a device \
                 of its own)",
                what(first),
                w[0]
            )));
        }
        match group_devices.get(&group_key) {
            Some((earlier, other)) if *earlier != devices => {
                return Err(Error::invalid_argument(format!(
                    "{}: its members are on {}, but {} of the same group is on {}",
                    what(first),
                    list(&devices),
                    what(*other),
                    list(earlier)
                )))
            }
            Some(_) => {}
            None => {
                group_devices.insert(group_key, (devices.clone(), first));
            }
        }
        let senders: Vec<usize> = (instance.members.iter().enumerate())
            .filter(|(_, (_, id))| graph.node(*id).op_name() == "CollectiveBcastSend")
            .map(|(rank, _)| rank)
            .collect();
        let is_broadcast = instance
            .members
            .iter()
            .any(|(_, id)| graph.node(*id).op_name().starts_with("CollectiveBcast"));
        if is_broadcast && senders.len() != 1 {
            return Err(Error::invalid_argument(format!(
                "{}: a broadcast needs exactly one CollectiveBcastSend, this one has {}",
                what(first),
                senders.len()
            )));
        }
        let names =
            AttrValue::StringList(devices.iter().map(|d| d.to_string().into_bytes()).collect());
        for (_, id) in &instance.members {
            let node = graph.node_mut(*id);
            node.attrs.insert("_group_devices".into(), names.clone());
            if is_broadcast {
                node.attrs
                    .insert("_source_rank".into(), AttrValue::Int(senders[0] as i64));
            }
        }
    }
    Ok(())
}

fn list(devices: &[DeviceSpec]) -> String {
    let names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    format!("[{}]", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_graph::DType;
    use rill_ops::Builder;

    /// A reduce per device of `devices`, with only TensorFlow's attrs, placed there.
    fn reduces(devices: &[&str], group_size: i64) -> Graph {
        let b = Builder::new();
        for i in 0..devices.len() {
            let x = b.scalar_f32(i as f32).unwrap();
            b.op("CollectiveReduce")
                .name(&format!("r{i}"))
                .input(x)
                .attr("T", DType::F32)
                .attr("group_size", group_size)
                .attr("group_key", 1i64)
                .attr("instance_key", 7i64)
                .attr("merge_op", "Add")
                .attr("final_op", "Id")
                .attr("subdiv_offsets", AttrValue::IntList(vec![]))
                .build()
                .unwrap();
        }
        let mut g = b.into_graph();
        for (i, d) in devices.iter().enumerate() {
            let id = g.find(&format!("r{i}")).unwrap();
            g.node_mut(id).assigned_device = Some(DeviceSpec::parse(d).unwrap());
        }
        for id in g.node_ids() {
            if g.node(id).assigned_device.is_none() {
                g.node_mut(id).assigned_device = Some(DeviceSpec::parse(devices[0]).unwrap());
            }
        }
        g
    }

    fn group_of(g: &Graph, name: &str) -> Vec<String> {
        match g.node(g.find(name).unwrap()).attr("_group_devices") {
            Some(AttrValue::StringList(l)) => l
                .iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect(),
            other => panic!("no _group_devices: {other:?}"),
        }
    }

    #[test]
    fn ranks_follow_task_order_not_name_order() {
        let w = |t: u32| format!("/job:worker/replica:0/task:{t}/device:CPU:0");
        let devices = [w(10), w(2), w(0)];
        let refs: Vec<&str> = devices.iter().map(|s| s.as_str()).collect();
        let mut g = reduces(&refs, 3);
        resolve_collective_groups(&mut g).unwrap();
        for name in ["r0", "r1", "r2"] {
            assert_eq!(group_of(&g, name), vec![w(0), w(2), w(10)]);
        }
    }

    #[test]
    fn wrong_sizes_and_shared_devices_are_invalid_arguments() {
        let cpu = |i: u32| format!("/job:localhost/replica:0/task:0/device:CPU:{i}");
        let (a, b) = (cpu(0), cpu(1));
        let mut short = reduces(&[&a, &b], 3);
        let err = resolve_collective_groups(&mut short).unwrap_err();
        assert!(err.message.contains("group_size is 3"), "{err}");
        let mut shared = reduces(&[&a, &a], 2);
        let err = resolve_collective_groups(&mut shared).unwrap_err();
        assert!(err.message.contains("two members"), "{err}");
    }
}
