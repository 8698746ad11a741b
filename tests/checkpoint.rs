//! Checkpoints on a real TensorFlow training graph: train, save, restore into a fresh
//! session and get the identical next step; a crash before the commit leaves the previous
//! checkpoint loadable; a graph with different variables is refused with the differences.

use std::path::{Path, PathBuf};

use rill::graph::Graph;
use rill::npy::read_npy;
use rill::ops::registry;
use rill::prelude::*;
use rill::runtime::CheckpointManager;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf/tf1_train_sgd")
}

fn session() -> Session {
    let g = Graph::load(fixture().join("graph.pb"), registry()).unwrap();
    Session::new(g, SessionOptions::default()).unwrap()
}

fn feeds() -> Vec<(&'static str, Tensor)> {
    vec![
        ("x:0", read_npy(&fixture().join("x.npy")).unwrap()),
        ("y:0", read_npy(&fixture().join("y.npy")).unwrap()),
    ]
}

fn step(s: &Session) -> f32 {
    let out = s.run(&feeds(), &["loss:0"], &["train"]).unwrap();
    out[0].scalar_value::<f32>().unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rill-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn restore_gives_the_identical_next_step() {
    let dir = tempdir("restore");
    let ckpt = CheckpointManager::new(&dir, 2).unwrap();
    let a = session();
    a.run(&[], &[], &["init"]).unwrap();
    for i in 0..3 {
        step(&a);
        ckpt.save(&a, i + 1).unwrap();
    }
    // Only the newest two are kept.
    assert_eq!(ckpt.steps().unwrap(), vec![2, 3]);
    let b = session();
    assert_eq!(ckpt.restore_latest(&b).unwrap(), Some(3));
    let (la, lb) = (step(&a), step(&b));
    assert_eq!(la.to_bits(), lb.to_bits(), "{la} vs {lb}");
    let wa = a.run(&[], &["w1:0"], &[]).unwrap();
    let wb = b.run(&[], &["w1:0"], &[]).unwrap();
    assert_eq!(wa, wb);
}

#[test]
fn a_crash_before_commit_leaves_the_previous_checkpoint() {
    let dir = tempdir("crash");
    let ckpt = CheckpointManager::new(&dir, 3).unwrap();
    let a = session();
    a.run(&[], &[], &["init"]).unwrap();
    step(&a);
    ckpt.save(&a, 1).unwrap();
    let w_saved = a.run(&[], &["w1:0"], &[]).unwrap();
    step(&a);
    let crash = ckpt.save_with(&a, 2, || {
        Err(rill::graph::Error::new(Code::Aborted, "simulated crash"))
    });
    assert!(crash.is_err());
    assert_eq!(ckpt.steps().unwrap(), vec![1]);
    let b = session();
    assert_eq!(ckpt.restore_latest(&b).unwrap(), Some(1));
    assert_eq!(b.run(&[], &["w1:0"], &[]).unwrap(), w_saved);
}

#[test]
fn restoring_into_different_variables_lists_them() {
    let dir = tempdir("mismatch");
    let ckpt = CheckpointManager::new(&dir, 1).unwrap();
    let a = session();
    a.run(&[], &[], &["init"]).unwrap();
    ckpt.save(&a, 7).unwrap();
    // A graph with one variable renamed and one reshaped.
    let b = Builder::new();
    let w1 = b.variable("w1", DType::F32, Shape::known(&[5, 9])).unwrap();
    let _ = w1;
    b.variable("other", DType::F32, Shape::known(&[2])).unwrap();
    let s = Session::new(b.into_graph(), SessionOptions::default()).unwrap();
    let e = ckpt.restore_latest(&s).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.code, Code::InvalidArgument);
    for part in [
        "w1: shape [5,8]",
        "other: in the graph but not",
        "b1: in the checkpoint but not",
    ] {
        assert!(text.contains(part), "'{part}' missing from: {text}");
    }
    // Nothing was assigned.
    assert!(s.run(&[], &["w1:0"], &[]).is_err());
}
