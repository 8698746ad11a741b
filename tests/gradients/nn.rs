//! Gradient checks of the nn ops: activations, bias addition, softmax and the losses,
//! convolution and pooling.

use rill::prelude::*;

use super::{away, check, pos, t};

fn activation(op: &'static str, x: Tensor) {
    check(op, &[x], |b, p| b.unary(op, p[0]))
}

cases! {
    relu: "Relu" => { activation("Relu", away(&[2, 3], 1)) }
    relu6: "Relu6" => {
        let x = Tensor::new(&[2, 3], vec![-1.5f64, 0.7, 2.0, 5.5, 6.8, 3.3]).unwrap();
        activation("Relu6", x);
    }
    elu: "Elu" => { activation("Elu", away(&[2, 3], 1)) }
    selu: "Selu" => { activation("Selu", away(&[2, 3], 1)) }
    leaky_relu: "LeakyRelu" => {
        check("LeakyRelu", &[away(&[2, 3], 1)], |b, p| b.leaky_relu(p[0], 0.3));
    }
    softplus: "Softplus" => { activation("Softplus", t(&[2, 3], 1)) }
    softsign: "Softsign" => { activation("Softsign", away(&[2, 3], 1)) }
    relu_grad: "ReluGrad" => {
        check("ReluGrad", &[t(&[2, 3], 1), away(&[2, 3], 2)], |b, p| {
            b.op("ReluGrad").input(p[0]).input(p[1]).build_output()
        });
    }

    bias_add: "BiasAdd" => {
        check("BiasAdd", &[t(&[2, 3, 4], 1), t(&[4], 2)], |b, p| b.bias_add(p[0], p[1]));
        check("BiasAdd", &[t(&[2, 4, 3], 1), t(&[4], 2)], |b, p| {
            b.bias_add_with_format(p[0], p[1], "NCHW")
        });
    }
    bias_add_v1: "BiasAddV1" => {
        check("BiasAddV1", &[t(&[3, 4], 1), t(&[4], 2)], |b, p| {
            b.op("BiasAddV1").input(p[0]).input(p[1]).build_output()
        });
    }
    softmax: "Softmax" => { activation("Softmax", t(&[3, 4], 1)) }
    log_softmax: "LogSoftmax" => { activation("LogSoftmax", t(&[3, 4], 1)) }
    softmax_cross_entropy: "SoftmaxCrossEntropyWithLogits" => {
        let op = "SoftmaxCrossEntropyWithLogits";
        // Labels are distributions (rows sum to 1), as the op's backprop output assumes.
        let raw = pos(&[3, 4], 2);
        let raw = raw.as_slice::<f64>().unwrap();
        let labels: Vec<f64> = raw
            .chunks(4)
            .flat_map(|row| {
                let total: f64 = row.iter().sum();
                row.iter().map(move |v| v / total)
            })
            .collect();
        let inputs = [t(&[3, 4], 1), Tensor::new(&[3, 4], labels).unwrap()];
        // The loss, the backprop output, and both (gradients arriving at both outputs).
        check(op, &inputs, |b, p| Ok(b.softmax_cross_entropy_with_logits(p[0], p[1])?.0));
        check(op, &inputs, |b, p| Ok(b.softmax_cross_entropy_with_logits(p[0], p[1])?.1));
        check(op, &inputs, |b, p| {
            let (loss, backprop) = b.softmax_cross_entropy_with_logits(p[0], p[1])?;
            b.add(b.sum(loss, &[0], false)?, b.sum(b.square(backprop)?, &[0, 1], false)?)
        });
    }
    sparse_softmax_cross_entropy: "SparseSoftmaxCrossEntropyWithLogits" => {
        let op = "SparseSoftmaxCrossEntropyWithLogits";
        let labels = Tensor::vector(vec![1i64, 0, 3]);
        let inputs = [t(&[3, 4], 1), labels];
        check(op, &inputs, |b, p| Ok(b.sparse_softmax_cross_entropy_with_logits(p[0], p[1])?.0));
        check(op, &inputs, |b, p| Ok(b.sparse_softmax_cross_entropy_with_logits(p[0], p[1])?.1));
    }
    l2_loss: "L2Loss" => { activation("L2Loss", t(&[2, 3], 1)) }

    conv2d: "Conv2D" => {
        check("Conv2D", &[t(&[2, 5, 5, 2], 1), t(&[3, 3, 2, 3], 2)], |b, p| {
            b.conv2d(p[0], p[1], [1, 1, 1, 1], "SAME")
        });
        check("Conv2D", &[t(&[1, 6, 5, 2], 1), t(&[2, 3, 2, 2], 2)], |b, p| {
            b.conv2d(p[0], p[1], [1, 2, 2, 1], "VALID")
        });
    }
    max_pool: "MaxPool" => {
        check("MaxPool", &[t(&[2, 4, 4, 2], 1)], |b, p| {
            b.max_pool(p[0], [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        });
        check("MaxPool", &[t(&[1, 5, 4, 2], 3)], |b, p| {
            b.max_pool(p[0], [1, 3, 3, 1], [1, 1, 1, 1], "SAME")
        });
    }
    avg_pool: "AvgPool" => {
        check("AvgPool", &[t(&[2, 4, 4, 2], 1)], |b, p| {
            b.avg_pool(p[0], [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        });
        check("AvgPool", &[t(&[1, 5, 4, 2], 3)], |b, p| {
            b.avg_pool(p[0], [1, 3, 3, 1], [1, 2, 1, 1], "SAME")
        });
    }
}
