//! Tests of the placer.

use super::*;
use rill_graph::{Code, DType, Output, Tensor};
use rill_ops::Builder;

fn cpu(i: u32) -> String {
    format!("/job:localhost/replica:0/task:0/device:CPU:{i}")
}

/// Adds `op` named `name` on `inputs`, requesting `device` ("" for none), with `attrs`.
fn add(b: &Builder, op: &str, name: &str, inputs: &[Output], device: &str) -> Output {
    let n = inputs.iter().fold(b.op(op).name(name), |n, &i| n.input(i));
    let spec = DeviceSpec::parse(device).unwrap();
    n.device(spec).build_output().unwrap()
}

fn konst(b: &Builder, name: &str, value: f32) -> Output {
    let n = b.op("Const").name(name).attr("dtype", DType::F32);
    n.attr("value", Tensor::scalar(value))
        .build_output()
        .unwrap()
}

fn with_class(b: &Builder, name: &str, x: Output, device: &str) {
    let class = AttrValue::StringList(vec![b"loc:@v".to_vec()]);
    let n = b.op("Neg").name(name).input(x).attr("_class", class);
    n.device(DeviceSpec::parse(device).unwrap())
        .build()
        .unwrap();
}

fn run(b: Builder, n: usize, options: &PlacerOptions) -> Result<(Graph, PlacementLog)> {
    let mut g = b.into_graph();
    let kernels = rill_kernels::registry();
    let log = place(&mut g, &DeviceSet::local_cpus(n), &kernels, options)?;
    Ok((g, log))
}

fn device_of(g: &Graph, name: &str) -> String {
    let node = g.node(g.find(name).expect("node exists"));
    node.assigned_device
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_default()
}

#[test]
fn honours_requests_and_defaults_to_the_client() {
    let b = Builder::new();
    let x = konst(&b, "x", 1.0);
    b.graph_mut().node_mut(x.node).requested_device = DeviceSpec::parse("/device:CPU:1").unwrap();
    let y = add(&b, "Neg", "y", &[x], "");
    add(&b, "Neg", "z", &[y], "/cpu:1");
    add(&b, "Neg", "w", &[y], "/device:CPU:*");
    let (g, log) = run(b, 2, &PlacerOptions::default()).unwrap();
    let got: Vec<String> = ["x", "y", "z", "w"]
        .iter()
        .map(|n| device_of(&g, n))
        .collect();
    assert_eq!(got, vec![cpu(1), cpu(0), cpu(1), cpu(0)]);
    assert_eq!(log.assignments.len(), 4);
    assert!(log.lines().contains(&format!("x -> {}", cpu(1))));
    assert!(log.moves.is_empty());
}

fn variable_graph(b: &Builder) -> Output {
    let v = b.variable("v", DType::F32, [2i64]).unwrap();
    let init = b.zeros_const(DType::F32, &[2]).unwrap();
    add(b, "Assign", "v/Assign", &[v, init], "");
    // As TensorFlow's Variable builds it: the read names its variable in `_class`.
    let read = b
        .op("Identity")
        .name("v/read")
        .input(v)
        .attr("_class", AttrValue::StringList(vec![b"loc:@v".to_vec()]))
        .build_output()
        .unwrap();
    let lr = konst(b, "lr", 0.1);
    add(
        b,
        "ApplyGradientDescent",
        "apply",
        &[v, lr, read],
        "/device:CPU:1",
    );
    read
}

#[test]
fn variables_are_colocated_with_their_users() {
    let b = Builder::new();
    let read = variable_graph(&b);
    add(&b, "Neg", "neg", &[read], "");
    with_class(&b, "friend", read, "");
    // A plain read of the variable's value is not pinned to it.
    let v = b.graph().find("v").unwrap().output(0);
    add(&b, "Neg", "reader", &[v], "");
    let (g, _) = run(b, 2, &PlacerOptions::default()).unwrap();
    for n in ["v", "v/Assign", "v/read", "apply", "friend"] {
        assert_eq!(device_of(&g, n), cpu(1), "{n}");
    }
    assert_eq!(
        (
            device_of(&g, "neg"),
            device_of(&g, "lr"),
            device_of(&g, "reader")
        ),
        (cpu(0), cpu(0), cpu(0))
    );
}

#[test]
fn conflicting_colocation_names_both_nodes() {
    let b = Builder::new();
    let read = variable_graph(&b);
    with_class(&b, "other", read, "/device:CPU:0");
    let e = run(b, 2, &PlacerOptions::default()).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    let m = &e.message;
    assert!(m.contains("'other'") && m.contains("'apply'"), "{e}");
    assert!(
        m.contains("/device:CPU:0") && m.contains("/device:CPU:1"),
        "{e}"
    );
}

fn gpu_graph() -> Builder {
    let b = Builder::new();
    let x = konst(&b, "x", 2.0);
    add(&b, "Neg", "gpu_neg", &[x], "/device:GPU:0");
    b
}

#[test]
fn soft_placement_moves_to_a_cpu() {
    let soft = PlacerOptions {
        soft_placement: true,
        ..Default::default()
    };
    let (g, log) = run(gpu_graph(), 2, &soft).unwrap();
    assert_eq!(device_of(&g, "gpu_neg"), cpu(0));
    let line = format!(
        "moved 'gpu_neg' (Neg) from /device:GPU:0 to {}: no GPU kernel (",
        cpu(0)
    );
    assert_eq!(log.moves.len(), 1);
    assert!(log.moves[0].starts_with(&line), "{:?}", log.moves);
    if let Some(why) = &rill_kernels::gpu::probe().why_none {
        assert!(log.moves[0].contains(why.as_str()), "{:?}", log.moves);
    }

    let e = run(gpu_graph(), 2, &PlacerOptions::default()).unwrap_err();
    assert_eq!(
        (e.code, e.node.as_deref()),
        (Code::InvalidArgument, Some("gpu_neg"))
    );
    assert!(
        e.message.contains("'gpu_neg' (Neg)") && e.message.contains("no GPU kernel"),
        "{e}"
    );
}

#[test]
fn impossible_placement_says_why() {
    let b = Builder::new();
    let x = konst(&b, "x", 2.0);
    add(&b, "Neg", "far", &[x], "/device:CPU:7");
    let e = run(b, 2, &PlacerOptions::default()).unwrap_err();
    assert_eq!(e.node.as_deref(), Some("far"));
    assert!(
        e.message.contains("no device matches") && e.message.contains("CPU:7"),
        "{e}"
    );
}

#[test]
fn spread_uses_every_device_deterministically() {
    let build = || {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [4i64]).unwrap();
        let tails: Vec<Output> = (0..8)
            .map(|i| {
                let c = konst(&b, &format!("c{i}"), i as f32);
                let m = add(&b, "Mul", &format!("m{i}"), &[x, c], "");
                add(&b, "Tanh", &format!("t{i}"), &[m], "")
            })
            .collect();
        b.op("AddN").name("sum").input_list(&tails).build().unwrap();
        b
    };
    let spread = PlacerOptions {
        strategy: Strategy::Spread,
        ..Default::default()
    };
    let (g, log) = run(build(), 4, &spread).unwrap();
    let used: std::collections::BTreeSet<&String> =
        log.assignments.iter().map(|(_, d)| d).collect();
    assert_eq!(used.len(), 4, "{log:?}");
    for i in 0..8 {
        let d = device_of(&g, &format!("m{i}"));
        assert_eq!(device_of(&g, &format!("t{i}")), d, "branch {i} stays whole");
        assert_eq!(
            device_of(&g, &format!("c{i}")),
            d,
            "const {i} follows its consumer"
        );
    }
    assert_eq!(run(build(), 4, &spread).unwrap().1, log);
}
