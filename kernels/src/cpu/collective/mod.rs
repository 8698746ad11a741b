//! CPU kernels of the collective ops (`CollectiveReduce`, `CollectiveGather`,
//! `CollectiveBcastSend`/`Recv`): each member's kernel runs its part of the algorithm on a
//! thread of its own, exchanging pieces with its peers through the step's rendezvous
//! ([`comm`]), so in one process devices meet in the local rendezvous and across processes
//! the worker transport carries the data; executors see an ordinary asynchronous kernel.
//!
//! Group membership is static: `_group_devices` (set by the builder, or by the runtime's
//! group resolution after placement) lists the members' devices in rank order (partial
//! names are completed from this node's device: missing job, replica and task are its own,
//! a missing device is `CPU:0`), and this node's rank is where its own device stands. Hosts for the hierarchical algorithm come from `_rank_hosts`, or else one host
//! per task.
//!
//! Invariants: a kernel never holds an executor thread while it waits; a member whose peer
//! is dead fails with the peer's Unavailable, one whose peer is silent past
//! `timeout_seconds` with DeadlineExceeded, both naming the missing rank; a group of one
//! needs no rendezvous.

use std::sync::Arc;
use std::time::Duration;

use rill_graph::{AttrValue, DType, DeviceSpec, Error, Node, Result, Tensor};

use crate::cpu::math::util::{attr_float, attr_int, attr_str, attr_type};
use crate::{AsyncDone, KernelContext, KernelRegistry};

mod algorithms;
mod broadcast;
mod comm;
mod elements;
mod gather;
mod reduce;
#[cfg(test)]
mod tests;

use comm::Comm;

/// What every member's kernel knows of its collective, read from the node once.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// `CollectiveReduce 'name' (group 1, instance 3)`, for messages.
    what: String,
    dtype: DType,
    devices: Vec<String>,
    rank: usize,
    group_key: i64,
    instance_key: i64,
    hosts: Vec<i64>,
    hint: String,
    timeout: Option<Duration>,
}

impl Params {
    fn read(node: &Node) -> Result<Params> {
        let group_size = attr_int(node, "group_size", 0)?;
        let group_key = attr_int(node, "group_key", 0)?;
        let instance_key = attr_int(node, "instance_key", 0)?;
        let what = format!(
            "{} '{}' (group {group_key}, instance {instance_key})",
            node.op_name(),
            node.name
        );
        // A partition registered on a worker carries its placement as the requested device.
        let own = (node.assigned_device.clone()).unwrap_or_else(|| node.requested_device.clone());
        let devices: Vec<String> = match node.attr("_group_devices") {
            Some(AttrValue::StringList(list)) => list
                .iter()
                .map(|d| complete(&String::from_utf8_lossy(d), &own))
                .collect::<Result<_>>()?,
            _ if group_size == 1 => vec![own.to_string()],
            _ => {
                return Err(Error::failed_precondition(format!(
                    "{what}: no members for a group of {group_size}: groups are resolved when \
                     a step is placed on several devices (a session with several CPU devices, \
                     a cluster), or listed in `_group_devices`"
                )))
            }
        };
        if devices.len() as i64 != group_size {
            return Err(Error::invalid_argument(format!(
                "{what}: group_size is {group_size} but {} devices are listed",
                devices.len()
            )));
        }
        let me = if own.job.is_some() {
            complete(&own.to_string(), &own)?
        } else {
            own.to_string()
        };
        let rank = match devices.iter().position(|d| *d == me) {
            Some(rank) => rank,
            None if devices.len() == 1 => 0,
            None => {
                return Err(Error::failed_precondition(format!(
                    "{what}: this node runs on '{me}', which is not one of the group's devices \
                     {devices:?}"
                )))
            }
        };
        let hosts = match node.attr("_rank_hosts") {
            Some(AttrValue::IntList(h)) if h.len() == devices.len() => h.clone(),
            Some(AttrValue::IntList(h)) if !h.is_empty() => {
                return Err(Error::invalid_argument(format!(
                    "{what}: _rank_hosts has {} entries for {} members",
                    h.len(),
                    devices.len()
                )))
            }
            _ => hosts_by_task(&devices)?,
        };
        let seconds = attr_float(node, "timeout_seconds", 0.0)?;
        let timeout = (seconds > 0.0).then(|| Duration::from_secs_f32(seconds));
        Ok(Params {
            what,
            dtype: attr_type(node, "T", DType::F32)?,
            devices,
            rank,
            group_key,
            instance_key,
            hosts,
            hint: attr_str(node, "communication_hint", "auto")?,
            timeout,
        })
    }

    fn size(&self) -> usize {
        self.devices.len()
    }

    /// This member's link to its peers for one execution (its deadline starts now).
    fn comm(&self, cx: &KernelContext) -> Result<Comm> {
        let rendezvous = cx.rendezvous.cloned().ok_or_else(|| {
            Error::failed_precondition(format!(
                "{}: a group of {} needs a step across devices (this step has no rendezvous)",
                self.what,
                self.size()
            ))
        })?;
        Ok(Comm::new(
            rendezvous,
            self.devices.clone(),
            self.rank,
            format!("coll{}.{}", self.group_key, self.instance_key),
            self.what.clone(),
            self.timeout,
        ))
    }
}

impl Params {
    /// [`Params::comm`] for a group of more than one; `None` for a group of one (no peers).
    fn peers(&self, cx: &KernelContext) -> Result<Option<Comm>> {
        (self.size() > 1).then(|| self.comm(cx)).transpose()
    }
}

/// `partial` completed from `own`: missing job, replica and task are `own`'s, a missing
/// device is `CPU:0`.
fn complete(partial: &str, own: &DeviceSpec) -> Result<String> {
    let mut spec = DeviceSpec::parse(partial)?;
    spec.job = spec.job.or_else(|| own.job.clone());
    spec.replica = spec.replica.or(own.replica).or(Some(0));
    spec.task = spec.task.or(own.task).or(Some(0));
    if spec.device_type.is_none() {
        spec.device_type = Some("CPU".into());
    }
    spec.device_index = spec.device_index.or(Some(0));
    Ok(spec.to_string())
}

/// One host per task: ranks whose devices share job, replica and task share a host.
fn hosts_by_task(devices: &[String]) -> Result<Vec<i64>> {
    let mut tasks: Vec<String> = Vec::new();
    devices
        .iter()
        .map(|d| {
            let s = DeviceSpec::parse(d)?;
            let task = format!("{:?}/{:?}/{:?}", s.job, s.replica, s.task);
            let at = tasks.iter().position(|t| *t == task).unwrap_or_else(|| {
                tasks.push(task);
                tasks.len() - 1
            });
            Ok(at as i64)
        })
        .collect()
}

/// Runs `work` on a thread of its own and completes the kernel with its result.
fn spawn(what: &str, done: AsyncDone, work: impl FnOnce() -> Result<Tensor> + Send + 'static) {
    let done = Arc::new(std::sync::Mutex::new(Some(done)));
    let finish = done.clone();
    let spawned = std::thread::Builder::new()
        .name("rill-collective".into())
        .spawn(move || {
            let result = work().map(|t| vec![t]);
            if let Some(done) = finish.lock().unwrap_or_else(|p| p.into_inner()).take() {
                done(result);
            }
        });
    if let Err(e) = spawned {
        if let Some(done) = done.lock().unwrap_or_else(|p| p.into_inner()).take() {
            done(Err(Error::resource_exhausted(format!(
                "{what}: cannot start a thread: {e}"
            ))));
        }
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    r.cpu("CollectiveReduce", reduce::create);
    r.cpu("CollectiveGather", gather::create);
    r.cpu("CollectiveBcastSend", broadcast::create_send);
    r.cpu("CollectiveBcastRecv", broadcast::create_recv);
}
