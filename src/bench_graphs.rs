//! The graphs the benchmarks time, built once here so that tests (the memory plan's bound,
//! equivalence with optimisation on and off) look at exactly what the benchmarks run.

use rill_autodiff::optimizer::{initializer, Optimizer, Sgd};
use rill_graph::{DType, Graph, Result, Tensor};
use rill_ops::Builder;

/// Values in [-scale, scale) from a small deterministic generator.
pub fn uniform(n: usize, scale: f32, seed: u64) -> Vec<f32> {
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

/// An MLP 784-256-256-10 training step (batch 64, softmax cross-entropy, SGD), built as
/// `tf_reference.py` builds TensorFlow's (`h = matmul(h, w) + b`, ReLU between layers).
pub struct MlpTrainStep {
    pub graph: Graph,
    /// Feeds `x:0` [64,784] and `y:0` [64,10].
    pub feeds: [Tensor; 2],
    pub loss: String,
    pub train: String,
    pub init: String,
}

/// Builds [`MlpTrainStep`].
pub fn mlp_train_step() -> Result<MlpTrainStep> {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [64i64, 784])?;
    let y = b.placeholder("y", DType::F32, [64i64, 10])?;
    let mut h = x;
    let mut vars = vec![];
    for (i, (fi, fo)) in [(784usize, 256usize), (256, 256), (256, 10)]
        .into_iter()
        .enumerate()
    {
        let limit = (6.0 / (fi + fo) as f32).sqrt();
        let w = b.variable_with_init(
            &format!("w{i}"),
            Tensor::new(&[fi, fo], uniform(fi * fo, limit, i as u64 + 1))?,
        )?;
        let bias = b.variable_with_init(&format!("b{i}"), Tensor::vector(vec![0.0f32; fo]))?;
        h = b.add(b.matmul(h, w)?, bias)?;
        if i < 2 {
            h = b.relu(h)?;
        }
        vars.extend([w, bias]);
    }
    let (loss, _) = b.softmax_cross_entropy_with_logits(h, y)?;
    let loss = b.mean(loss, &[0], false)?;
    let train = Sgd { learning_rate: 0.1 }.minimize(&b, loss, &vars, "train")?;
    let init = initializer(&b, "init")?;
    let (loss, train, init) = {
        let g = b.graph();
        (
            g.tensor_name(loss),
            g.node(train).name.clone(),
            g.node(init).name.clone(),
        )
    };
    let xv = Tensor::new(
        &[64, 784],
        uniform(64 * 784, 1.0, 7).iter().map(|v| v.abs()).collect(),
    )?;
    let mut yv = vec![0.0f32; 640];
    for (i, r) in uniform(64, 1.0, 9).iter().enumerate() {
        yv[i * 10 + ((r.abs() * 9.99) as usize)] = 1.0;
    }
    Ok(MlpTrainStep {
        graph: b.into_graph(),
        feeds: [xv, Tensor::new(&[64, 10], yv)?],
        loss,
        train,
        init,
    })
}

/// Elements in the elementwise chain's tensors.
pub const CHAIN_LEN: usize = 1 << 20;

/// `out = -max(((relu(x*0.5 + y) - x)^2 * y), x)`: 8 elementwise ops on `x:0`, `y:0` of
/// [`CHAIN_LEN`] f32 each, fetched as `out:0`.
pub fn elementwise_chain() -> Result<(Graph, [Tensor; 2])> {
    let b = Builder::new();
    let n = CHAIN_LEN;
    let x = b.placeholder("x", DType::F32, [n as i64])?;
    let y = b.placeholder("y", DType::F32, [n as i64])?;
    let half = b.constant(Tensor::scalar(0.5f32))?;
    let t = b.mul(x, half)?;
    let t = b.add(t, y)?;
    let t = b.relu(t)?;
    let t = b.sub(t, x)?;
    let t = b.square(t)?;
    let t = b.mul(t, y)?;
    let t = b.maximum(t, x)?;
    let t = b.neg(t)?;
    b.identity_named("out", t)?;
    let xv = Tensor::new(
        &[n],
        (0..n).map(|i| (i % 101) as f32 / 50.0 - 1.0).collect(),
    )?;
    let yv = Tensor::new(&[n], (0..n).map(|i| (i % 37) as f32 / 18.0 - 1.0).collect())?;
    Ok((b.into_graph(), [xv, yv]))
}
