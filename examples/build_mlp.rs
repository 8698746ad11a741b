//! Builds a small MLP with the Rust builder API and writes it as a GraphDef that TensorFlow,
//! TensorBoard and Netron open: `cargo run --example build_mlp -- /tmp/mlp.pb`.

use anyhow::Result;
use rill::prelude::*;

fn weights(rows: usize, cols: usize, seed: u32) -> Result<Tensor> {
    let values = (0..rows * cols)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) as f32 / 65536.0) - 0.5
        })
        .collect();
    Ok(Tensor::new(&[rows, cols], values)?)
}

fn main() -> Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "mlp.pb".into());
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, 20])?;
    let hidden = {
        let _scope = b.name_scope("hidden");
        let w = b.constant_named("w", weights(20, 32, 1)?)?;
        let bias = b.constant_named("b", Tensor::vector(vec![0.1f32; 32]))?;
        b.relu(b.bias_add(b.matmul(x, w)?, bias)?)?
    };
    let logits = {
        let _scope = b.name_scope("logits");
        let w = b.constant_named("w", weights(32, 10, 2)?)?;
        b.matmul(hidden, w)?
    };
    let probs = b.softmax(logits)?;
    println!("probs: {} {}", b.graph().tensor_name(probs), b.shape(probs));
    let graph = b.into_graph();
    graph.save(&path)?;
    println!("wrote {path} ({} nodes)", graph.len());
    Ok(())
}
