//! Criterion benchmark of one training step of an MLP 784-256-256-10, batch 64, softmax
//! cross-entropy, SGD (forward + gradients + update), built with the Rust API exactly as
//! `tf_reference.py` builds TensorFlow's (`h = matmul(h, w) + b`, ReLU between layers).
//!
//! Run: `cargo bench --bench training`.

use criterion::{criterion_group, criterion_main, Criterion};
use rill::autodiff::optimizer::{initializer, Optimizer, Sgd};
use rill::prelude::*;

fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn mlp_train_step(c: &mut Criterion) {
    // Optimised (the default) and as written, side by side.
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
        mlp_train_step_with(c, name, options);
    }
}

fn mlp_train_step_with(c: &mut Criterion, name: &str, options: SessionOptions) {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [64i64, 784]).unwrap();
    let y = b.placeholder("y", DType::F32, [64i64, 10]).unwrap();
    let mut h = x;
    let mut vars = vec![];
    for (i, (fi, fo)) in [(784usize, 256usize), (256, 256), (256, 10)]
        .into_iter()
        .enumerate()
    {
        let limit = (6.0 / (fi + fo) as f32).sqrt();
        let w = b
            .variable_with_init(
                &format!("w{i}"),
                Tensor::new(&[fi, fo], uniform(fi * fo, limit, i as u64 + 1)).unwrap(),
            )
            .unwrap();
        let bias = b
            .variable_with_init(&format!("b{i}"), Tensor::vector(vec![0.0f32; fo]))
            .unwrap();
        h = b.add(b.matmul(h, w).unwrap(), bias).unwrap();
        if i < 2 {
            h = b.relu(h).unwrap();
        }
        vars.extend([w, bias]);
    }
    let (loss, _) = b.softmax_cross_entropy_with_logits(h, y).unwrap();
    let loss = b.mean(loss, &[0], false).unwrap();
    let train = Sgd { learning_rate: 0.1 }
        .minimize(&b, loss, &vars, "train")
        .unwrap();
    let init = initializer(&b, "init").unwrap();
    let (loss_name, train_name, init_name) = {
        let g = b.graph();
        (
            g.tensor_name(loss),
            g.node(train).name.clone(),
            g.node(init).name.clone(),
        )
    };
    let s = Session::new(b.into_graph(), options).unwrap();
    s.run(&[], &[], &[&init_name]).unwrap();
    let xv = Tensor::new(
        &[64, 784],
        uniform(64 * 784, 1.0, 7).iter().map(|v| v.abs()).collect(),
    )
    .unwrap();
    let mut yv = vec![0.0f32; 640];
    for (i, r) in uniform(64, 1.0, 9).iter().enumerate() {
        yv[i * 10 + ((r.abs() * 9.99) as usize)] = 1.0;
    }
    let yv = Tensor::new(&[64, 10], yv).unwrap();
    let step = s
        .prepare(&["x:0", "y:0"], &[&loss_name], &[&train_name])
        .unwrap();
    c.bench_function(name, |bench| {
        bench.iter(|| step.run(vec![xv.clone(), yv.clone()]).unwrap())
    });
}

criterion_group!(benches, mlp_train_step);
criterion_main!(benches);
