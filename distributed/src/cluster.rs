//! The cluster spec: which tasks a distributed Rill cluster has and where each listens.
//!
//! A cluster is a set of jobs (`chief`, `worker`, `ps`, ...), each a set of tasks numbered
//! from 0, each task serving gRPC on a `host:port` address. This module owns
//! - [`TaskName`]: one task, written `/job:ps/replica:0/task:1` (TensorFlow's form) or
//!   `ps:1` (short form);
//! - [`ClusterSpec`]: jobs -> task index -> address, read from and written to TensorFlow's
//!   JSON cluster dict, where a job's tasks are a list (`["a:1", "b:2"]`) or a sparse dict
//!   (`{"0": "a:1", "3": "b:2"}`);
//! - [`TfConfig`]: the `TF_CONFIG` environment variable that TensorFlow, Kubeflow's TFJob
//!   and `rill launch` set for every process (the cluster plus, for a server, its own task).
//!
//! Invariants, checked on every way in (`add_task`, `from_json`, `TfConfig::parse`), so a
//! `ClusterSpec` that exists is valid: every job name matches TensorFlow's
//! `[a-zA-Z][_a-zA-Z0-9]*`; every address is `host:port` with a numeric port (an IPv6 host
//! in brackets, `[::1]:2222`); a task index appears at most once per job. Bad input is an
//! `InvalidArgument` error naming the job or task, never a panic. Listing order is fixed:
//! jobs `chief`, `master`, `worker`, `ps`, then any others alphabetically; tasks by index.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rill_graph::{Error, Result};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One task of a cluster: a job name and the task's index in that job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskName {
    pub job: String,
    pub task: usize,
}

impl TaskName {
    pub fn new(job: impl Into<String>, task: usize) -> TaskName {
        TaskName {
            job: job.into(),
            task,
        }
    }

    /// The short form, `ps:0`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.job, self.task)
    }

    /// Parses `/job:ps/replica:0/task:1`, `/job:ps/task:1` or `ps:1`.
    pub fn parse(text: &str) -> Result<TaskName> {
        let bad = |why: String| {
            Error::invalid_argument(format!(
                "bad task name '{text}': {why} (expected /job:NAME/replica:0/task:N, \
                 /job:NAME/task:N or NAME:N)"
            ))
        };
        let (job, task) = if let Some(rest) = text.strip_prefix('/') {
            let (mut job, mut replica, mut task) = (None, None, None);
            for part in rest.split('/') {
                let (key, value) = part
                    .split_once(':')
                    .ok_or_else(|| bad(format!("'{part}' is not key:value")))?;
                let slot = match key {
                    "job" => &mut job,
                    "replica" => &mut replica,
                    "task" => &mut task,
                    _ => return Err(bad(format!("unknown field '{key}'"))),
                };
                if slot.replace(value).is_some() {
                    return Err(bad(format!("'{key}' appears twice")));
                }
            }
            if let Some(replica) = replica {
                if replica != "0" {
                    return Err(bad(format!(
                        "replica '{replica}' is not supported (every task is replica 0)"
                    )));
                }
            }
            (
                job.ok_or_else(|| bad("no job".into()))?,
                task.ok_or_else(|| bad("no task".into()))?,
            )
        } else {
            text.rsplit_once(':')
                .ok_or_else(|| bad("no ':' before the task index".into()))?
        };
        check_job_name(job).map_err(|e| bad(e.message))?;
        let task = parse_index(task)
            .ok_or_else(|| bad(format!("task index '{task}' is not a non-negative integer")))?;
        Ok(TaskName::new(job, task))
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/job:{}/replica:0/task:{}", self.job, self.task)
    }
}

impl FromStr for TaskName {
    type Err = Error;
    fn from_str(text: &str) -> Result<TaskName> {
        TaskName::parse(text)
    }
}

/// The cluster: job name -> task index -> address (`host:port`). Always valid (see the
/// module invariants).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSpec {
    jobs: BTreeMap<String, BTreeMap<usize, String>>,
}

impl ClusterSpec {
    /// An empty cluster (no jobs).
    pub fn new() -> ClusterSpec {
        ClusterSpec::default()
    }

    /// Adds task `index` of `job` at `address`, creating the job if needed. Fails on a bad
    /// job name or address, or when the task is already there.
    pub fn add_task(&mut self, job: &str, index: usize, address: &str) -> Result<()> {
        check_job_name(job)?;
        let name = TaskName::new(job, index);
        check_address(&name, address)?;
        let tasks = self.jobs.entry(job.to_string()).or_default();
        if let Some(old) = tasks.get(&index) {
            return Err(Error::invalid_argument(format!(
                "task {name} appears twice in the cluster spec (at '{old}' and '{address}')"
            )));
        }
        tasks.insert(index, address.to_string());
        Ok(())
    }

    /// Parses TensorFlow's cluster dict, `{"ps": ["h:1"], "worker": {"0": "h:2"}}`.
    pub fn from_json(text: &str) -> Result<ClusterSpec> {
        ClusterSpec::from_value(&parse_json(text, "cluster spec")?)
    }

    /// Reads a cluster dict (as [`ClusterSpec::from_json`]) from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ClusterSpec> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = format!("cannot read cluster spec {}: {e}", path.display());
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(message)
            } else {
                Error::invalid_argument(message)
            }
        })?;
        ClusterSpec::from_json(&text)
            .map_err(|e| Error::new(e.code, format!("{}: {}", path.display(), e.message)))
    }

    fn from_value(value: &Json) -> Result<ClusterSpec> {
        let Json::Object(jobs) = value else {
            return Err(Error::invalid_argument(format!(
                "a cluster spec must be a JSON object mapping job names to task addresses, \
                 got {}",
                value.kind()
            )));
        };
        let mut spec = ClusterSpec::new();
        for (job, tasks) in jobs {
            check_job_name(job)?;
            if spec.jobs.contains_key(job) {
                return Err(Error::invalid_argument(format!(
                    "job '{job}' appears twice in the cluster spec"
                )));
            }
            spec.jobs.insert(job.clone(), BTreeMap::new());
            let entries: Vec<(usize, &Json)> = match tasks {
                Json::Array(items) => items.iter().enumerate().collect(),
                Json::Object(items) => items
                    .iter()
                    .map(|(key, address)| {
                        let index = parse_index(key).ok_or_else(|| {
                            Error::invalid_argument(format!(
                                "job '{job}': task index '{key}' is not a non-negative integer"
                            ))
                        })?;
                        Ok((index, address))
                    })
                    .collect::<Result<_>>()?,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "job '{job}' must be a list of addresses or a dict from task index \
                         to address, got {}",
                        other.kind()
                    )))
                }
            };
            for (index, address) in entries {
                let Json::String(address) = address else {
                    return Err(Error::invalid_argument(format!(
                        "task {}: the address must be a string \"host:port\", got {}",
                        TaskName::new(job.as_str(), index),
                        address.kind()
                    )));
                };
                spec.add_task(job, index, address)?;
            }
        }
        Ok(spec)
    }

    /// TensorFlow's cluster dict, compact; a job whose tasks are 0..n is written as a list,
    /// any other as a dict. Jobs in [`ClusterSpec::jobs`] order.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, job) in self.jobs().into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let tasks = &self.jobs[job];
            let dense = tasks.keys().enumerate().all(|(i, &index)| i == index);
            out.push_str(&quote(job));
            out.push(':');
            out.push(if dense { '[' } else { '{' });
            for (i, (index, address)) in tasks.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !dense {
                    out.push_str(&quote(&index.to_string()));
                    out.push(':');
                }
                out.push_str(&quote(address));
            }
            out.push(if dense { ']' } else { '}' });
        }
        out.push('}');
        out
    }

    /// The address of `task`; NotFound naming the task when the cluster has no such task.
    pub fn address(&self, task: &TaskName) -> Result<&str> {
        match self.jobs.get(&task.job).and_then(|t| t.get(&task.task)) {
            Some(address) => Ok(address),
            None => Err(Error::not_found(self.missing_task(task))),
        }
    }

    /// Whether the cluster has `task`.
    pub fn contains(&self, task: &TaskName) -> bool {
        self.address(task).is_ok()
    }

    /// Every task: jobs in [`ClusterSpec::jobs`] order, tasks by index.
    pub fn tasks(&self) -> Vec<TaskName> {
        self.jobs()
            .into_iter()
            .flat_map(|job| {
                self.jobs[job]
                    .keys()
                    .map(move |&index| TaskName::new(job, index))
            })
            .collect()
    }

    /// The job names: `chief`, `master`, `worker`, `ps`, then any others alphabetically.
    pub fn jobs(&self) -> Vec<&str> {
        let mut jobs: Vec<&str> = self.jobs.keys().map(String::as_str).collect();
        jobs.sort_by_key(|job| (job_rank(job), *job));
        jobs
    }

    /// How many tasks `job` has (0 for a job not in the cluster).
    pub fn num_tasks(&self, job: &str) -> usize {
        self.jobs.get(job).map_or(0, BTreeMap::len)
    }

    /// Whether the cluster has no task at all.
    pub fn is_empty(&self) -> bool {
        self.jobs.values().all(BTreeMap::is_empty)
    }

    fn missing_task(&self, task: &TaskName) -> String {
        match self.jobs.get(&task.job) {
            None => format!(
                "task {task} is not in the cluster: no job '{}' (jobs: {})",
                task.job,
                if self.jobs.is_empty() {
                    "none".to_string()
                } else {
                    self.jobs().join(", ")
                }
            ),
            Some(tasks) => {
                let mut indices: Vec<String> =
                    tasks.keys().take(16).map(|i| i.to_string()).collect();
                if tasks.len() > 16 {
                    indices.push("...".into());
                }
                format!(
                    "task {task} is not in the cluster: job '{}' has {} task(s) ({})",
                    task.job,
                    tasks.len(),
                    indices.join(", ")
                )
            }
        }
    }
}

/// The `TF_CONFIG` environment variable: the cluster and, for a server, its own task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TfConfig {
    pub cluster: ClusterSpec,
    /// The task this process is; `None` for a client.
    pub task: Option<TaskName>,
}

impl TfConfig {
    /// Parses TensorFlow's / Kubeflow TFJob's form:
    /// `{"cluster": {...}, "task": {"type": "worker", "index": 0}, "environment": "cloud"}`.
    /// Other top-level fields are ignored; `task` may be missing, `null` or `{}`; `index`
    /// may be a number or a numeric string (0 when missing); the task must be in the cluster.
    pub fn parse(text: &str) -> Result<TfConfig> {
        let value = parse_json(text, "TF_CONFIG")?;
        let Json::Object(fields) = &value else {
            return Err(Error::invalid_argument(format!(
                "TF_CONFIG must be a JSON object {{\"cluster\": ..., \"task\": ...}}, got {}",
                value.kind()
            )));
        };
        let field = |name: &str| -> Result<Option<&Json>> {
            let mut found = fields.iter().filter(|(key, _)| key == name).map(|(_, v)| v);
            let first = found.next();
            if found.next().is_some() {
                return Err(Error::invalid_argument(format!(
                    "TF_CONFIG has '{name}' twice"
                )));
            }
            Ok(first.filter(|v| !matches!(v, Json::Null)))
        };
        let cluster = match field("cluster")? {
            Some(cluster) => ClusterSpec::from_value(cluster).map_err(|e| {
                Error::invalid_argument(format!("TF_CONFIG cluster: {}", e.message))
            })?,
            None => ClusterSpec::new(),
        };
        let task = match field("task")? {
            Some(task) => parse_task(task)?,
            None => None,
        };
        if let Some(task) = &task {
            if !cluster.contains(task) {
                return Err(Error::invalid_argument(format!(
                    "TF_CONFIG: {}",
                    cluster.missing_task(task)
                )));
            }
        }
        Ok(TfConfig { cluster, task })
    }

    /// Reads the `TF_CONFIG` environment variable; `None` when it is unset or blank.
    pub fn from_env() -> Result<Option<TfConfig>> {
        TfConfig::from_env_value(std::env::var("TF_CONFIG"))
    }

    fn from_env_value(
        value: std::result::Result<String, std::env::VarError>,
    ) -> Result<Option<TfConfig>> {
        match value {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Error::invalid_argument("TF_CONFIG is not valid UTF-8"))
            }
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => TfConfig::parse(&text).map(Some),
        }
    }

    /// `{"cluster": {...}, "task": {"type": "worker", "index": 0}}` (no `task` for a client).
    pub fn to_json(&self) -> String {
        match &self.task {
            Some(task) => format!(
                "{{\"cluster\":{},\"task\":{{\"type\":{},\"index\":{}}}}}",
                self.cluster.to_json(),
                quote(&task.job),
                task.task
            ),
            None => format!("{{\"cluster\":{}}}", self.cluster.to_json()),
        }
    }
}

fn parse_task(value: &Json) -> Result<Option<TaskName>> {
    let bad = |why: String| Error::invalid_argument(format!("TF_CONFIG task: {why}"));
    let Json::Object(fields) = value else {
        return Err(bad(format!(
            "must be an object {{\"type\": JOB, \"index\": N}}, got {}",
            value.kind()
        )));
    };
    let (mut job, mut index) = (None, None);
    for (key, value) in fields {
        let slot = match key.as_str() {
            "type" => &mut job,
            "index" => &mut index,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(bad(format!("'{key}' appears twice")));
        }
    }
    let index = match index {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => Some(n.as_u64().and_then(|n| usize::try_from(n).ok())),
        Some(Json::String(s)) => Some(parse_index(s.trim())),
        Some(other) => return Err(bad(format!("index must be a number, got {}", other.kind()))),
    };
    let job = match job {
        None | Some(Json::Null) => None,
        Some(Json::String(job)) => Some(job),
        Some(other) => return Err(bad(format!("type must be a string, got {}", other.kind()))),
    };
    match (job, index) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(bad("has an index but no type".into())),
        (Some(_), Some(None)) => Err(bad("index is not a non-negative integer".into())),
        (Some(job), index) => {
            check_job_name(job).map_err(|e| bad(e.message))?;
            Ok(Some(TaskName::new(
                job.as_str(),
                index.flatten().unwrap_or(0),
            )))
        }
    }
}

/// Jobs listed first, in this order; every other job after them, alphabetically.
fn job_rank(job: &str) -> usize {
    ["chief", "master", "worker", "ps"]
        .iter()
        .position(|&known| known == job)
        .unwrap_or(4)
}

/// TensorFlow's job name rule, `[a-zA-Z][_a-zA-Z0-9]*`.
fn check_job_name(job: &str) -> Result<()> {
    let mut chars = job.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "job name '{job}' is invalid: it must match [a-zA-Z][_a-zA-Z0-9]*"
        )))
    }
}

/// `host:port` with a numeric port; an IPv6 host in brackets.
fn check_address(task: &TaskName, address: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid_argument(format!(
            "task {task}: address '{address}' is not host:port: {why}"
        ))
    };
    if address.contains("://") {
        return Err(bad("leave out the scheme (e.g. grpc://)"));
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace"));
    }
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, rest) = rest
            .split_once(']')
            .ok_or_else(|| bad("no ']' after the IPv6 host"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| bad("missing port after the IPv6 host"))?;
        let ipv6 = |c: char| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '%');
        if host.is_empty() || !host.chars().all(ipv6) {
            return Err(bad("bad IPv6 host"));
        }
        (host, port)
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("missing port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 host must be in brackets, e.g. [::1]:2222"));
        }
        let hostname = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if !host.chars().all(hostname) {
            return Err(bad("bad host name"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if port.is_empty() {
        return Err(bad("missing port"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
        return Err(bad("the port must be a number from 0 to 65535"));
    }
    Ok(())
}

/// A task index: decimal digits only.
fn parse_index(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn parse_json(text: &str, what: &str) -> Result<Json> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid_argument(format!("{what} is not valid JSON: {e}")))
}

/// A parsed JSON value that keeps object keys in order, duplicates included (so a repeated
/// job or task index is reported instead of silently replaced, as `serde_json::Value` would).
enum Json {
    Null,
    Bool,
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
