//! The `rill` binary end to end: `run` and `bench` on TensorFlow's CNN, and the errors a
//! user gets for a truncated `.npy` or a feed of the wrong shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .output()
        .unwrap()
}

fn cnn(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tf/cnn_inference")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// The stdout of a command that must have succeeded (its stderr in the failure message).
fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that `dir/probs_0.npy` holds TensorFlow's CNN probabilities.
fn assert_probs_written(dir: &Path) {
    let written = rill::npy::read_npy(&dir.join("probs_0.npy")).unwrap();
    let expected = rill::npy::read_npy(Path::new(&cnn("probs.npy"))).unwrap();
    let (a, e) = (
        written.as_slice::<f32>().unwrap(),
        expected.as_slice::<f32>().unwrap(),
    );
    assert_eq!(a.len(), e.len());
    assert!(a.iter().zip(e).all(|(a, e)| (a - e).abs() < 1e-4));
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rill-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn run_prints_and_writes_fetches() {
    let out_dir = tempdir("run");
    let feed = format!("x:0={}", cnn("x.npy"));
    let out = rill(&[
        "run",
        &cnn("graph.pb"),
        "--feed",
        &feed,
        "--fetch",
        "probs:0",
        "--fetch",
        "pool1:0",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("probs:0: float [4,10]"), "{stdout}");
    assert_probs_written(&out_dir);
}

#[test]
fn bench_prints_latency_and_op_profile() {
    let feed = format!("x:0={}", cnn("x.npy"));
    let out = rill(&[
        "bench",
        &cnn("graph.pb"),
        "--feed",
        &feed,
        "--fetch",
        "probs:0",
        "--iters",
        "5",
    ]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("latency over 5 runs: min"), "{stdout}");
    // The optimised step runs the convolutions fused with their bias and ReLU.
    assert!(stdout.contains("(_FusedConv2D)"), "{stdout}");
}

#[test]
fn truncated_npy_is_a_clear_error() {
    let dir = tempdir("truncated");
    let bytes = std::fs::read(cnn("x.npy")).unwrap();
    let bad = dir.join("x.npy");
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    let feed = format!("x:0={}", bad.display());
    let out = rill(&[
        "run",
        &cnn("graph.pb"),
        "--feed",
        &feed,
        "--fetch",
        "probs:0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("truncated") && stderr.contains("x.npy"),
        "{stderr}"
    );
}

#[test]
fn wrong_shape_feed_is_a_clear_error() {
    let dir = tempdir("shape");
    let t = rill::graph::Tensor::new(&[2, 5], vec![0.5f32; 10]).unwrap();
    let bad = dir.join("x.npy");
    rill::npy::write_npy(&bad, &t).unwrap();
    let feed = format!("x:0={}", bad.display());
    let out = rill(&[
        "run",
        &cnn("graph.pb"),
        "--feed",
        &feed,
        "--fetch",
        "probs:0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("[2,5]") && stderr.contains("[?,22,18,3]"),
        "{stderr}"
    );
    let out = rill(&["run", &cnn("graph.pb"), "--fetch", "probs:0"]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("must feed a value for placeholder tensor 'x'"));
}

#[test]
fn inspect_shows_passes_and_the_memory_plan() {
    let graph = cnn("graph.pb");
    let out = rill(&[
        "inspect",
        &graph,
        "--passes",
        "--memory",
        "--shape",
        "x:0=4,22,18,3",
        "--fetch",
        "probs:0",
    ]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("fuse/fuse_contraction"), "{stdout}");
    assert!(stdout.contains("_FusedConv2D"), "{stdout}");
    for line in ["planned peak", "naive sum", "lower bound"] {
        assert!(stdout.contains(line), "{stdout}");
    }
    // A placeholder of unknown batch needs its dims.
    let out = rill(&["inspect", &graph, "--memory"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shape x:0="));
}

#[test]
fn dumped_graphs_load_back() {
    let dir = tempdir("dump");
    let feed = format!("x:0={}", cnn("x.npy"));
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args([
            "run",
            &cnn("graph.pb"),
            "--feed",
            &feed,
            "--fetch",
            "probs:0",
        ])
        .env("RILL_DUMP_GRAPHS", &dir)
        .output()
        .unwrap();
    succeeded(&out);
    let mut dumps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dumps.sort();
    assert!(dumps.len() >= 3, "{dumps:?}");
    assert!(dumps[0].ends_with("000_input.pbtxt"));
    for d in &dumps {
        let g = rill::graph::Graph::load(d, rill::ops::registry()).unwrap();
        assert!(!g.is_empty());
    }
    let last = rill::graph::Graph::load(dumps.last().unwrap(), rill::ops::registry()).unwrap();
    assert!(last.nodes().any(|(_, n)| n.op_name() == "_FusedConv2D"));
}

#[test]
fn run_and_inspect_split_across_four_devices() {
    let dir = tempdir("devices");
    let feed = format!("x:0={}", cnn("x.npy"));
    let out = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args([
            "run",
            &cnn("graph.pb"),
            "--feed",
            &feed,
            "--fetch",
            "probs:0",
        ])
        .args(["--devices", "cpu:4", "--placement", "spread"])
        .args(["--out", dir.to_str().unwrap()])
        .env("RILL_DUMP_GRAPHS", &dir)
        .output()
        .unwrap();
    succeeded(&out);
    assert_probs_written(&dir);
    let partitions: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("partition_"))
        .collect();
    assert!(partitions.len() >= 2, "{partitions:?}");
    for p in &partitions {
        let g = rill::graph::Graph::load(p, rill::ops::registry()).unwrap();
        assert!(g
            .nodes()
            .any(|(_, n)| n.op_name().starts_with("_Send") || n.op_name().starts_with("_Recv")));
    }

    let out = rill(&[
        "inspect",
        &cnn("graph.pb"),
        "--devices",
        "cpu:4",
        "--placement",
        "spread",
        "--partition",
        "--shape",
        "x:0=4,22,18,3",
    ]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("on 4 CPU device(s)"), "{stdout}");
    assert!(stdout.contains("cut edges:"), "{stdout}");
    assert!(
        stdout.contains("bytes crossing devices per step: "),
        "{stdout}"
    );

    let out = rill(&[
        "run",
        &cnn("graph.pb"),
        "--fetch",
        "probs:0",
        "--devices",
        "gpu:1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must look like cpu:4"));
}
