//! Throughput checks, ignored by default: run them with
//! `cargo test -p rill-kernels --release -- --ignored perf_ --nocapture`.
//! They print rates and assert only that results have the expected shapes.

use std::time::Instant;

use rill_graph::{AttrValue, Tensor};

use super::test_util::{f32s, i32s, random, run};

fn time(label: &str, work: f64, unit: &str, reps: usize, mut f: impl FnMut() -> Tensor) {
    let _ = f();
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    let secs = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{label:<40} {:>9.3} ms  {:>8.2} {unit}",
        secs * 1e3,
        work / secs / 1e9
    );
}

#[test]
#[ignore]
fn perf_matmul() {
    for n in [256usize, 1024] {
        let a = f32s(&[n, n], &random(n * n, 1));
        let b = f32s(&[n, n], &random(n * n, 2));
        let flops = 2.0 * (n * n * n) as f64;
        time(&format!("MatMul f32 {n}^3"), flops, "GFLOP/s", 5, || {
            run("MatMul", &[], vec![a.clone(), b.clone()])
                .unwrap()
                .remove(0)
        });
    }
    let x = f32s(&[64, 64, 64], &random(64 * 64 * 64, 3));
    time(
        "BatchMatMulV2 64x(64^3)",
        2.0 * 64f64.powi(4),
        "GFLOP/s",
        10,
        || {
            run("BatchMatMulV2", &[], vec![x.clone(), x.clone()])
                .unwrap()
                .remove(0)
        },
    );
}

#[test]
#[ignore]
fn perf_elementwise_and_reduce() {
    let n = 1 << 22;
    let a = f32s(&[1024, 4096], &random(n, 4));
    let b = f32s(&[1024, 4096], &random(n, 5));
    let row = f32s(&[4096], &random(4096, 6));
    let bytes = (n * 12) as f64;
    time("Add same shape 4M (alloc)", bytes, "GB/s", 20, || {
        run("AddV2", &[], vec![a.clone(), b.clone()])
            .unwrap()
            .remove(0)
    });
    time("Add row broadcast 4M", bytes, "GB/s", 20, || {
        run("AddV2", &[], vec![a.clone(), row.clone()])
            .unwrap()
            .remove(0)
    });
    time("Mul scalar 4M", (n * 8) as f64, "GB/s", 20, || {
        run("Mul", &[], vec![a.clone(), f32s(&[], &[2.0])])
            .unwrap()
            .remove(0)
    });
    time("Tanh 4M", n as f64, "Gelem/s", 10, || {
        run("Tanh", &[], vec![a.clone()]).unwrap().remove(0)
    });
    time("Sum all 4M", (n * 4) as f64, "GB/s", 20, || {
        run("Sum", &[], vec![a.clone(), i32s(&[2], &[0, 1])])
            .unwrap()
            .remove(0)
    });
    time(
        "Sum axis 0 of [1024,4096]",
        (n * 4) as f64,
        "GB/s",
        20,
        || {
            run("Sum", &[], vec![a.clone(), i32s(&[1], &[0])])
                .unwrap()
                .remove(0)
        },
    );
    time(
        "Max axis 1 of [1024,4096]",
        (n * 4) as f64,
        "GB/s",
        20,
        || {
            run("Max", &[], vec![a.clone(), i32s(&[1], &[1])])
                .unwrap()
                .remove(0)
        },
    );
    time("Softmax [1024,4096]", n as f64, "Gelem/s", 10, || {
        run("Softmax", &[], vec![a.clone()]).unwrap().remove(0)
    });
}

#[test]
#[ignore]
fn perf_conv() {
    let x = f32s(&[8, 56, 56, 64], &random(8 * 56 * 56 * 64, 7));
    let f = f32s(&[3, 3, 64, 64], &random(3 * 3 * 64 * 64, 8));
    let attrs = [
        ("strides", AttrValue::IntList(vec![1, 1, 1, 1])),
        ("padding", AttrValue::from("SAME")),
    ];
    let flops = 2.0 * (8 * 56 * 56 * 64 * 9 * 64) as f64;
    time("Conv2D 8x56x56x64 3x3x64", flops, "GFLOP/s", 3, || {
        run("Conv2D", &attrs, vec![x.clone(), f.clone()])
            .unwrap()
            .remove(0)
    });
    let f1 = f32s(&[1, 1, 64, 256], &random(64 * 256, 9));
    let flops = 2.0 * (8 * 56 * 56 * 64 * 256) as f64;
    time("Conv2D 1x1 64->256", flops, "GFLOP/s", 3, || {
        run("Conv2D", &attrs, vec![x.clone(), f1.clone()])
            .unwrap()
            .remove(0)
    });
    let pool = [
        ("ksize", AttrValue::IntList(vec![1, 3, 3, 1])),
        ("strides", AttrValue::IntList(vec![1, 2, 2, 1])),
        ("padding", AttrValue::from("SAME")),
    ];
    time(
        "MaxPool 3x3/2",
        (8 * 56 * 56 * 64) as f64,
        "Gelem/s",
        5,
        || run("MaxPool", &pool, vec![x.clone()]).unwrap().remove(0),
    );
}
