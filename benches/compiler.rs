//! What the compiler buys: a chain of 8 elementwise ops on 1M f32, fused into one
//! `_FusedElementwise` pass over memory (the default session) against the same graph run
//! as written (one kernel and one full tensor per op).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::prelude::*;

const N: usize = 1 << 20;

fn chain_graph() -> Graph {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [N as i64]).unwrap();
    let y = b.placeholder("y", DType::F32, [N as i64]).unwrap();
    let half = b.constant(Tensor::scalar(0.5f32)).unwrap();
    let t = b.mul(x, half).unwrap();
    let t = b.add(t, y).unwrap();
    let t = b.relu(t).unwrap();
    let t = b.sub(t, x).unwrap();
    let t = b.square(t).unwrap();
    let t = b.mul(t, y).unwrap();
    let t = b.maximum(t, x).unwrap();
    let t = b.neg(t).unwrap();
    b.identity_named("out", t).unwrap();
    b.into_graph()
}

fn elementwise_chain(c: &mut Criterion) {
    let x = Tensor::new(
        &[N],
        (0..N).map(|i| (i % 101) as f32 / 50.0 - 1.0).collect(),
    )
    .unwrap();
    let y = Tensor::new(&[N], (0..N).map(|i| (i % 37) as f32 / 18.0 - 1.0).collect()).unwrap();
    let mut group = c.benchmark_group("elementwise_chain_8ops_1M_f32");
    group.throughput(Throughput::Elements(N as u64));
    for (name, options) in [
        ("fused", SessionOptions::default()),
        ("unfused", SessionOptions::unoptimized()),
    ] {
        let s = Session::new(chain_graph(), options).unwrap();
        let call = s.prepare(&["x:0", "y:0"], &["out:0"], &[]).unwrap();
        group.bench_function(name, |bench| {
            bench.iter(|| call.run(vec![x.clone(), y.clone()]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, elementwise_chain);
criterion_main!(benches);
