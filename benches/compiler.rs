//! What the compiler buys: a chain of 8 elementwise ops on 1M f32
//! (`rill::bench_graphs::elementwise_chain`), fused into one `_FusedElementwise` pass over
//! memory (the default session), against the same graph run as written (one kernel and one
//! full tensor per op).
//!
//! Run: `cargo bench --bench compiler`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill::bench_graphs::{elementwise_chain, CHAIN_LEN};
use rill::prelude::*;

fn chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise_chain_8ops_1M_f32");
    group.throughput(Throughput::Elements(CHAIN_LEN as u64));
    for (name, options) in [
        ("fused", SessionOptions::default()),
        ("unfused", SessionOptions::unoptimized()),
    ] {
        let (graph, [x, y]) = elementwise_chain().unwrap();
        let s = Session::new(graph, options).unwrap();
        let call = s.prepare(&["x:0", "y:0"], &["out:0"], &[]).unwrap();
        group.bench_function(name, |bench| {
            bench.iter(|| call.run(vec![x.clone(), y.clone()]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, chain);
criterion_main!(benches);
