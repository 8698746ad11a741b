//! GraphDef import/export against real TensorFlow graphs, and the errors bad input gets.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rill::graph::{Code, Graph};
use rill::ops::{registry, Builder};
use rill::prelude::*;
use rill::proto::{AttrValue, GraphDef, Message, NodeDef};

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("graph.pb").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures under {}", root.display());
    dirs
}

#[test]
fn every_fixture_round_trips_through_pb_and_pbtxt() {
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let g =
            Graph::load(dir.join("graph.pb"), registry()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let from_text = Graph::load(dir.join("graph.pbtxt"), registry())
            .unwrap_or_else(|e| panic!("{name} pbtxt: {e}"));
        let def = g.to_graph_def();
        assert_eq!(
            def,
            from_text.to_graph_def(),
            "{name}: .pb and .pbtxt differ"
        );
        // Export, re-import, export again: the same graph.
        let again = Graph::from_binary(&g.to_binary(), registry()).unwrap();
        assert_eq!(again.to_graph_def(), def, "{name}: binary round trip");
        let text = g.to_text().unwrap();
        let again = Graph::from_text(&text, registry()).unwrap();
        assert_eq!(again.to_graph_def(), def, "{name}: text round trip");
        // Nothing TensorFlow wrote is lost: the export equals the original file.
        let original =
            GraphDef::decode(std::fs::read(dir.join("graph.pb")).unwrap().as_slice()).unwrap();
        assert_eq!(def.node.len(), original.node.len(), "{name}");
        for (a, b) in def.node.iter().zip(&original.node) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.op, b.op);
            assert_eq!(a.input, b.input, "{name}: inputs of {}", a.name);
            for (k, v) in &b.attr {
                assert!(
                    same_attr(a.attr.get(k), v),
                    "{name}: attr {k} of {}: {:?} vs {v:?}",
                    a.name,
                    a.attr.get(k)
                );
            }
        }
    }
}

/// Equal attrs; tensors are compared by value, since TensorFlow may write a splat constant
/// as one `float_val` where Rill's export writes every element in `tensor_content`.
fn same_attr(exported: Option<&AttrValue>, original: &AttrValue) -> bool {
    use rill::proto::attr_value::Value;
    match (exported.and_then(|a| a.value.as_ref()), &original.value) {
        (Some(Value::Tensor(a)), Some(Value::Tensor(b))) => {
            match (Tensor::from_proto(a), Tensor::from_proto(b)) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        _ => exported == Some(original),
    }
}

#[test]
fn fixture_shapes_are_inferred() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/cnn_inference");
    let g = Graph::load(dir.join("graph.pb"), registry()).unwrap();
    let probs = g.output_named("probs:0").unwrap();
    assert_eq!(g.shape(probs).to_string(), "[?,10]");
    let pool = g.output_named("pool1:0").unwrap();
    assert_eq!(g.shape(pool).to_string(), "[?,11,9,8]");
}

fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn placeholder(name: &str) -> NodeDef {
    let mut n = node(name, "Placeholder", &[]);
    n.attr.insert(
        "dtype".into(),
        rill::graph::AttrValue::Type(DType::F32).to_proto(),
    );
    n
}

fn import(nodes: Vec<NodeDef>) -> rill::graph::Result<Graph> {
    let def = GraphDef {
        node: nodes,
        ..Default::default()
    };
    Graph::from_binary(&def.encode_to_vec(), registry())
}

#[test]
fn truncated_and_random_bytes_are_invalid_argument() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/mlp_inference/graph.pb"),
    )
    .unwrap();
    let e = Graph::from_binary(&bytes[..bytes.len() / 2], registry()).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    let e = Graph::from_binary(&[0xff, 0xff, 0xff, 0x0f, 0x08], registry()).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    let e = Graph::from_text("node { name: \"x\" op: ", registry()).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
}

#[test]
fn unknown_op_names_op_and_node() {
    let e = import(vec![node("weird", "FrobnicateV7", &[])]).unwrap_err();
    assert_eq!(e.code, Code::Unimplemented);
    assert_eq!(e.node.as_deref(), Some("weird"));
    let text = e.to_string();
    assert!(
        text.contains("FrobnicateV7") && text.contains("not supported by Rill"),
        "{text}"
    );
}

#[test]
fn bad_attr_type_is_rejected() {
    let mut p = node("x", "Placeholder", &[]);
    p.attr
        .insert("dtype".into(), rill::graph::AttrValue::Int(3).to_proto());
    let e = import(vec![p]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.to_string().contains("dtype"), "{e}");
    assert_eq!(e.node.as_deref(), Some("x"));
}

#[test]
fn dangling_input_is_rejected() {
    let mut id = node("y", "Identity", &["nowhere:0"]);
    id.attr.insert(
        "T".into(),
        rill::graph::AttrValue::Type(DType::F32).to_proto(),
    );
    let e = import(vec![placeholder("x"), id]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.to_string().contains("nowhere"), "{e}");
    // An output index past the producer's outputs is dangling too.
    let mut id = node("y", "Identity", &["x:3"]);
    id.attr.insert(
        "T".into(),
        rill::graph::AttrValue::Type(DType::F32).to_proto(),
    );
    assert!(import(vec![placeholder("x"), id]).is_err());
}

#[test]
fn duplicate_name_is_rejected() {
    let e = import(vec![placeholder("x"), placeholder("x")]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.to_string().contains("duplicate node name 'x'"), "{e}");
}

#[test]
fn cycle_is_rejected_but_loop_back_edges_are_not() {
    let mut a = node("a", "Identity", &["b"]);
    let mut b = node("b", "Identity", &["a"]);
    for n in [&mut a, &mut b] {
        n.attr.insert(
            "T".into(),
            rill::graph::AttrValue::Type(DType::F32).to_proto(),
        );
    }
    let e = import(vec![a, b]).unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn dtype_mismatch_is_rejected() {
    let mut i = placeholder("i");
    i.attr.insert(
        "dtype".into(),
        rill::graph::AttrValue::Type(DType::I32).to_proto(),
    );
    let mut add = node("add", "AddV2", &["x", "i"]);
    add.attr.insert(
        "T".into(),
        rill::graph::AttrValue::Type(DType::F32).to_proto(),
    );
    let e = import(vec![placeholder("x"), i, add]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.to_string().contains("must be float"), "{e}");
}

#[test]
fn build_time_shape_mismatch_names_both_nodes_and_shapes() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [8i64, 784]).unwrap();
    let w = b.placeholder("w", DType::F32, [100i64, 10]).unwrap();
    let e = b
        .op("MatMul")
        .name("logits")
        .input(x)
        .input(w)
        .build()
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(e.node.as_deref(), Some("logits"));
    for part in ["x:0", "w:0", "[8,784]", "[100,10]"] {
        assert!(text.contains(part), "'{part}' missing from: {text}");
    }
    // A failed node leaves the graph as it was.
    assert!(b.graph().find("logits").is_none());
    assert_eq!(b.graph().len(), 2);
}

#[test]
fn built_graph_exports_and_inspects() {
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [-1i64, 4]).unwrap();
    let w = b
        .op("Const")
        .name("w")
        .attr("value", Tensor::new(&[4, 3], vec![0.5f32; 12]).unwrap())
        .attr("dtype", DType::F32)
        .build_output()
        .unwrap();
    let h = {
        let _scope = b.name_scope("layer1");
        let _dev = b.device("/job:worker/task:0").unwrap();
        let m = b.op("MatMul").input(x).input(w).build_output().unwrap();
        b.op("Relu").input(m).build_output().unwrap()
    };
    assert_eq!(b.graph().tensor_name(h), "layer1/Relu:0");
    assert_eq!(b.shape(h).to_string(), "[?,3]");
    let g = b.into_graph();
    let relu = g.node(h.node);
    assert_eq!(relu.requested_device.to_string(), "/job:worker/task:0");
    let dir = tempdir();
    let path = dir.join("built.pb");
    g.save(&path).unwrap();
    let back = Graph::load(&path, registry()).unwrap();
    assert_eq!(back.to_graph_def(), g.to_graph_def());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["inspect", path.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["nodes"], 4);
    assert_eq!(summary["placeholders"][0]["shape"], "[?,4]");
    assert_eq!(summary["sinks"][0], "layer1/Relu:0");
    assert_eq!(summary["import"], "ok");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rill-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn cli_convert_and_inspect_fixture() {
    let dir = tempdir();
    let pb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/cnn_inference/graph.pb");
    let txt = dir.join("cnn.pbtxt");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["convert", pb.to_str().unwrap(), txt.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["inspect", txt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Conv2D") && text.contains("x:0  float [?,22,18,3]"),
        "{text}"
    );
    assert!(text.contains("unsupported ops: none"), "{text}");
    let out = run(&["inspect", "/nonexistent.pb"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent"));
}

#[test]
fn inspect_lists_unsupported_ops() {
    let def = GraphDef {
        node: vec![placeholder("x"), node("y", "FancyOp", &["x"])],
        ..Default::default()
    };
    let s = rill::inspect::summarize(&def, &registry());
    assert_eq!(s.unsupported_ops, vec!["FancyOp".to_string()]);
    assert!(s.import.contains("FancyOp"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Graph::from_binary(&bytes, registry());
    }

    #[test]
    fn corrupted_fixture_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let bytes = BYTES.get_or_init(|| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/elementwise_ops/graph.pb")).unwrap());
        let mut b = bytes.clone();
        for (i, v) in flips {
            let at = i.index(b.len());
            b[at] = v;
        }
        b.truncate(cut.index(b.len() + 1));
        let _ = Graph::from_binary(&b, registry());
    }

    #[test]
    fn random_text_never_panics(text in "[a-z_{}:\" 0-9\\n]{0,200}") {
        let _ = Graph::from_text(&text, registry());
    }
}
