//! Criterion benchmark of one training step of an MLP 784-256-256-10, batch 64, softmax
//! cross-entropy, SGD (forward + gradients + update), built with the Rust API exactly as
//! `tf_reference.py` builds TensorFlow's (`rill::bench_graphs::mlp_train_step`); run
//! optimised (the default session) and as written.
//!
//! Run: `cargo bench --bench training`.

use criterion::{criterion_group, criterion_main, Criterion};
use rill::prelude::*;

fn mlp_train_step(c: &mut Criterion) {
    for (name, options) in [
        (
            "mlp_train_step_784_256_256_10_b64",
            SessionOptions::default(),
        ),
        (
            "mlp_train_step_784_256_256_10_b64_unoptimized",
            SessionOptions::unoptimized(),
        ),
    ] {
        let m = rill::bench_graphs::mlp_train_step().unwrap();
        let s = Session::new(m.graph, options).unwrap();
        s.run(&[], &[], &[&m.init]).unwrap();
        let step = s.prepare(&["x:0", "y:0"], &[&m.loss], &[&m.train]).unwrap();
        let [xv, yv] = m.feeds;
        c.bench_function(name, |bench| {
            bench.iter(|| step.run(vec![xv.clone(), yv.clone()]).unwrap())
        });
    }
}

criterion_group!(benches, mlp_train_step);
criterion_main!(benches);
