//! `rill train` end to end: a short run on the digits reaches a sane accuracy and writes
//! checkpoints, TensorBoard events and a frozen model TensorFlow-style tools can load; a
//! `--resume` run continues from the saved step; mismatched resumes and missing data fail
//! with clear errors; the CLI prints its final line.

#[path = "support/training.rs"]
mod training;
use std::path::PathBuf;
use training::{config, out_dir};

use anyhow::Result;
use rill::prelude::*;
use rill::train::{train, ModelKind, OptimizerKind, TrainConfig};

#[test]
fn short_run_then_resume() -> Result<()> {
    let dir = out_dir("resume");
    let first = train(&config(&dir, 3))?;
    // 1,797 images, 20% held out: 1,437 training images, 45 batches of 32 per epoch.
    let steps_per_epoch = 45;
    assert_eq!(first.start_epoch, 0);
    assert_eq!(first.epochs, 3);
    assert_eq!(first.step, 3 * steps_per_epoch);
    assert!(
        first.test_accuracy >= 0.9,
        "accuracy {} after 3 epochs",
        first.test_accuracy
    );

    let ckpt = dir.join("checkpoints");
    for step in [1, 2, 3].map(|e| e * steps_per_epoch) {
        assert!(ckpt.join(format!("ckpt-{step}.json")).is_file());
        assert!(ckpt.join(format!("ckpt-{step}.safetensors")).is_file());
    }
    assert_eq!(first.checkpoint, Some(ckpt.join("ckpt-135.json")));
    let events = rill::tensorboard::read_events(&first.events_path)?;
    assert!(first
        .events_path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("events.out.tfevents.")));
    let scalars: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.what {
            Some(rill::tensorboard::What::Summary(s)) => Some(s),
            _ => None,
        })
        .flat_map(|s| s.value.iter().map(|v| v.tag.as_str()))
        .collect();
    assert_eq!(scalars.iter().filter(|t| **t == "train/loss").count(), 135);
    assert_eq!(
        scalars
            .iter()
            .filter(|t| **t == "epoch/test_accuracy")
            .count(),
        3
    );

    // The frozen model loads and classifies the test images as well as training reported.
    let model = Graph::load(&first.model_path, rill::ops::registry())?;
    let summary = rill::inspect::summarize(&model.to_graph_def(), &rill::ops::registry());
    assert!(format!("{summary}").contains("unsupported ops: none"));
    let data = rill::data::digits::load(&rill::data::digits::default_path())?;
    let (_, test) = data.split(rill::train::TEST_FRACTION, 42)?;
    let batch = test.as_batch()?;
    let session = Session::new(model, SessionOptions::default())?;
    let out = session.run(&[("x:0", batch.images)], &["predictions:0"], &[])?;
    let predicted = out[0].as_slice::<i64>()?;
    let labels = batch.labels.as_slice::<i64>()?;
    let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    let accuracy = correct as f32 / labels.len() as f32;
    assert!((accuracy - first.test_accuracy).abs() < 1e-6);

    // --resume continues at epoch 4 from step 135.
    let resumed = train(&TrainConfig {
        resume: true,
        ..config(&dir, 4)
    })?;
    assert_eq!(resumed.start_epoch, 3);
    assert_eq!(resumed.epochs, 4);
    assert_eq!(resumed.step, 4 * steps_per_epoch);
    assert!(resumed.test_accuracy >= 0.9);
    assert!(ckpt.join("ckpt-180.json").is_file());
    assert!(!ckpt.join("ckpt-45.json").exists(), "keeps the last 3");
    assert_ne!(resumed.events_path, first.events_path);
    let restart = rill::tensorboard::read_events(&resumed.events_path)?;
    assert!(restart.iter().any(|e| e.step == 135
        && matches!(&e.what, Some(rill::tensorboard::What::SessionLog(l))
            if l.status == rill::tensorboard::SESSION_START)));

    // Resuming with other settings is refused; a fresh run replaces the old checkpoints.
    let err = train(&TrainConfig {
        resume: true,
        seed: 7,
        ..config(&dir, 5)
    })
    .unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    assert!(err.message.contains("--seed 42"), "{}", err.message);
    let fresh = train(&TrainConfig {
        optimizer: OptimizerKind::Momentum,
        ..config(&dir, 1)
    })?;
    assert_eq!((fresh.start_epoch, fresh.step), (0, 45));
    assert!(!ckpt.join("ckpt-180.json").exists());
    Ok(())
}

#[test]
fn convnet_trains() -> Result<()> {
    let dir = out_dir("cnn");
    let report = train(&TrainConfig {
        model: ModelKind::Cnn,
        ..config(&dir, 2)
    })?;
    assert!(
        report.test_accuracy >= 0.85,
        "cnn accuracy {} after 2 epochs",
        report.test_accuracy
    );
    assert!(report.model_path.is_file());
    Ok(())
}

#[test]
fn bad_inputs_are_errors() {
    let dir = out_dir("errors");
    let missing = train(&TrainConfig {
        data: PathBuf::from("/nonexistent/digits.csv.gz"),
        ..config(&dir, 1)
    })
    .unwrap_err();
    assert_eq!(missing.code, Code::NotFound);
    let zero_batch = train(&TrainConfig {
        batch_size: 0,
        ..config(&dir, 1)
    })
    .unwrap_err();
    assert_eq!(zero_batch.code, Code::InvalidArgument);
    let bad_lr = train(&TrainConfig {
        learning_rate: Some(-1.0),
        ..config(&dir, 1)
    })
    .unwrap_err();
    assert!(bad_lr.message.contains("--lr"));
}

#[test]
fn cli_prints_the_final_line() -> Result<()> {
    let dir = out_dir("cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["train", "--epochs", "1", "--out-dir"])
        .arg(&dir)
        .env("CI", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("test accuracy 0.") && last.contains("after 1 epochs ("),
        "{stdout}"
    );
    assert!(dir.join("model.pb").is_file());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["train", "--optimizer", "nope"])
        .output()?;
    assert!(!bad.status.success());
    Ok(())
}
