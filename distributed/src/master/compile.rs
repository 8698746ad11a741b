//! Compiling a step for the cluster: the optimised graph is placed on the tasks (variables
//! round-robin over the ps tasks unless they ask for a device), partitioned by device with
//! `_Send`/`_Recv`, and each partition is registered with its task.
//!
//! Invariants: a step with TF1 control flow runs whole on the client task (frames do not
//! cross tasks); every fetch comes from exactly one partition or the client's rendezvous.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use rill_graph::{AttrValue, DType, DeviceSpec, Error, Graph, NodeId, Output, Result, Shape};
use rill_runtime::partition::{partition, PartitionOptions};
use rill_runtime::placer::{pinning_inputs, place, PlacerOptions, Strategy, UnionFind};

use super::{ClusterSession, Signature};
use crate::cluster::ClusterSpec;
use crate::proto::RegisterGraphRequest;
use crate::rendezvous::task_of_device;
use crate::status::from_status;
use crate::transport::with_deadline;

/// One task's share of a compiled step.
pub(super) struct StepPart {
    pub(super) task: usize,
    pub(super) graph_handle: String,
    /// Step feed indices fed by name, in the registered order.
    pub(super) feed_from: Vec<usize>,
}

pub(super) enum FetchSource {
    Part { part: usize, index: usize },
    Recv(usize),
}

/// A step signature compiled and registered on the cluster.
pub(super) struct DistributedStep {
    pub(super) parts: Vec<StepPart>,
    /// The part run on the client task (added with no graph when needed).
    pub(super) client_part: Option<usize>,
    /// Feeds for other tasks: (feed index, rendezvous key).
    pub(super) sends: Vec<(usize, String)>,
    pub(super) recv_keys: Vec<String>,
    pub(super) fetch_from: Vec<FetchSource>,
    pub(super) feed_specs: Vec<(String, DType, Shape)>,
}

impl ClusterSession {
    fn resolve(graph: &Graph, key: &Signature) -> Result<(Vec<Output>, Vec<Output>, Vec<NodeId>)> {
        let outputs = |names: &[String]| {
            names
                .iter()
                .map(|n| graph.output_named(n))
                .collect::<Result<Vec<_>>>()
        };
        let targets = key
            .2
            .iter()
            .map(|t| graph.node_named(t.strip_prefix('^').unwrap_or(t)))
            .collect::<Result<Vec<_>>>()?;
        Ok((outputs(&key.0)?, outputs(&key.1)?, targets))
    }

    /// Optimises, places, partitions and registers the step `key`.
    pub(super) fn compile(&self, key: &Signature) -> Result<DistributedStep> {
        let (feeds, fetches, targets) = Self::resolve(&self.graph, key)?;
        let mut graph = if self.options.optimize {
            rill_runtime::optimize::optimize(&self.graph, &feeds, &fetches, &targets)?.0
        } else {
            rill_runtime::optimize::prune(&self.graph, &feeds, &fetches, &targets)?
        };
        Self::resolve(&graph, key)?;
        place(
            &mut graph,
            &self.devices,
            &self.kernels,
            &PlacerOptions {
                soft_placement: true,
                strategy: Strategy::Client,
            },
        )?;
        let feed_specs = rill_runtime::feed_specs(&graph, &key.0)?;
        let partitions = partition(
            &graph,
            &self.devices,
            &PartitionOptions {
                feeds: key.0.clone(),
                fetches: key.1.clone(),
                client_device: None,
            },
        )?;
        let task_index = |device: &DeviceSpec| -> Result<usize> {
            let t = task_of_device(&device.to_string())?;
            self.tasks
                .iter()
                .position(|x| x.name == t)
                .ok_or_else(|| Error::internal(format!("no task for device {device}")))
        };
        let client_task = task_index(&self.devices.client().spec)?;
        let via_rendezvous_feed: HashMap<&str, String> = partitions
            .feeds
            .iter()
            .map(|c| (c.tensor.as_str(), c.key.as_str().to_string()))
            .collect();
        let recv_keys: Vec<String> = partitions
            .fetches
            .iter()
            .map(|c| c.key.as_str().to_string())
            .collect();
        let mut fetch_from: Vec<Option<FetchSource>> = key
            .1
            .iter()
            .map(|f| {
                partitions
                    .fetches
                    .iter()
                    .position(|c| &c.tensor == f)
                    .map(FetchSource::Recv)
            })
            .collect();
        let sends = key
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, f)| via_rendezvous_feed.get(f.as_str()).map(|k| (i, k.clone())))
            .collect();
        let mut requests = vec![];
        let mut parts = vec![];
        for (p, part) in partitions.partitions.iter().enumerate() {
            let g = &part.graph;
            let task = task_index(&part.device)?;
            let mut feed_names = vec![];
            let mut feed_from = vec![];
            for (i, f) in key.0.iter().enumerate() {
                if !via_rendezvous_feed.contains_key(f.as_str()) && g.output_named(f).is_ok() {
                    feed_names.push(f.clone());
                    feed_from.push(i);
                }
            }
            let mut fetch_names = vec![];
            for (i, f) in key.1.iter().enumerate() {
                if fetch_from[i].is_none() && g.output_named(f).is_ok() {
                    fetch_from[i] = Some(FetchSource::Part {
                        part: p,
                        index: fetch_names.len(),
                    });
                    fetch_names.push(f.clone());
                }
            }
            let targets = key
                .2
                .iter()
                .filter(|t| g.node_named(t.strip_prefix('^').unwrap_or(t)).is_ok())
                .cloned()
                .collect();
            requests.push((
                task,
                RegisterGraphRequest {
                    session_handle: self.handle.clone(),
                    graph_def: g.to_binary().into(),
                    feeds: feed_names,
                    fetches: fetch_names,
                    targets,
                    plan_memory: self.options.optimize,
                    expected_incarnation: self.tasks[task].incarnation,
                },
            ));
            parts.push(StepPart {
                task,
                graph_handle: String::new(),
                feed_from,
            });
        }
        let fetch_from = fetch_from
            .into_iter()
            .zip(&key.1)
            .map(|(s, name)| {
                s.ok_or_else(|| Error::not_found(format!("fetch '{name}' is in no partition")))
            })
            .collect::<Result<Vec<_>>>()?;
        let handles = self.rt.block_on(async {
            let calls = requests.into_iter().map(|(task, request)| {
                let mut c = self.tasks[task].client.clone();
                let name = self.tasks[task].name.to_string();
                async move {
                    c.register_graph(with_deadline(request, Duration::from_secs(120)))
                        .await
                        .map(|r| r.into_inner().graph_handle)
                        .map_err(|s| from_status(&s, &name))
                }
            });
            join_all(calls).await
        });
        for (part, h) in parts.iter_mut().zip(handles) {
            part.graph_handle = h?;
        }
        let mut client_part = parts.iter().position(|p| p.task == client_task);
        let needs_client = !via_rendezvous_feed.is_empty() || !recv_keys.is_empty();
        if client_part.is_none() && needs_client {
            client_part = Some(parts.len());
            parts.push(StepPart {
                task: client_task,
                graph_handle: String::new(),
                feed_from: vec![],
            });
        }
        Ok(DistributedStep {
            parts,
            client_part,
            sends,
            recv_keys,
            fetch_from,
            feed_specs,
        })
    }
}

/// Sets a `/job:ps/task:k` request, round-robin over the ps tasks, on every variable
/// without a device request. Variables that must share a device (updated by one op, like a
/// variable and its optimizer slots in `ApplyAdam`, or named together by `_class`
/// `loc:@`) get one task, so the placer's colocation never meets two requests.
pub fn replica_device_setter(graph: &mut Graph, cluster: &ClusterSpec) {
    let ps = cluster.num_tasks("ps");
    if ps == 0 {
        return;
    }
    let is_variable = |op: &str| matches!(op, "VariableV2" | "Variable" | "VarHandleOp");
    let variables: Vec<NodeId> = graph
        .nodes()
        .filter(|(_, n)| is_variable(n.op_name()))
        .map(|(id, _)| id)
        .collect();
    let index: HashMap<NodeId, usize> =
        variables.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    let mut groups = UnionFind::new(variables.len());
    let mut join = |together: &[usize]| {
        for w in together.windows(2) {
            groups.union(w[0], w[1]);
        }
    };
    for (id, node) in graph.nodes() {
        // The variables one op updates (through ref or resource inputs) share a device.
        let mut together: Vec<usize> = pinning_inputs(graph, id)
            .into_iter()
            .zip(&node.inputs)
            .filter(|&(pinned, _)| pinned)
            .filter_map(|(_, o)| index.get(&o.node).copied())
            .collect();
        // So does a variable (a slot) naming another in `_class`.
        if let (Some(&v), Some(AttrValue::StringList(classes))) =
            (index.get(&id), node.attr("_class"))
        {
            together.push(v);
            for class in classes {
                let name = std::str::from_utf8(class)
                    .ok()
                    .and_then(|c| c.strip_prefix("loc:@"));
                if let Some(&w) = name.and_then(|n| graph.find(n)).and_then(|w| index.get(&w)) {
                    together.push(w);
                }
            }
        }
        join(&together);
    }
    let mut task_of_group: HashMap<usize, u32> = HashMap::new();
    for (i, &id) in variables.iter().enumerate() {
        if !graph.node(id).requested_device.is_empty() {
            continue;
        }
        let next = task_of_group.len();
        let task = *task_of_group
            .entry(groups.find(i))
            .or_insert((next % ps) as u32);
        let spec = &mut graph.node_mut(id).requested_device;
        spec.job = Some("ps".into());
        spec.replica = Some(0);
        spec.task = Some(task);
    }
}
