//! What the training tests share: a fresh output folder per test and a quiet config.

use std::path::{Path, PathBuf};

use rill::train::TrainConfig;

/// An empty folder for test `name` under cargo's per-target temp dir.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("train-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The default training config for `epochs`, writing to `dir`, without progress output.
pub fn config(dir: &Path, epochs: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        out_dir: dir.to_path_buf(),
        progress: false,
        verbose: false,
        ..TrainConfig::default()
    }
}
