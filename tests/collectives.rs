//! Collective ops end to end: through a local session's devices (group sizes 2-8, every
//! algorithm, 1 element to 64 MB, uneven splits), through an in-process cluster's gRPC
//! transport, and on real `rill server` processes, where killing one rank mid-collective
//! makes the others fail in bounded time naming it.

#[path = "support/processes.rs"]
mod processes;
use processes::ProcessCluster;

use std::time::{Duration, Instant};

use anyhow::Result;
use rill::distributed::{ClusterOptions, ClusterSession, InProcessCluster, Security};
use rill::ops::collective::CollectiveGroup;
use rill::ops::registry;
use rill::prelude::*;

fn local_device(i: usize) -> String {
    format!("/job:localhost/replica:0/task:0/device:CPU:{i}")
}

fn values(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 13 + rank * 7) % 29) as f32 * 0.25 - 3.0)
        .collect()
}

/// Rank `r` feeds `values(r, len)`; returns the placeholders' names and each rank's result.
fn reduce_graph(
    b: &Builder,
    group: &CollectiveGroup,
    len: usize,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut inputs = vec![];
    for (r, d) in group.devices.iter().enumerate() {
        let _device = b.device(d)?;
        inputs.push(b.placeholder(&format!("x{r}"), DType::F32, [len as i64])?);
    }
    let outs = b.collective_reduce(group, &inputs, "Add", "Div")?;
    let g = b.graph();
    Ok((
        inputs.iter().map(|&o| g.tensor_name(o)).collect(),
        outs.iter().map(|&o| g.tensor_name(o)).collect(),
    ))
}

fn check_mean(outs: &[Tensor], n: usize, len: usize, what: &str) {
    let first = outs[0].as_slice::<f32>().unwrap();
    assert_eq!(first.len(), len, "{what}");
    for (i, got) in first.iter().enumerate() {
        let want = (0..n).map(|r| values(r, len)[i]).sum::<f32>() / n as f32;
        assert!((got - want).abs() < 1e-5, "{what} [{i}]: {got} vs {want}");
    }
    for t in outs {
        assert_eq!(
            t.as_slice::<f32>().unwrap(),
            first,
            "{what}: ranks disagree"
        );
    }
}

#[test]
fn every_algorithm_on_local_devices_matches_the_sequential_mean() -> Result<()> {
    for n in [2, 3, 5, 8] {
        for hint in ["ring", "tree", "hierarchical", "auto"] {
            let b = Builder::new();
            let mut group = CollectiveGroup::new((0..n).map(local_device).collect(), 1);
            group.algorithm = hint.into();
            group.hosts = (0..n as i64).map(|r| r / 2).collect();
            let mut cases = vec![];
            for len in [1, 5, 4099] {
                cases.push((len, reduce_graph(&b, &group, len)?));
            }
            let session = Session::new(
                b.into_graph(),
                SessionOptions::default().with_cpu_devices(n, Strategy::Client),
            )?;
            for (len, (feeds, fetches)) in cases {
                let fed: Vec<(&str, Tensor)> = (feeds.iter().enumerate())
                    .map(|(r, f)| (f.as_str(), Tensor::new(&[len], values(r, len)).unwrap()))
                    .collect();
                let names: Vec<&str> = fetches.iter().map(String::as_str).collect();
                let outs = session.run(&fed, &names, &[])?;
                check_mean(&outs, n, len, &format!("{hint} n={n} len={len}"));
            }
        }
    }
    Ok(())
}

#[test]
fn groups_without_rill_attrs_resolve_from_placement_on_local_devices() -> Result<()> {
    let n = 3;
    let b = Builder::new();
    let group = CollectiveGroup::new((0..n).map(local_device).collect(), 1);
    let (feeds, fetches) = reduce_graph(&b, &group, 10)?;
    let graph = as_tensorflow_writes_it(b.into_graph())?;
    let session = Session::new(
        graph,
        SessionOptions::default().with_cpu_devices(n, Strategy::Client),
    )?;
    let fed: Vec<(&str, Tensor)> = (feeds.iter().enumerate())
        .map(|(r, f)| (f.as_str(), Tensor::new(&[10], values(r, 10)).unwrap()))
        .collect();
    let names: Vec<&str> = fetches.iter().map(String::as_str).collect();
    check_mean(&session.run(&fed, &names, &[])?, n, 10, "resolved group");
    Ok(())
}

/// `tests/fixtures/collectives` (written by `tools/gen_collective_fixture.py`): reduces,
/// a gather and a broadcast over three CPU devices as TensorFlow builds them, with the
/// outputs TensorFlow computed.
#[test]
fn a_graph_tensorflow_wrote_runs_with_the_results_tensorflow_gave() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/collectives");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json"))?)?;
    let table = |field: &str| -> Vec<(String, Tensor)> {
        let map = manifest[field].as_object().expect("a table of tensors");
        map.iter()
            .map(|(name, file)| {
                let file = dir.join(file.as_str().expect("a file name"));
                (name.clone(), rill::npy::read_npy(&file).unwrap())
            })
            .collect()
    };
    let graph = Graph::load(dir.join("graph.pb"), registry())?;
    let devices = manifest["cpu_devices"].as_u64().unwrap_or(1) as usize;
    let session = Session::new(
        graph,
        SessionOptions::default().with_cpu_devices(devices, Strategy::Client),
    )?;
    let feeds = table("feeds");
    let fed: Vec<(&str, Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let expected = table("fetches");
    let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let outs = session.run(&fed, &names, &[])?;
    for ((name, want), got) in expected.iter().zip(&outs) {
        assert_eq!(got.dims(), want.dims(), "{name}");
        match want.dtype() {
            DType::F32 => {
                for (a, b) in got.as_slice::<f32>()?.iter().zip(want.as_slice::<f32>()?) {
                    assert!((a - b).abs() <= 1e-6 + 1e-6 * b.abs(), "{name}: {a} vs {b}");
                }
            }
            _ => assert_eq!(got.to_i64_vec()?, want.to_i64_vec()?, "{name}"),
        }
    }
    Ok(())
}

#[test]
fn sixty_four_megabytes_over_eight_devices() -> Result<()> {
    let (n, len): (usize, usize) = (8, 16 << 20);
    for hint in ["ring", "hierarchical"] {
        let b = Builder::new();
        let mut group = CollectiveGroup::new((0..n).map(local_device).collect(), 3);
        group.algorithm = hint.into();
        group.hosts = vec![0, 0, 0, 0, 1, 1, 1, 1];
        let mut inputs = vec![];
        for (r, d) in group.devices.iter().enumerate() {
            let _device = b.device(d)?;
            let dims = b.constant(Tensor::vector(vec![len as i32]))?;
            inputs.push(b.fill(dims, b.scalar_f32(r as f32 + 1.0)?)?);
        }
        let outs = b.collective_reduce(&group, &inputs, "Add", "Id")?;
        // Checked on each device: every element equals 1 + 2 + ... + n.
        let mut checks = vec![];
        for (r, d) in group.devices.iter().enumerate() {
            let _device = b.device(d)?;
            let want = b.scalar_f32((n * (n + 1) / 2) as f32)?;
            let ok = b.cast(b.equal(outs[r], want)?, DType::F32)?;
            checks.push(b.sum(ok, &[0], false)?);
        }
        let names: Vec<String> = checks.iter().map(|&o| b.graph().tensor_name(o)).collect();
        let session = Session::new(
            b.into_graph(),
            SessionOptions::default().with_cpu_devices(n, Strategy::Client),
        )?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for t in session.run(&[], &names, &[])? {
            assert_eq!(t.scalar_value::<f32>()?, len as f32, "{hint}");
        }
    }
    Ok(())
}

fn worker(i: usize) -> String {
    format!("/job:worker/replica:0/task:{i}/device:CPU:0")
}

/// `graph` as TensorFlow would write it: without Rill's underscore group attrs (members,
/// hosts, broadcast source), through the GraphDef wire format.
fn as_tensorflow_writes_it(mut graph: Graph) -> Result<Graph> {
    for id in graph.node_ids() {
        let attrs = &mut graph.node_mut(id).attrs;
        for rill_only in ["_group_devices", "_rank_hosts", "_source_rank"] {
            attrs.remove(rill_only);
        }
    }
    Ok(Graph::from_binary(&graph.to_binary(), registry())?)
}

/// Reduce, gather and broadcast across the tasks of `cluster`, checked on the client; with
/// `resolve`, the groups come from placement instead of Rill's attrs.
fn across_tasks(
    cluster: &rill::distributed::ClusterSpec,
    options: ClusterOptions,
    resolve: bool,
) -> Result<()> {
    let n = cluster.num_tasks("worker");
    for hint in ["ring", "tree", "hierarchical"] {
        let b = Builder::new();
        let mut group = CollectiveGroup::new((0..n).map(worker).collect(), 7);
        group.algorithm = hint.into();
        group.hosts = (0..n as i64).map(|r| r / 2).collect();
        group.timeout_seconds = 30.0;
        let len = 3001;
        let (feeds, fetches) = reduce_graph(&b, &group, len)?;
        let mut gathered = vec![];
        for (r, d) in group.devices.iter().enumerate() {
            let _device = b.device(d)?;
            gathered.push(b.constant(Tensor::new(&[2], vec![r as i64, -(r as i64)])?)?);
        }
        let gathered = b.collective_gather(&group, &gathered)?;
        let source = {
            let _device = b.device(&group.devices[n - 1])?;
            b.constant(Tensor::new(&[2, 2], vec![1.0f64, 2.0, 3.0, 4.0])?)?
        };
        let broadcast = b.collective_broadcast(&group, n - 1, source)?;
        let g = b.graph();
        let more: Vec<String> = (gathered.iter().chain(&broadcast))
            .map(|&o| g.tensor_name(o))
            .collect();
        drop(g);
        let mut graph = b.into_graph();
        if resolve {
            graph = as_tensorflow_writes_it(graph)?;
        }
        let session = ClusterSession::new(graph, cluster.clone(), options.clone())?;
        let fed: Vec<(&str, Tensor)> = (feeds.iter().enumerate())
            .map(|(r, f)| (f.as_str(), Tensor::new(&[len], values(r, len)).unwrap()))
            .collect();
        let names: Vec<&str> = fetches.iter().chain(&more).map(String::as_str).collect();
        let outs = session.run(&fed, &names, &[])?;
        check_mean(&outs[..n], n, len, &format!("{hint} over {n} tasks"));
        let want: Vec<i64> = (0..n as i64).flat_map(|r| [r, -r]).collect();
        for t in &outs[n..2 * n] {
            assert_eq!(t.as_slice::<i64>()?, want.as_slice());
        }
        for t in &outs[2 * n..] {
            assert_eq!(t.as_slice::<f64>()?, &[1.0, 2.0, 3.0, 4.0]);
        }
    }
    Ok(())
}

#[test]
fn collectives_across_in_process_tasks() -> Result<()> {
    let cluster = InProcessCluster::start(0, 4, Security::default())?;
    across_tasks(&cluster.cluster, ClusterOptions::default(), false)?;
    across_tasks(&cluster.cluster, ClusterOptions::default(), true)
}

#[test]
fn collectives_across_server_processes_and_a_killed_rank() -> Result<()> {
    let mut cluster = ProcessCluster::start(0, 3, "collectives-token-7a1c")?;
    let options = cluster.client_options();
    across_tasks(&cluster.spec, options.clone(), false)?;

    // Rank 2's input waits on a queue nobody fills, so ranks 0 and 1 sit inside the ring
    // waiting for it when its process is killed.
    let b = Builder::new();
    let group = CollectiveGroup::new((0..3).map(worker).collect(), 11);
    let mut inputs = vec![];
    for (r, d) in group.devices.iter().enumerate() {
        let _device = b.device(d)?;
        inputs.push(if r == 2 {
            let queue = b.fifo_queue(&[DType::F32], &[], 1, "never_filled")?;
            b.queue_dequeue(queue, &[DType::F32], -1)?[0]
        } else {
            b.fill(
                b.constant(Tensor::vector(vec![1024i32]))?,
                b.scalar_f32(1.0)?,
            )?
        });
    }
    let outs = b.collective_reduce(&group, &inputs, "Add", "Id")?;
    let fetch = b.graph().tensor_name(outs[0]);
    let session = ClusterSession::new(b.into_graph(), cluster.spec.clone(), options)?;
    let started = Instant::now();
    let step = std::thread::spawn(move || session.run(&[], &[&fetch], &[]));
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill("worker:2");
    let err = step.join().expect("the step thread").unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "failed only after {elapsed:?}"
    );
    assert!(
        matches!(
            err.code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
        ),
        "{err}"
    );
    assert!(
        err.message.contains("rank 2") || err.message.contains("task:2"),
        "the error must name the missing rank: {err}"
    );
    Ok(())
}
