//! Criterion benchmarks of the execution layer: f32 MatMul (GFLOP/s), cnn_inference latency,
//! executor overhead on a chain of 1000 Tanh ops on 16 floats, the `Session::run` floor, and
//! `_Send`/`_Recv` between two CPU devices (1 MB and 100 MB there and back, against one
//! device).
//!
//! Run: `cargo bench --bench runtime`. TensorFlow's numbers on the same machine come from
//! `benches/compare_tf.py` (never run in CI).

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rill::graph::Graph;
use rill::prelude::*;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_f32");
    for n in [256usize, 1024] {
        let b = Builder::new();
        let x = b
            .placeholder("a", DType::F32, [n as i64, n as i64])
            .unwrap();
        let y = b
            .placeholder("b", DType::F32, [n as i64, n as i64])
            .unwrap();
        b.op("MatMul").name("c").input(x).input(y).build().unwrap();
        let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
        let call = s.prepare(&["a:0", "b:0"], &["c:0"], &[]).unwrap();
        let a = Tensor::new(&[n, n], random(n * n, 1)).unwrap();
        let bt = Tensor::new(&[n, n], random(n * n, 2)).unwrap();
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| call.run(vec![a.clone(), bt.clone()]).unwrap())
        });
    }
    group.finish();
}

fn cnn_inference(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/cnn_inference");
    let g = Graph::load(dir.join("graph.pb"), rill::ops::registry()).unwrap();
    let x = rill::npy::read_npy(&dir.join("x.npy")).unwrap();
    // Optimised (the default) and as written, side by side.
    for (name, options) in [
        ("cnn_inference", SessionOptions::default()),
        ("cnn_inference_unoptimized", SessionOptions::unoptimized()),
    ] {
        let s = Session::new(g.clone(), options).unwrap();
        let call = s.prepare(&["x:0"], &["probs:0"], &[]).unwrap();
        c.bench_function(name, |bench| {
            bench.iter(|| call.run(vec![x.clone()]).unwrap())
        });
    }
}

fn tanh_chain(c: &mut Criterion) {
    let b = Builder::new();
    let mut t = b.placeholder("x", DType::F32, [16i64]).unwrap();
    for _ in 0..1000 {
        t = b.op("Tanh").input(t).build_output().unwrap();
    }
    let out = b.graph().tensor_name(t);
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    let call = s.prepare(&["x:0"], &[&out], &[]).unwrap();
    let x = Tensor::new(&[16], random(16, 3)).unwrap();
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("tanh_chain_1000x16", |bench| {
        bench.iter(|| call.run(vec![x.clone()]).unwrap())
    });
    group.finish();
}

fn run_floor(c: &mut Criterion) {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [1i64]).unwrap();
    b.op("Identity").name("y").input(x).build().unwrap();
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    let x = Tensor::vector(vec![1.0f32]);
    c.bench_function("session_run_floor", |bench| {
        bench.iter(|| s.run(&[("x:0", x.clone())], &["y:0"], &[]).unwrap())
    });
    let call = s.prepare(&["x:0"], &["y:0"], &[]).unwrap();
    c.bench_function("callable_run_floor", |bench| {
        bench.iter(|| call.run(vec![x.clone()]).unwrap())
    });
}

/// A tensor fed on CPU:0, passed through an `Identity` on CPU:1 and fetched back: it
/// crosses devices twice per step through the rendezvous (both counted in the throughput)
/// and is never copied (the heap buffer moves by reference). The same graph on one device
/// is the baseline. 1 MB and 100 MB.
fn send_recv(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_recv_cpu0_cpu1");
    group.sample_size(20);
    for bytes in [1usize << 20, 100 << 20] {
        let n = bytes / 4;
        group.throughput(Throughput::Bytes(2 * bytes as u64));
        let x = Tensor::new(&[n], vec![1.5f32; n]).unwrap();
        for devices in [1usize, 2] {
            let b = Builder::new();
            let input = b.placeholder("x", DType::F32, [n as i64]).unwrap();
            {
                let _on = b.device("/device:CPU:1").unwrap();
                b.op("Identity").name("y").input(input).build().unwrap();
            }
            // A one-device session does not place: the CPU:1 request is ignored there.
            let g = b.into_graph();
            let options = SessionOptions::default().with_cpu_devices(devices, Strategy::Client);
            let s = Session::new(g, options).unwrap();
            let call = s.prepare(&["x:0"], &["y:0"], &[]).unwrap();
            let out = call.run(vec![x.clone()]).unwrap();
            assert!(out[0].shares_buffer_with(&x), "the tensor was copied");
            let label = if devices == 1 {
                "one_device"
            } else {
                "two_devices"
            };
            group.bench_function(
                BenchmarkId::new(label, format!("{}MB", bytes >> 20)),
                |bench| bench.iter(|| call.run(vec![x.clone()]).unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    matmul,
    cnn_inference,
    tanh_chain,
    run_floor,
    send_recv
);
criterion_main!(benches);
