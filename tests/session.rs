//! Session and executor behaviour: pruning, parallel branches, plan caching, prepared
//! callables, and the errors a user can act on.

use rill::prelude::*;

fn constant(b: &Builder, name: &str, t: Tensor) -> Output {
    let dtype = t.dtype();
    b.op("Const")
        .name(name)
        .attr("value", t)
        .attr("dtype", dtype)
        .build_output()
        .unwrap()
}

fn binary(b: &Builder, op: &str, x: Output, y: Output) -> Output {
    b.op(op).input(x).input(y).build_output().unwrap()
}

fn session(b: Builder) -> Session {
    Session::new(b.into_graph(), SessionOptions::default()).unwrap()
}

#[test]
fn runs_a_diamond_and_prunes_unneeded_nodes() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, 2]).unwrap();
    let one = constant(&b, "one", Tensor::scalar(1.0f32));
    let left = binary(&b, "AddV2", x, one);
    let right = binary(&b, "Mul", x, x);
    let out = binary(&b, "Sub", left, right);
    // A branch that would fail if it ran: it is not needed, so it is pruned.
    let bad_idx = constant(&b, "bad_idx", Tensor::vector(vec![7i32]));
    b.op("GatherV2")
        .name("never")
        .input(x)
        .input(bad_idx)
        .input(constant(&b, "axis", Tensor::scalar(0i32)))
        .build()
        .unwrap();
    let out_name = b.graph().tensor_name(out);
    let s = session(b);
    let xv = Tensor::new(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let got = s.run(&[("x:0", xv)], &[&out_name], &[]).unwrap();
    assert_eq!(got[0].as_slice::<f32>().unwrap(), &[1.0, -1.0, -5.0, -11.0]);
}

#[test]
fn many_independent_branches_run_and_join() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [4i64]).unwrap();
    let branches: Vec<Output> = (0..64)
        .map(|i| {
            let c = constant(&b, &format!("c{i}"), Tensor::scalar(i as f32));
            let t = b
                .op("Tanh")
                .input(binary(&b, "Mul", x, c))
                .build_output()
                .unwrap();
            b.op("Square").input(t).build_output().unwrap()
        })
        .collect();
    let sum = b.op("AddN").input_list(&branches).build_output().unwrap();
    let name = b.graph().tensor_name(sum);
    let s = session(b);
    let xv = Tensor::new(&[4], vec![0.1f32, -0.2, 0.3, 0.0]).unwrap();
    for _ in 0..20 {
        let got = s.run(&[("x:0", xv.clone())], &[&name], &[]).unwrap();
        let v = got[0].as_slice::<f32>().unwrap();
        for (k, &xk) in [0.1f32, -0.2, 0.3, 0.0].iter().enumerate() {
            let want: f32 = (0..64).map(|i| (xk * i as f32).tanh().powi(2)).sum();
            assert!((v[k] - want).abs() < 1e-4, "{} vs {want}", v[k]);
        }
    }
    assert_eq!(s.cached_plans(), 1);
}

#[test]
fn fetching_a_fed_tensor_and_an_intermediate() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [2i64]).unwrap();
    let y = b.op("Neg").name("y").input(x).build_output().unwrap();
    b.op("Exp").name("z").input(y).build().unwrap();
    let s = session(b);
    let xv = Tensor::vector(vec![1.0f32, 2.0]);
    // Feeding an intermediate cuts the graph there.
    let got = s
        .run(&[("y:0", Tensor::vector(vec![0.0f32, 0.0]))], &["z:0"], &[])
        .unwrap();
    assert_eq!(got[0].as_slice::<f32>().unwrap(), &[1.0, 1.0]);
    let got = s.run(&[("x:0", xv.clone())], &["x:0", "y:0"], &[]).unwrap();
    assert_eq!(got[0], xv);
    assert_eq!(got[1].as_slice::<f32>().unwrap(), &[-1.0, -2.0]);
}

#[test]
fn prepared_callable_reuses_its_plan() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64]).unwrap();
    b.op("Square").name("sq").input(x).build().unwrap();
    let s = session(b);
    let call = s.prepare(&["x:0"], &["sq:0"], &[]).unwrap();
    for i in 0..5 {
        let got = call.run(vec![Tensor::vector(vec![i as f32])]).unwrap();
        assert_eq!(got[0].as_slice::<f32>().unwrap(), &[(i * i) as f32]);
    }
    assert!(call.run(vec![]).is_err());
}

#[test]
fn actionable_errors() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
    b.op("Relu").name("r").input(x).build().unwrap();
    let s = session(b);
    // Missing feed names the placeholder, its dtype and shape.
    let e = s.run(&[], &["r:0"], &[]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(
        e.to_string()
            .contains("must feed a value for placeholder tensor 'x'"),
        "{e}"
    );
    assert!(e.to_string().contains("[?,3]"), "{e}");
    // Wrong dtype.
    let e = s
        .run(
            &[("x:0", Tensor::new(&[1, 3], vec![1i32, 2, 3]).unwrap())],
            &["r:0"],
            &[],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("int32") && e.to_string().contains("'x:0'"),
        "{e}"
    );
    // Wrong shape.
    let e = s
        .run(
            &[("x:0", Tensor::new(&[1, 2], vec![1f32, 2.0]).unwrap())],
            &["r:0"],
            &[],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("[1,2]") && e.to_string().contains("[?,3]"),
        "{e}"
    );
    // Unknown fetch and target.
    let e = s.run(&[], &["nope:0"], &[]).unwrap_err();
    assert_eq!(e.code, Code::NotFound);
    assert!(e.to_string().contains("nope"), "{e}");
    let e = s.run(&[], &[], &["nope"]).unwrap_err();
    assert_eq!(e.code, Code::NotFound);
    let e = s.run(&[], &["r:7"], &[]).unwrap_err();
    assert!(e.to_string().contains("r:7"), "{e}");
}

#[test]
fn kernel_errors_stop_the_step_and_name_the_node() {
    let b = Builder::new();
    let params = b.placeholder("params", DType::F32, [3i64]).unwrap();
    let idx = b.placeholder("idx", DType::I32, [1i64]).unwrap();
    let axis = constant(&b, "axis", Tensor::scalar(0i32));
    let g = b
        .op("GatherV2")
        .name("lookup")
        .input(params)
        .input(idx)
        .input(axis)
        .build_output()
        .unwrap();
    // Work on a parallel branch still finishes or stops; the step returns the error.
    let other = b.op("Tanh").input(params).build_output().unwrap();
    let sum = binary(
        &b,
        "AddV2",
        g,
        b.op("Sum")
            .input(other)
            .input(constant(&b, "ax", Tensor::vector(vec![0i32])))
            .build_output()
            .unwrap(),
    );
    let name = b.graph().tensor_name(sum);
    let s = session(b);
    let p = Tensor::vector(vec![1.0f32, 2.0, 3.0]);
    let e = s
        .run(
            &[
                ("params:0", p.clone()),
                ("idx:0", Tensor::vector(vec![5i32])),
            ],
            &[&name],
            &[],
        )
        .unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(e.node.as_deref(), Some("lookup"));
    // The session is still usable.
    let ok = s
        .run(
            &[("params:0", p), ("idx:0", Tensor::vector(vec![2i32]))],
            &[&name],
            &[],
        )
        .unwrap();
    let want = 3.0 + [1.0f32, 2.0, 3.0].iter().map(|v| v.tanh()).sum::<f32>();
    assert!((ok[0].as_slice::<f32>().unwrap()[0] - want).abs() < 1e-5);
}

#[test]
fn missing_kernel_for_dtype_is_unimplemented() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::String, [2i64]).unwrap();
    // Tanh is not defined on strings at graph level, so use an op with a generic T.
    let r = b.op("Tanh").input(x).build();
    assert!(r.is_err(), "Tanh must reject string at build time");
}
