//! Steps split across CPU devices of one process: placement, partitions joined by
//! `_Send`/`_Recv`, feeds and fetches on other devices, control edges across devices, a
//! training step spread over four devices against one device, and an error on one device
//! aborting a step whose other device waits in a `_Recv`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rill::bench_graphs::mlp_train_step;
use rill::prelude::*;

fn cpu(i: usize) -> String {
    format!("/job:localhost/replica:0/task:0/device:CPU:{i}")
}

fn on(b: &Builder, device: usize, op: &str, name: &str, inputs: &[Output]) -> Output {
    let _scope = b.device(&cpu(device)).unwrap();
    inputs
        .iter()
        .fold(b.op(op).name(name), |n, &i| n.input(i))
        .build_output()
        .unwrap()
}

fn devices(n: usize, placement: Strategy) -> SessionOptions {
    SessionOptions::default().with_cpu_devices(n, placement)
}

#[test]
fn a_spread_training_step_matches_one_device() {
    let mut losses = vec![];
    for options in [SessionOptions::default(), devices(4, Strategy::Spread)] {
        let step = mlp_train_step().unwrap();
        let s = Session::new(step.graph, options).unwrap();
        s.run(&[], &[], &[&step.init]).unwrap();
        let feeds = [
            ("x:0", step.feeds[0].clone()),
            ("y:0", step.feeds[1].clone()),
        ];
        let mut run = vec![];
        for _ in 0..5 {
            let out = s.run(&feeds, &[&step.loss], &[&step.train]).unwrap();
            run.push(out[0].as_slice::<f32>().unwrap()[0]);
        }
        if s.devices().len() > 1 {
            let plan = s
                .partitioned(&["x:0", "y:0"], &[&step.loss], &[&step.train])
                .unwrap();
            assert!(plan.parts.len() > 1, "spread placement used one device");
            assert!(plan.partitions.cut_edges().count() > 0);
        }
        losses.push(run);
    }
    for (a, b) in losses[0].iter().zip(&losses[1]) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{losses:?}");
    }
    assert!(losses[1][4] < losses[1][0], "the loss falls: {losses:?}");
}

#[test]
fn feeds_and_fetches_on_other_devices_travel_through_the_rendezvous() {
    let b = Builder::new();
    let x = {
        let _scope = b.device(&cpu(2)).unwrap();
        b.placeholder("x", DType::F32, [3i64]).unwrap()
    };
    let two = b.constant_named("two", Tensor::scalar(2.0f32)).unwrap();
    let y = on(&b, 3, "Mul", "y", &[x, two]);
    on(&b, 1, "Neg", "z", &[y]);
    let s = Session::new(b.into_graph(), devices(4, Strategy::Client)).unwrap();
    let x = Tensor::new(&[3], vec![1.0f32, -2.0, 4.0]).unwrap();
    let out = s.run(&[("x:0", x)], &["y:0", "z:0", "x:0"], &[]).unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.0, -4.0, 8.0]);
    assert_eq!(out[1].as_slice::<f32>().unwrap(), &[-2.0, 4.0, -8.0]);
    assert_eq!(out[2].as_slice::<f32>().unwrap(), &[1.0, -2.0, 4.0]);
    let plan = s
        .partitioned(&["x:0"], &["y:0", "z:0", "x:0"], &[])
        .unwrap();
    assert_eq!(plan.partitions.feeds.len(), 1, "x lives on CPU:2");
    assert_eq!(
        plan.partitions.fetches.len(),
        3,
        "y, z and x are not on CPU:0"
    );
}

#[test]
fn a_control_edge_across_devices_runs_its_source() {
    let b = Builder::new();
    let counter = {
        let _scope = b.device(&cpu(1)).unwrap();
        b.variable_with_init("counter", Tensor::scalar(0.0f32))
            .unwrap()
    };
    let init = b.initializer("init").unwrap();
    let one = b.constant_named("one", Tensor::scalar(1.0f32)).unwrap();
    let bump = b
        .op("AssignAdd")
        .name("bump")
        .input(counter)
        .input(one)
        .build()
        .unwrap();
    {
        let _deps = b.control_dependencies(&[bump]);
        let _scope = b.device(&cpu(0)).unwrap();
        b.op("NoOp").name("tick").build().unwrap();
    }
    let s = Session::new(b.into_graph(), devices(2, Strategy::Client)).unwrap();
    let init_name = s.graph().node(init).name.clone();
    s.run(&[], &[], &[&init_name]).unwrap();
    for _ in 0..3 {
        s.run(&[], &[], &["tick"]).unwrap();
    }
    let v = s.run(&[], &["counter:0"], &[]).unwrap();
    assert_eq!(v[0].as_slice::<f32>().unwrap(), &[3.0]);
}

/// Device 1 fails (a Reshape to a size the fed tensor does not have) while device 0
/// waits in the `_Recv` for its result: the step returns that error promptly, and the
/// session runs the next step normally.
#[test]
fn an_error_on_one_device_aborts_the_step_waiting_on_another() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64]).unwrap();
    let shape = b.placeholder("shape", DType::I32, [1i64]).unwrap();
    let slow = (0..50).fold(x, |t, i| on(&b, 1, "Tanh", &format!("slow{i}"), &[t]));
    let bad = on(&b, 1, "Reshape", "bad_reshape", &[slow, shape]);
    let waiting = on(&b, 0, "Neg", "waits_on_cpu1", &[bad]);
    let other = on(&b, 0, "Exp", "independent", &[x]);
    let s = Session::new(b.into_graph(), devices(2, Strategy::Client)).unwrap();
    let s = std::sync::Arc::new(s);
    let (tx, rx) = mpsc::channel();
    let session = s.clone();
    let (w, o) = (s.graph().tensor_name(waiting), s.graph().tensor_name(other));
    std::thread::spawn(move || {
        let x = Tensor::new(&[6], vec![0.5f32; 6]).unwrap();
        let bad_shape = Tensor::new(&[1], vec![7i32]).unwrap();
        let start = Instant::now();
        let r = session.run(&[("x:0", x), ("shape:0", bad_shape)], &[&w, &o], &[]);
        let _ = tx.send((r, start.elapsed()));
    });
    let (result, took) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the step hung after device 1 failed");
    let err = result.unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("bad_reshape"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let x = Tensor::new(&[6], vec![0.5f32; 6]).unwrap();
    let good = Tensor::new(&[1], vec![6i32]).unwrap();
    let (w, o) = (s.graph().tensor_name(waiting), s.graph().tensor_name(other));
    let out = s
        .run(&[("x:0", x), ("shape:0", good)], &[&w, &o], &[])
        .unwrap();
    assert_eq!(out[0].dims(), &[6]);
}

#[test]
fn an_impossible_placement_names_the_node_and_device() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [2i64]).unwrap();
    {
        let _scope = b.device("/device:CPU:7").unwrap();
        b.op("Neg").name("far").input(x).build().unwrap();
    }
    let s = Session::new(b.into_graph(), devices(2, Strategy::Client)).unwrap();
    let err = s
        .run(
            &[("x:0", Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap())],
            &["far:0"],
            &[],
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("far") && text.contains("CPU:7"), "{text}");
}

#[test]
fn soft_placement_moves_a_gpu_request_to_a_cpu_and_logs_it() {
    let graph = || {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64]).unwrap();
        {
            let _scope = b.device("/device:GPU:0").unwrap();
            b.op("Neg").name("wants_gpu").input(x).build().unwrap();
        }
        b.into_graph()
    };
    let x = || Tensor::new(&[2], vec![1.0f32, -3.0]).unwrap();
    let strict = Session::new(graph(), devices(2, Strategy::Client)).unwrap();
    let err = strict
        .run(&[("x:0", x())], &["wants_gpu:0"], &[])
        .unwrap_err();
    assert!(err.to_string().contains("wants_gpu"), "{err}");

    let mut options = devices(2, Strategy::Client);
    options.soft_placement = true;
    let soft = Session::new(graph(), options).unwrap();
    let out = soft.run(&[("x:0", x())], &["wants_gpu:0"], &[]).unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[-1.0, 3.0]);
    let plan = soft.partitioned(&["x:0"], &["wants_gpu:0"], &[]).unwrap();
    let moves = plan.placement.moves.join("\n");
    assert!(
        moves.contains("wants_gpu") && moves.contains("GPU:0"),
        "{moves}"
    );
}
