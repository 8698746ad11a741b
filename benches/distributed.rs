//! The distributed runtime on loopback: `RecvTensor` throughput (a tensor one task's
//! `_Send` left in its rendezvous, pulled by another task in streamed chunks: 1 MB, 100 MB
//! and 1 GB), the round trip of a tiny remote step (one Add on a worker, fed and fetched
//! by the client), and TensorFlow's own measurement: a ps variable summed on the worker.
//!
//! Run: `cargo bench --bench distributed`. The servers are real gRPC servers on
//! 127.0.0.1, in threads of this process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::distributed::proto::GetStatusRequest;
use rill::distributed::rendezvous::fetch;
use rill::distributed::transport::Peers;
use rill::distributed::{ClusterOptions, ClusterSession, InProcessCluster, Security};
use rill::kernels::rendezvous::{FrameAndIter, Rendezvous, RendezvousKey};
use rill::prelude::*;

fn recv_tensor(c: &mut Criterion) {
    let cluster = InProcessCluster::start(0, 2, Security::default()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peers = Peers::new(
        cluster.cluster.clone(),
        Security::default(),
        runtime.handle().clone(),
    )
    .unwrap();
    let src = &cluster.servers[1];
    let next_step = AtomicU64::new(1);
    let mut group = c.benchmark_group("recv_tensor");
    for (label, bytes) in [
        ("1MB", 1usize << 20),
        ("100MB", 100 << 20),
        ("1GB", 1 << 30),
    ] {
        let tensor = Tensor::zeros(DType::F32, &[bytes / 4]).unwrap();
        let key = RendezvousKey::create(
            &src.worker.device.name(),
            src.worker.incarnation,
            "/job:worker/replica:0/task:0/device:CPU:0",
            "bench",
            FrameAndIter::default(),
        );
        group.throughput(Throughput::Bytes(bytes as u64));
        if bytes >= 100 << 20 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(20));
        }
        group.bench_function(label, |b| {
            b.iter(|| {
                let step = next_step.fetch_add(1, Ordering::Relaxed);
                let entry = src.worker.steps.get_or_create(step);
                entry.local.send(&key, tensor.clone(), false).unwrap();
                let (t, _) = runtime
                    .block_on(fetch(&peers, step, &key, &src.task))
                    .unwrap();
                src.worker.steps.remove(step);
                assert_eq!(t.num_elements(), bytes / 4);
            })
        });
    }
    group.finish();
}

fn tiny_step(c: &mut Criterion) {
    let cluster = InProcessCluster::start(0, 1, Security::default()).unwrap();
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, Shape::known(&[4])).unwrap();
    let y = b.binary("AddV2", x, x).unwrap();
    let g = b.into_graph();
    let y = g.tensor_name(y);
    let options = ClusterOptions {
        security: Security::default(),
        ..ClusterOptions::default()
    };
    let session = ClusterSession::new(g, cluster.cluster.clone(), options).unwrap();
    let x = Tensor::vector(vec![1f32, 2., 3., 4.]);
    c.bench_function("remote_step_one_add", |bench| {
        bench.iter(|| session.run(&[("x:0", x.clone())], &[&y], &[]).unwrap())
    });
    // The floor: one empty RPC (a heartbeat) on the same kind of channel.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peers = Peers::new(
        cluster.cluster.clone(),
        Security::default(),
        runtime.handle().clone(),
    )
    .unwrap();
    let mut client = peers.worker(&cluster.servers[0].task).unwrap();
    c.bench_function("heartbeat_rpc", |bench| {
        bench.iter(|| {
            runtime
                .block_on(client.heartbeat(GetStatusRequest {}))
                .unwrap()
        })
    });
}

/// TensorFlow's own measurement (`tf_reference.py --grpc`): a variable on the ps task
/// summed by an op on the worker, one `session.run` per sample, so the whole tensor
/// crosses ps -> worker every step.
fn ps_variable_summed_on_worker(c: &mut Criterion) {
    let cluster = InProcessCluster::start(1, 1, Security::default()).unwrap();
    let mut group = c.benchmark_group("step_ps_variable_sum_on_worker");
    for (label, bytes) in [("1MB", 1usize << 20), ("100MB", 100 << 20)] {
        let b = Builder::new();
        let v = b
            .variable_with_init("v", Tensor::zeros(DType::F32, &[bytes / 4]).unwrap())
            .unwrap();
        let axis = b.constant(Tensor::vector(vec![0i32])).unwrap();
        let sum = {
            let _worker = b.device("/job:worker/task:0").unwrap();
            b.op("Sum").name("sum").input(v).input(axis).build_output()
        }
        .unwrap();
        b.initializer("init").unwrap();
        let g = b.into_graph();
        let sum = g.tensor_name(sum);
        let options = ClusterOptions {
            security: Security::default(),
            shutdown_ps_on_close: false,
            ..ClusterOptions::default()
        };
        let session = ClusterSession::new(g, cluster.cluster.clone(), options).unwrap();
        session.run(&[], &[], &["init"]).unwrap();
        group.throughput(Throughput::Bytes(bytes as u64));
        if bytes >= 100 << 20 {
            group.sample_size(10);
        }
        group.bench_function(label, |bench| {
            bench.iter(|| session.run(&[], &[&sum], &[]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    recv_tensor,
    tiny_step,
    ps_variable_summed_on_worker
);
criterion_main!(benches);
