//! What the fixture-driven tests (`tf_fixtures`, `op_cases`) share: reading manifests.

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
