//! Steps split across the devices of one process: [`PartitionedPlan`] places a step's
//! graph on a [`DeviceSet`], partitions it (a `_Send`/`_Recv` pair on every edge between
//! devices), compiles one [`Plan`] per partition and runs them all at once, each on its
//! device's own thread pool, meeting in one [`LocalRendezvous`] per step.
//!
//! Feeds and fetches on the client device are fed and fetched by name in its partition;
//! those on another device travel through the rendezvous (the partitioner's
//! client-terminated `_Recv`/`_Send`). With `RILL_DUMP_GRAPHS=DIR`, compiling writes each
//! partition as `DIR/partition_<device>.pbtxt`.
//!
//! Invariants: every partition of a step runs under one [`StepShared`], so the step's
//! first error (from any device) is what the caller gets, and it aborts the rendezvous so
//! no partition is left waiting; a step returns only once every partition has stopped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rayon::ThreadPool;
use rill_graph::{DType, Error, Graph, NodeId, Result, Shape, Tensor};
use rill_kernels::rendezvous::{LocalRendezvous, Rendezvous, RendezvousKey};
use rill_kernels::{KernelRegistry, ResourceMgr};

use crate::device::{Device, DeviceSet};
use crate::executor::{NodeTiming, Step, StepShared};
use crate::partition::{partition, PartitionOptions, Partitions};
use crate::placer::{place, PlacementLog, PlacerOptions};
use crate::plan::Plan;

/// The devices of a session with a thread pool for each.
pub struct Devices {
    pub set: DeviceSet,
    pools: Vec<Arc<ThreadPool>>,
}

impl Devices {
    /// Thread pools for every device of `set` (`device.threads` threads each).
    pub fn new(set: DeviceSet) -> Result<Devices> {
        let pools = set
            .devices()
            .iter()
            .enumerate()
            .map(|(k, d)| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(d.threads)
                    .thread_name(move |i| format!("rill-dev{k}-{i}"))
                    .build()
                    .map(Arc::new)
                    .map_err(|e| {
                        Error::internal(format!("cannot start threads for {}: {e}", d.spec))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Devices { set, pools })
    }

    fn pool_of(&self, device: &Device) -> Arc<ThreadPool> {
        let k = self.set.index_of(&device.spec).unwrap_or(0);
        self.pools[k].clone()
    }
}

/// One partition of a compiled step.
pub struct DevicePlan {
    pub device: Device,
    pub plan: Arc<Plan>,
    pool: Arc<ThreadPool>,
    /// For each feed of `plan` (in its order), the index of the step's feed.
    feed_from: Vec<usize>,
}

/// Where a step's fetch comes from.
enum FetchSource {
    /// Fetch `index` of partition `part`.
    Partition { part: usize, index: usize },
    /// Sent to the client through the rendezvous.
    Rendezvous(RendezvousKey),
}

/// A step compiled for several devices.
pub struct PartitionedPlan {
    pub parts: Vec<DevicePlan>,
    /// The partitioned graphs, cut edges and client transfers (for inspection).
    pub partitions: Partitions,
    pub placement: PlacementLog,
    /// What each feed must look like: (tensor name, dtype, inferred shape).
    pub feed_specs: Vec<(String, DType, Shape)>,
    /// Feeds sent to another device through the rendezvous: (feed index, key).
    rendezvous_feeds: Vec<(usize, RendezvousKey)>,
    fetch_from: Vec<FetchSource>,
}

/// What to compile: the step's graph and signature, and how to place it.
pub struct StepSpec<'a> {
    pub graph: &'a Graph,
    pub feeds: &'a [String],
    pub fetches: &'a [String],
    pub targets: &'a [String],
    pub placer: &'a PlacerOptions,
    /// Whether partitions use memory plans.
    pub plan_memory: bool,
}

impl PartitionedPlan {
    /// Places, partitions and compiles `spec` on `devices`.
    pub fn compile(
        spec: &StepSpec,
        devices: &Devices,
        kernels: &KernelRegistry,
        resources: &ResourceMgr,
    ) -> Result<PartitionedPlan> {
        let mut graph = spec.graph.clone();
        let placement = place(&mut graph, &devices.set, kernels, spec.placer)?;
        let feed_specs = crate::session::feed_specs(&graph, spec.feeds)?;
        let partitions = partition(
            &graph,
            &devices.set,
            &PartitionOptions {
                feeds: spec.feeds.to_vec(),
                fetches: spec.fetches.to_vec(),
                client_device: None,
            },
        )?;
        if let Some(dir) = std::env::var_os("RILL_DUMP_GRAPHS").map(PathBuf::from) {
            dump_partitions(&partitions, &dir)?;
        }
        let via_rendezvous_feed: HashMap<&str, &RendezvousKey> = partitions
            .feeds
            .iter()
            .map(|c| (c.tensor.as_str(), &c.key))
            .collect();
        let via_rendezvous_fetch: HashMap<&str, &RendezvousKey> = partitions
            .fetches
            .iter()
            .map(|c| (c.tensor.as_str(), &c.key))
            .collect();
        let rendezvous_feeds = spec
            .feeds
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                via_rendezvous_feed
                    .get(f.as_str())
                    .map(|k| (i, (*k).clone()))
            })
            .collect();
        let mut parts = Vec::with_capacity(partitions.partitions.len());
        let mut fetch_from: Vec<Option<FetchSource>> = spec
            .fetches
            .iter()
            .map(|f| {
                via_rendezvous_fetch
                    .get(f.as_str())
                    .map(|k| FetchSource::Rendezvous((*k).clone()))
            })
            .collect();
        for (p, part) in partitions.partitions.iter().enumerate() {
            let g = Arc::new(part.graph.clone());
            let mut feeds = vec![];
            let mut feed_from = vec![];
            for (i, f) in spec.feeds.iter().enumerate() {
                if !via_rendezvous_feed.contains_key(f.as_str()) {
                    if let Ok(o) = g.output_named(f) {
                        feeds.push(o);
                        feed_from.push(i);
                    }
                }
            }
            let mut fetches = vec![];
            for (i, f) in spec.fetches.iter().enumerate() {
                if fetch_from[i].is_none() {
                    if let Ok(o) = g.output_named(f) {
                        fetch_from[i] = Some(FetchSource::Partition {
                            part: p,
                            index: fetches.len(),
                        });
                        fetches.push(o);
                    }
                }
            }
            let mut targets: Vec<NodeId> = g
                .nodes()
                .filter(|(_, n)| matches!(n.op_name(), "_Send" | "_HostSend"))
                .map(|(id, _)| id)
                .collect();
            for t in spec.targets {
                if let Ok(id) = g.node_named(t.strip_prefix('^').unwrap_or(t)) {
                    targets.push(id);
                }
            }
            let mut plan = Plan::compile(&g, kernels, resources, &feeds, &fetches, &targets)
                .map_err(|e| Error::new(e.code, format!("on {}: {}", part.device, e.message)))?;
            if plan.control_flow.is_some() {
                return Err(Error::unimplemented(format!(
                    "on {}: TF1 control flow (Switch, Merge, Enter, ...) across several devices; \
                     a session runs such graphs on one device",
                    part.device
                )));
            }
            plan.plan_memory = spec.plan_memory;
            let device = devices
                .set
                .get(&part.device)
                .cloned()
                .ok_or_else(|| Error::internal(format!("no device {}", part.device)))?;
            parts.push(DevicePlan {
                pool: devices.pool_of(&device),
                device,
                plan: Arc::new(plan),
                feed_from,
            });
        }
        let fetch_from = fetch_from
            .into_iter()
            .zip(spec.fetches)
            .map(|(s, name)| {
                s.ok_or_else(|| {
                    Error::not_found(format!("fetch '{name}' is in no partition of the step"))
                })
            })
            .collect::<Result<_>>()?;
        Ok(PartitionedPlan {
            parts,
            partitions,
            placement,
            feed_specs,
            rendezvous_feeds,
            fetch_from,
        })
    }

    /// Runs one step: every partition at once, on its device's threads.
    pub fn run(
        &self,
        resources: &Arc<ResourceMgr>,
        feeds: Vec<Tensor>,
        profile: bool,
    ) -> Result<(Vec<Tensor>, Vec<NodeTiming>)> {
        let rendezvous: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
        let shared = StepShared::new(Some(rendezvous.clone()));
        for (i, key) in &self.rendezvous_feeds {
            rendezvous.send(key, feeds[*i].clone(), false)?;
        }
        let mut steps = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let mine = part.feed_from.iter().map(|&i| feeds[i].clone()).collect();
            let pool = Some(part.pool.clone());
            match Step::new(&part.plan, resources, mine, profile, shared.clone(), pool) {
                Ok(step) => steps.push(step),
                Err(e) => {
                    shared.fail(e);
                    break;
                }
            }
        }
        if steps.len() == self.parts.len() {
            for step in &steps {
                step.start(false);
            }
        }
        shared.wait();
        // Every step is finished (returning its arena) before the first error is returned.
        let finished: Vec<_> = steps.into_iter().map(Step::finish).collect();
        let mut results = Vec::with_capacity(finished.len());
        let mut timings = vec![];
        for outcome in finished {
            let (fetches, t) = outcome?;
            results.push(fetches);
            timings.extend(t);
        }
        let fetches = self
            .fetch_from
            .iter()
            .map(|source| match source {
                FetchSource::Partition { part, index } => Ok(results[*part][*index].clone()),
                FetchSource::Rendezvous(key) => rendezvous
                    .recv(key, Some(Duration::ZERO))
                    .map(|(t, _)| t)
                    .map_err(|_| Error::internal(format!("'{key}' was not sent to the client"))),
            })
            .collect::<Result<_>>()?;
        Ok((fetches, timings))
    }
}

/// Writes each partition as `dir/partition_<device>.pbtxt`.
fn dump_partitions(partitions: &Partitions, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::invalid_argument(format!("cannot create {}: {e}", dir.display())))?;
    for p in &partitions.partitions {
        let device: String = p
            .device
            .to_string()
            .trim_start_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        rill_graph::pass::dump(&p.graph, dir, &format!("partition_{device}"))?;
    }
    Ok(())
}
