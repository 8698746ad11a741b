//! Checkpoints: every variable of a session saved as one safetensors file plus a small JSON
//! manifest (step, variable names, dtypes, shapes); the last K kept; restore into a session
//! whose graph declares the same variables. Values fetched elsewhere (a cluster session)
//! are saved and loaded through the same code (`save_values`, `load_values`).
//!
//! Invariants: a checkpoint exists exactly when its manifest exists; files are written to a
//! temporary name, fsynced and renamed (data first, manifest last), so a crash at any point
//! leaves the previous checkpoint whole and loadable; restoring into a graph whose variables
//! differ in name, dtype or shape fails with a message listing each difference and changes
//! nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rill_graph::{DType, Error, Graph, Result, Shape, Tensor};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::Session;

/// One variable in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// The JSON manifest of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub step: u64,
    /// The safetensors file, relative to the manifest's folder.
    pub data: String,
    pub variables: Vec<VariableEntry>,
}

/// Saves and restores checkpoints in one folder, keeping the newest `keep`.
pub struct CheckpointManager {
    dir: PathBuf,
    keep: usize,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(
        rill_graph::Code::Unavailable,
        format!("{what} {}: {e}", path.display()),
    )
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, then
/// `before_rename` (a crash point tests can use), then rename and fsync of the folder.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = File::create(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| io_error("cannot write", &tmp, e))?;
    f.sync_all().map_err(|e| io_error("cannot sync", &tmp, e))?;
    drop(f);
    before_rename()?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("cannot rename into", path, e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn st_dtype(d: DType) -> Result<Dtype> {
    Ok(match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I8 => Dtype::I8,
        DType::I16 => Dtype::I16,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::U8 => Dtype::U8,
        DType::U16 => Dtype::U16,
        DType::U32 => Dtype::U32,
        DType::U64 => Dtype::U64,
        DType::Bool => Dtype::BOOL,
        other => {
            return Err(Error::unimplemented(format!(
                "cannot checkpoint a {other} variable"
            )))
        }
    })
}

fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    t.raw_bytes()
        .ok_or_else(|| Error::unimplemented(format!("cannot checkpoint {} values", t.dtype())))
}

/// Rebuilds a tensor from safetensors bytes through the TensorProto decoder (one place
/// knows how raw little-endian bytes become values).
fn tensor_from(dtype: DType, shape: &[usize], data: &[u8]) -> Result<Tensor> {
    let mut proto = Tensor::zeros(dtype, &[0])?.to_proto();
    proto.tensor_shape = Some(Shape::known(shape).to_proto());
    proto.tensor_content = data.to_vec();
    Tensor::from_proto(&proto)
}

/// The variables a graph declares: (resource name, dtype, declared shape).
pub fn graph_variables(graph: &Graph) -> Vec<(String, DType, Shape)> {
    let mut vars: Vec<(String, DType, Shape)> = graph
        .nodes()
        .filter(|(_, n)| matches!(n.op_name(), "VariableV2" | "Variable" | "VarHandleOp"))
        .map(|(_, n)| {
            let (dtype, shape) = rill_kernels::variable_spec(n);
            (rill_kernels::variable_key(n), dtype, shape)
        })
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.dedup_by(|a, b| a.0 == b.0);
    vars
}

impl CheckpointManager {
    /// Checkpoints in `dir` (created if missing), keeping the newest `keep` (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<CheckpointManager> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
        Ok(CheckpointManager {
            dir,
            keep: keep.max(1),
        })
    }

    fn manifest_path(&self, step: u64) -> PathBuf {
        self.dir.join(format!("ckpt-{step}.json"))
    }

    /// Saves every initialised variable of `session` as checkpoint `step`.
    pub fn save(&self, session: &Session, step: u64) -> Result<PathBuf> {
        self.save_with(session, step, || Ok(()))
    }

    /// [`CheckpointManager::save`] with a crash point just before the manifest's rename.
    pub fn save_with(
        &self,
        session: &Session,
        step: u64,
        before_commit: impl FnOnce() -> Result<()>,
    ) -> Result<PathBuf> {
        let mut values = Vec::new();
        for (name, _, _) in graph_variables(session.graph()) {
            let Ok(var) = session.resources().lookup(&name) else {
                continue;
            };
            let Ok(value) = var.read() else { continue };
            values.push((name, value));
        }
        self.save_values_with(&values, step, before_commit)
    }

    /// Saves `values` (variable name, value), e.g. fetched from a session on a cluster, as
    /// checkpoint `step`; the same files as [`CheckpointManager::save`].
    pub fn save_values(&self, values: &[(String, Tensor)], step: u64) -> Result<PathBuf> {
        self.save_values_with(values, step, || Ok(()))
    }

    /// [`CheckpointManager::save_values`] with a crash point just before the manifest's
    /// rename.
    pub fn save_values_with(
        &self,
        values: &[(String, Tensor)],
        step: u64,
        before_commit: impl FnOnce() -> Result<()>,
    ) -> Result<PathBuf> {
        let mut values: Vec<&(String, Tensor)> = values.iter().collect();
        values.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = values.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid_argument(format!(
                "variable {} appears twice in the values to checkpoint",
                w[0].0
            )));
        }
        let entries = values
            .iter()
            .map(|(name, value)| VariableEntry {
                name: name.clone(),
                dtype: value.dtype().to_string(),
                shape: value.dims().to_vec(),
            })
            .collect();
        let payload = values
            .iter()
            .map(|(name, value)| Ok((name, value, tensor_bytes(value)?)))
            .collect::<Result<Vec<_>>>()?;
        let views = payload
            .iter()
            .map(|(n, v, b)| {
                Ok((
                    n.to_string(),
                    TensorView::new(st_dtype(v.dtype())?, v.dims().to_vec(), b)
                        .map_err(st_error)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, None).map_err(st_error)?;
        let data = format!("ckpt-{step}.safetensors");
        write_atomic(&self.dir.join(&data), &bytes, || Ok(()))?;
        let manifest = Manifest {
            step,
            data,
            variables: entries,
        };
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?;
        let path = self.manifest_path(step);
        write_atomic(&path, &json, before_commit)?;
        self.prune()?;
        Ok(path)
    }

    /// Steps of the complete checkpoints in the folder, oldest first.
    pub fn steps(&self) -> Result<Vec<u64>> {
        let mut steps: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(|e| io_error("cannot list", &self.dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("ckpt-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    fn prune(&self) -> Result<()> {
        let steps = self.steps()?;
        for &step in steps.iter().take(steps.len().saturating_sub(self.keep)) {
            let _ = std::fs::remove_file(self.manifest_path(step));
            let _ = std::fs::remove_file(self.dir.join(format!("ckpt-{step}.safetensors")));
        }
        Ok(())
    }

    /// The newest checkpoint's manifest, if any.
    pub fn latest(&self) -> Result<Option<Manifest>> {
        let Some(&step) = self.steps()?.last() else {
            return Ok(None);
        };
        let path = self.manifest_path(step);
        let text = std::fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            Error::new(
                rill_graph::Code::DataLoss,
                format!("{}: bad manifest: {e}", path.display()),
            )
        })
    }

    /// Restores the newest checkpoint into `session`; returns its step, or `None` when
    /// there is no checkpoint.
    pub fn restore_latest(&self, session: &Session) -> Result<Option<u64>> {
        match self.latest()? {
            None => Ok(None),
            Some(m) => self.restore(session, &m).map(|_| Some(m.step)),
        }
    }

    /// Restores `manifest` into `session`, after checking the graph declares exactly its
    /// variables with the same dtypes and compatible shapes.
    pub fn restore(&self, session: &Session, manifest: &Manifest) -> Result<()> {
        let declared = graph_variables(session.graph());
        for ((name, value), (_, dtype, shape)) in self
            .load_values(manifest, &declared)?
            .into_iter()
            .zip(&declared)
        {
            session
                .resources()
                .variable(&name, *dtype, shape)?
                .assign(value, true)?;
        }
        Ok(())
    }

    /// The values of `manifest`'s variables in the order of `declared` (the variables of
    /// a graph, [`graph_variables`]), after checking they are exactly the checkpoint's with
    /// the same dtypes and compatible shapes: what [`CheckpointManager::restore`] assigns,
    /// for restoring elsewhere (e.g. through `Assign` ops on a cluster).
    pub fn load_values(
        &self,
        manifest: &Manifest,
        declared: &[(String, DType, Shape)],
    ) -> Result<Vec<(String, Tensor)>> {
        let saved: BTreeMap<&str, &VariableEntry> = manifest
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v))
            .collect();
        let mut problems = Vec::new();
        for (name, dtype, shape) in declared {
            match saved.get(name.as_str()) {
                None => problems.push(format!("{name}: in the graph but not in the checkpoint")),
                Some(v) if v.dtype != dtype.to_string() => problems.push(format!(
                    "{name}: dtype {} in the checkpoint, {dtype} in the graph",
                    v.dtype
                )),
                Some(v) if !shape.is_compatible_with(&Shape::known(&v.shape)) => {
                    problems.push(format!(
                        "{name}: shape {} in the checkpoint, {shape} in the graph",
                        Shape::known(&v.shape)
                    ))
                }
                Some(_) => {}
            }
        }
        for v in &manifest.variables {
            if !declared.iter().any(|(n, _, _)| *n == v.name) {
                problems.push(format!(
                    "{}: in the checkpoint but not in the graph",
                    v.name
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::invalid_argument(format!(
                "checkpoint step {} does not match the graph's variables:\n  {}",
                manifest.step,
                problems.join("\n  ")
            )));
        }
        let path = self.dir.join(&manifest.data);
        let bytes = std::fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(st_error)?;
        declared
            .iter()
            .map(|(name, dtype, _)| {
                let view = st.tensor(name).map_err(st_error)?;
                Ok((
                    name.clone(),
                    tensor_from(*dtype, view.shape(), view.data())?,
                ))
            })
            .collect()
    }
}

fn st_error(e: safetensors::SafeTensorError) -> Error {
    Error::new(rill_graph::Code::DataLoss, format!("safetensors: {e}"))
}
