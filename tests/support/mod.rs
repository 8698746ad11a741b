//! What the fixture-driven tests (`tf_fixtures`, `op_cases`) share: reading manifests and
//! widening float results for comparison.

use rill::graph::{Buffer, Tensor};
use serde_json::Value;

/// A manifest's `key` object as (name, file) pairs; empty when absent.
pub fn string_map(manifest: &Value, key: &str) -> Vec<(String, String)> {
    manifest[key]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A float tensor's values as f64 (f16 and bf16 widened); `None` for other dtypes.
pub fn to_f64(t: &Tensor) -> Option<Vec<f64>> {
    Some(match t.buffer() {
        Buffer::F32(v) => v.iter().map(|&x| x as f64).collect(),
        Buffer::F64(v) => v.clone(),
        Buffer::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        Buffer::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        _ => return None,
    })
}
