//! Tests of `FuseElementwise` (groups, rules, exact results) and of the whole fusion group
//! on TensorFlow's inference fixtures.

use std::path::Path;

use rill_graph::{AttrValue, DType, Graph, Pass};
use rill_ops::Builder;
use serde_json::Value;

use super::tests::{constant, count, named, op_of, optimise, strings};
use super::{fusion_passes, FuseElementwise, FUSABLE};

fn fuse() -> Vec<Box<dyn Pass>> {
    vec![Box::new(FuseElementwise)]
}

#[test]
fn elementwise_trees_become_one_exact_node() {
    for dtype in [DType::F32, DType::F64] {
        let b = Builder::new();
        let x = b.placeholder("x", dtype, [-1i64, 6]).unwrap();
        let y = b.placeholder("y", dtype, [3i64, 1, 6]).unwrap();
        let c = constant(&b, "c", dtype, &[6], 3);
        let t = b.binary("Mul", x, y).unwrap();
        let u = b.binary("AddV2", t, c).unwrap();
        let v = b.unary("Tanh", u).unwrap();
        let w = b.leaky_relu(v, 0.25).unwrap();
        // A diamond: `t` read by two members.
        let z = b.binary("SquaredDifference", w, t).unwrap();
        let z = named(&b, z);
        let g = b.into_graph();
        let fed: [(&str, &[usize]); 2] = [("x", &[4, 6]), ("y", &[3, 1, 6])];
        let after = optimise(&g, fuse(), &fed, &[&z], 0.0);
        assert_eq!(op_of(&after, &z), "_FusedElementwise");
        assert_eq!(after.len(), 4, "{after:?}");
        assert_eq!(
            strings(&after, &z, "ops"),
            [
                "Mul 0 1",
                "AddV2 3 2",
                "Tanh 4",
                "LeakyRelu 5 0.25",
                "SquaredDifference 6 3"
            ]
        );
        assert_eq!(
            after.shape(after.output_named(&z).unwrap()).to_string(),
            "[3,?,6]"
        );
    }
}

#[test]
fn kept_shared_and_foreign_nodes_split_groups() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [8i64]).unwrap();
    let a = b.unary("Exp", x).unwrap();
    let s = b.unary("Neg", a).unwrap(); // fetched: a group root
    let t = b.unary("Sqrt", b.unary("Abs", s).unwrap()).unwrap();
    let shared = b.unary("Sigmoid", t).unwrap(); // read by two groups below
    let p = b
        .binary("Mul", b.unary("Relu", shared).unwrap(), x)
        .unwrap();
    let q = b
        .unary("Tanh", b.unary("Softplus", shared).unwrap())
        .unwrap();
    let d = b.cast(q, DType::F64).unwrap();
    let r = b.unary("Exp", b.unary("Neg", d).unwrap()).unwrap();
    let names: Vec<String> = [s, shared, p, q, r].iter().map(|&o| named(&b, o)).collect();
    let g = b.into_graph();
    let fetches: Vec<&str> = [0, 2, 4].iter().map(|&i| names[i].as_str()).collect();
    let after = optimise(&g, fuse(), &[("x", &[8])], &fetches, 0.0);
    for name in &names {
        assert_eq!(op_of(&after, name), "_FusedElementwise", "{name}");
    }
    assert_eq!(
        strings(&after, &names[1], "ops"),
        ["Abs 0", "Sqrt 1", "Sigmoid 2"]
    );
    assert_eq!(count(&after, "Cast"), 1);
    assert_eq!(count(&after, "_FusedElementwise"), 5);
    // Fed nodes and other devices stay out.
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [8i64]).unwrap();
    let a = b.unary("Exp", x).unwrap();
    let c = b.unary("Neg", b.unary("Log", a).unwrap()).unwrap();
    let e = {
        let _cpu = b.device("/device:CPU:0").unwrap();
        b.unary("Tanh", b.unary("Abs", c).unwrap()).unwrap()
    };
    let (a, c, e) = (named(&b, a), named(&b, c), named(&b, e));
    let g = b.into_graph();
    let after = optimise(&g, fuse(), &[("x", &[8]), (&a, &[8])], &[&e, &c], 0.0);
    assert_eq!(op_of(&after, &a), "Exp");
    assert_eq!(strings(&after, &c, "ops"), ["Log 0", "Neg 1"]);
    assert_eq!(strings(&after, &e, "ops"), ["Abs 0", "Tanh 1"]);
}

#[test]
fn every_fusable_op_is_in_the_kernel() {
    for f in FUSABLE {
        let floats = usize::from(f.attr.is_some());
        assert_eq!(
            rill_kernels::cpu::fused::elementwise_signature(f.op),
            Some((f.inputs, floats)),
            "{}",
            f.op
        );
    }
}

fn keys(manifest: &Value, field: &str) -> Vec<String> {
    manifest[field]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn tensorflow_inference_fixtures_fuse_and_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tf");
    for name in ["cnn_inference", "mlp_inference"] {
        let dir = root.join(name);
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json")).unwrap())
                .unwrap();
        let g = Graph::load(dir.join("graph.pb"), rill_ops::registry()).unwrap();
        let fetches = keys(&m, "fetches");
        let fetches: Vec<&str> = fetches.iter().map(String::as_str).collect();
        let x_dims: &[usize] = if name == "cnn_inference" {
            &[4, 22, 18, 3]
        } else {
            &[8, 20]
        };
        let after = optimise(&g, fusion_passes(), &[("x:0", x_dims)], &fetches, 1e-5);
        let fused = |n: &str| {
            after
                .node(after.node_named(n).unwrap())
                .attr("fused_ops")
                .cloned()
        };
        let relu = |n: &str| {
            Some(AttrValue::StringList(vec![
                b"BiasAdd".to_vec(),
                n.as_bytes().to_vec(),
            ]))
        };
        if name == "cnn_inference" {
            assert_eq!(count(&after, "_FusedConv2D"), 4);
            assert_eq!(count(&after, "_FusedMatMul"), 1);
            assert_eq!(count(&after, "Conv2D") + count(&after, "BiasAdd"), 0);
            for layer in ["relu1", "relu2", "relu3", "relu4"] {
                assert_eq!(fused(layer), relu("Relu"), "{layer}");
            }
            assert_eq!(op_of(&after, "logits"), "_FusedMatMul");
        } else {
            assert_eq!(count(&after, "_FusedMatMul"), 2);
            assert_eq!(count(&after, "MatMul") + count(&after, "BiasAdd"), 0);
        }
    }
}
