//! Collective ops, TensorFlow's (v1 attrs): `CollectiveReduce` (all-reduce),
//! `CollectiveGather` (all-gather along dim 0) and `CollectiveBcastSend`/`CollectiveBcastRecv`
//! (broadcast from one rank), plus the builder that makes one node per group member.
//!
//! A group is `group_size` nodes sharing `group_key`, each on its own device; one execution
//! of the group is named by `instance_key` (unique among the graph's collectives). Rill
//! resolves membership statically: every node carries `_group_devices` (the members' devices
//! in rank order) and, optionally, `_rank_hosts` (the host of each rank, for the
//! hierarchical algorithm); broadcasts carry `_source_rank`. The builder sets them; in a
//! graph without them (as TensorFlow writes it) the runtime sets them after placement.
//! Underscore attrs are ignored by TensorFlow's importer, so the graphs still open there. `communication_hint` picks the
//! algorithm: `auto`, `ring`, `tree` (recursive doubling) or `hierarchical`.
//!
//! Invariants: every collective op is stateful (never folded, merged or pruned as pure) and
//! not differentiable; nodes built by [`Builder::collective_reduce`] and its siblings agree
//! on every attr but their device.

use rill_graph::{AttrValue, DeviceSpec, Error, Result};

use crate::Builder;

mod broadcast;
mod gather;
mod reduce;

/// The dtypes collectives move: TensorFlow's list.
pub(crate) const COLLECTIVE_TYPES: &str = "T: {bfloat16, float, half, double, int32, int64}";

/// The collective ops, for registration and for passes that must recognise them.
pub const COLLECTIVE_OPS: [&str; 4] = [
    "CollectiveReduce",
    "CollectiveGather",
    "CollectiveBcastSend",
    "CollectiveBcastRecv",
];

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    reduce::register(r)?;
    gather::register(r)?;
    broadcast::register(r)?;
    for op in COLLECTIVE_OPS {
        r.no_gradient(op)?;
    }
    Ok(())
}

/// The members of a collective group and how its executions move data.
#[derive(Debug, Clone)]
pub struct CollectiveGroup {
    /// Each member's device, in rank order (`/job:worker/task:1`, `/device:CPU:3`, ...).
    pub devices: Vec<String>,
    pub group_key: i64,
    /// The host of each rank (same number = same host); empty: one host per task.
    pub hosts: Vec<i64>,
    /// `auto`, `ring`, `tree` or `hierarchical`.
    pub algorithm: String,
    /// Seconds a member waits for its peers before DeadlineExceeded; 0 waits as long as
    /// the step runs.
    pub timeout_seconds: f32,
}

impl CollectiveGroup {
    /// A group over `devices` with the automatic algorithm and no timeout.
    pub fn new(devices: Vec<String>, group_key: i64) -> CollectiveGroup {
        CollectiveGroup {
            devices,
            group_key,
            hosts: vec![],
            algorithm: "auto".into(),
            timeout_seconds: 0.0,
        }
    }

    fn check(&self, inputs: usize) -> Result<()> {
        if self.devices.is_empty() {
            return Err(Error::invalid_argument("a collective group needs a member"));
        }
        if inputs != self.devices.len() {
            return Err(Error::invalid_argument(format!(
                "a collective over {} devices needs one input per device, got {inputs}",
                self.devices.len()
            )));
        }
        if !self.hosts.is_empty() && self.hosts.len() != self.devices.len() {
            return Err(Error::invalid_argument(format!(
                "{} hosts given for {} devices: give none or one per device",
                self.hosts.len(),
                self.devices.len()
            )));
        }
        if !["auto", "ring", "tree", "hierarchical"].contains(&self.algorithm.as_str()) {
            return Err(Error::invalid_argument(format!(
                "unknown collective algorithm '{}' (auto, ring, tree or hierarchical)",
                self.algorithm
            )));
        }
        for d in &self.devices {
            DeviceSpec::parse(d)?;
        }
        Ok(())
    }
}

impl Builder {
    /// A fresh instance key: one above every instance key of the graph's collectives.
    pub fn next_instance_key(&self) -> i64 {
        let g = self.graph();
        let keys = g.nodes().filter_map(|(_, n)| {
            if !COLLECTIVE_OPS.contains(&n.op_name()) {
                return None;
            }
            match n.attr("instance_key") {
                Some(AttrValue::Int(k)) => Some(*k),
                _ => None,
            }
        });
        keys.max().map_or(1, |k| k + 1)
    }

    /// Starts member `rank`'s node of a collective of `group`: the common attrs, its device.
    fn collective_node(
        &self,
        op: &str,
        group: &CollectiveGroup,
        instance_key: i64,
        rank: usize,
    ) -> Result<crate::NodeBuilder<'_>> {
        let devices = group
            .devices
            .iter()
            .map(|d| d.as_bytes().to_vec())
            .collect();
        let mut node = self
            .op(op)
            .device(DeviceSpec::parse(&group.devices[rank])?)
            .attr("group_size", group.devices.len() as i64)
            .attr("group_key", group.group_key)
            .attr("instance_key", instance_key)
            .attr("communication_hint", group.algorithm.as_str())
            .attr("timeout_seconds", group.timeout_seconds)
            .attr("_group_devices", AttrValue::StringList(devices));
        if !group.hosts.is_empty() {
            node = node.attr("_rank_hosts", group.hosts.clone());
        }
        Ok(node)
    }
}
