//! Variables held by a session: TF1 reference variables and resource variables, their
//! optimizer updates, the errors for reading them before initialisation, and control
//! dependencies ordering an update before a read.

use rill::prelude::*;

#[test]
fn resource_variable_lifecycle_and_update() {
    let b = Builder::new();
    let h = b.var_handle("v", DType::F32, [3i64]).unwrap();
    let init_value = b.constant(Tensor::vector(vec![1.0f32, 2.0, 3.0])).unwrap();
    let init = b.assign_variable(h, init_value).unwrap();
    let read = b.read_variable(h, DType::F32).unwrap();
    let grad = b.constant(Tensor::vector(vec![1.0f32, 0.0, -1.0])).unwrap();
    let lr = b.constant(Tensor::scalar(0.5f32)).unwrap();
    let step = b.resource_apply_gradient_descent(h, lr, grad).unwrap();
    let is_init = b.op("VarIsInitializedOp").input(h).build_output().unwrap();
    let names = {
        let g = b.graph();
        (
            g.node(init).name.clone(),
            g.tensor_name(read),
            g.node(step).name.clone(),
            g.tensor_name(is_init),
        )
    };
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    assert!(!s.run(&[], &[&names.3], &[]).unwrap()[0]
        .scalar_value::<bool>()
        .unwrap());
    let e = s.run(&[], &[&names.1], &[]).unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition);
    assert!(e.to_string().contains("uninitialized value v"), "{e}");
    s.run(&[], &[], &[&names.0]).unwrap();
    assert!(s.run(&[], &[&names.3], &[]).unwrap()[0]
        .scalar_value::<bool>()
        .unwrap());
    s.run(&[], &[], &[&names.2]).unwrap();
    s.run(&[], &[], &[&names.2]).unwrap();
    let v = s.run(&[], &[&names.1], &[]).unwrap();
    assert_eq!(v[0].as_slice::<f32>().unwrap(), &[0.0, 2.0, 4.0]);
}

#[test]
fn ref_variable_read_before_init_names_it() {
    let b = Builder::new();
    let w = b
        .variable_with_init("weights", Tensor::vector(vec![1.0f32, 2.0]))
        .unwrap();
    let doubled = b
        .op("Mul")
        .name("doubled")
        .input(w)
        .input(w)
        .build_output()
        .unwrap();
    let init = b.initializer("init").unwrap();
    let init_name = b.graph().node(init).name.clone();
    let name = b.graph().tensor_name(doubled);
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    let e = s.run(&[], &[&name], &[]).unwrap_err();
    assert_eq!(e.code, Code::FailedPrecondition);
    assert_eq!(e.node.as_deref(), Some("weights"));
    assert!(e.to_string().contains("uninitialized value weights"), "{e}");
    s.run(&[], &[], &[&init_name]).unwrap();
    assert_eq!(
        s.run(&[], &[&name], &[]).unwrap()[0]
            .as_slice::<f32>()
            .unwrap(),
        &[1.0, 4.0]
    );
}

#[test]
fn control_dependencies_order_an_update_before_a_read() {
    let b = Builder::new();
    let counter = b
        .variable_with_init("counter", Tensor::scalar(0i64))
        .unwrap();
    let one = b.constant(Tensor::scalar(1i64)).unwrap();
    let inc = b
        .op("AssignAdd")
        .name("inc")
        .input(counter)
        .input(one)
        .build()
        .unwrap();
    let read = {
        let _deps = b.control_dependencies(&[inc]);
        b.op("Identity")
            .name("after")
            .input(counter)
            .build_output()
            .unwrap()
    };
    assert_eq!(b.graph().node(read.node).control_inputs, vec![inc]);
    let init = b.initializer("init").unwrap();
    let init_name = b.graph().node(init).name.clone();
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    s.run(&[], &[], &[&init_name]).unwrap();
    for want in 1..=3i64 {
        let got = s.run(&[], &["after:0"], &[]).unwrap();
        assert_eq!(got[0].scalar_value::<i64>().unwrap(), want);
    }
}
