//! The Rust-API optimizers train for real and match their update rules: each optimizer
//! minimises a least-squares problem; one SGD/Momentum/Adam step matches a hand-computed
//! update; the global step counts steps; a variable the loss does not use is an error.

use rill::autodiff::optimizer::{
    global_step, initializer, Adagrad, Adam, Momentum, Optimizer, RmsProp, Sgd,
};
use rill::prelude::*;

/// loss = mean((x w - y)^2) with w: [3,1]; returns (builder, w, loss).
fn problem() -> (Builder, Output, Output) {
    let b = Builder::new();
    let x = b
        .constant(
            Tensor::new(
                &[4, 3],
                vec![
                    1.0f32, 2.0, 0.5, -1.0, 0.3, 2.0, 0.7, -0.4, 1.0, 0.0, 1.0, -1.5,
                ],
            )
            .unwrap(),
        )
        .unwrap();
    let y = b
        .constant(Tensor::new(&[4, 1], vec![1.0f32, -2.0, 0.5, 3.0]).unwrap())
        .unwrap();
    let w = b
        .variable_with_init("w", Tensor::new(&[3, 1], vec![0.1f32, -0.2, 0.3]).unwrap())
        .unwrap();
    let err = b.sub(b.matmul(x, w).unwrap(), y).unwrap();
    let loss = b.mean(b.square(err).unwrap(), &[0, 1], false).unwrap();
    (b, w, loss)
}

fn train(opt: &dyn Optimizer, steps: usize) -> (f32, f32, i64) {
    let (b, w, loss) = problem();
    global_step(&b).unwrap();
    let train = opt.minimize(&b, loss, &[w], "train").unwrap();
    let init = initializer(&b, "init").unwrap();
    let (loss_name, train_name, init_name) = {
        let g = b.graph();
        (
            g.tensor_name(loss),
            g.node(train).name.clone(),
            g.node(init).name.clone(),
        )
    };
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    s.run(&[], &[], &[&init_name]).unwrap();
    let first = s.run(&[], &[&loss_name], &[]).unwrap()[0]
        .scalar_value::<f32>()
        .unwrap();
    for _ in 0..steps {
        s.run(&[], &[], &[&train_name]).unwrap();
    }
    let last = s.run(&[], &[&loss_name], &[]).unwrap()[0]
        .scalar_value::<f32>()
        .unwrap();
    let step = s.run(&[], &["global_step:0"], &[]).unwrap()[0]
        .scalar_value::<i64>()
        .unwrap();
    (first, last, step)
}

#[test]
fn every_optimizer_reduces_the_loss() {
    let opts: Vec<(&str, Box<dyn Optimizer>)> = vec![
        (
            "sgd",
            Box::new(Sgd {
                learning_rate: 0.05,
            }),
        ),
        (
            "momentum",
            Box::new(Momentum {
                learning_rate: 0.02,
                momentum: 0.9,
                nesterov: false,
            }),
        ),
        (
            "nesterov",
            Box::new(Momentum {
                learning_rate: 0.02,
                momentum: 0.9,
                nesterov: true,
            }),
        ),
        (
            "adam",
            Box::new(Adam {
                learning_rate: 0.05,
                ..Adam::default()
            }),
        ),
        (
            "rmsprop",
            Box::new(RmsProp {
                learning_rate: 0.01,
                decay: 0.9,
                momentum: 0.0,
                epsilon: 1e-10,
            }),
        ),
        (
            "adagrad",
            Box::new(Adagrad {
                learning_rate: 0.3,
                initial_accumulator: 0.1,
            }),
        ),
    ];
    for (name, opt) in opts {
        let (first, last, step) = train(opt.as_ref(), 200);
        assert!(last < first * 0.5, "{name}: loss {first} -> {last}");
        assert_eq!(step, 200, "{name}");
    }
}

#[test]
fn one_sgd_step_matches_the_rule() {
    // d/dw mean((xw - y)^2) = 2/n x^T (xw - y); w' = w - lr * grad.
    let x = [
        [1.0f64, 2.0, 0.5],
        [-1.0, 0.3, 2.0],
        [0.7, -0.4, 1.0],
        [0.0, 1.0, -1.5],
    ];
    let y = [1.0f64, -2.0, 0.5, 3.0];
    let w = [0.1f64, -0.2, 0.3];
    let r: Vec<f64> = (0..4)
        .map(|i| (0..3).map(|j| x[i][j] * w[j]).sum::<f64>() - y[i])
        .collect();
    let want: Vec<f64> = (0..3)
        .map(|j| w[j] - 0.05 * 2.0 / 4.0 * (0..4).map(|i| x[i][j] * r[i]).sum::<f64>())
        .collect();
    let (b, wv, loss) = problem();
    let train = Sgd {
        learning_rate: 0.05,
    }
    .minimize(&b, loss, &[wv], "train")
    .unwrap();
    let init = initializer(&b, "init").unwrap();
    let names = (
        b.graph().node(train).name.clone(),
        b.graph().node(init).name.clone(),
    );
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    s.run(&[], &[], &[&names.1]).unwrap();
    s.run(&[], &[], &[&names.0]).unwrap();
    let got = s.run(&[], &["w:0"], &[]).unwrap();
    for (g, w) in got[0].as_slice::<f32>().unwrap().iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn a_variable_without_gradient_is_an_error() {
    let (b, w, loss) = problem();
    let unused = b
        .variable_with_init("unused", Tensor::vector(vec![1.0f32]))
        .unwrap();
    let e = Sgd { learning_rate: 0.1 }
        .minimize(&b, loss, &[w, unused], "train")
        .unwrap_err();
    assert!(e.to_string().contains("unused"), "{e}");
}
