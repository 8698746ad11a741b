//! Per-op cases with expected values computed in TensorFlow (`tools/gen_op_cases.py`
//! writes them into `tests/fixtures/ops/<case>/`; the format is in that folder's README).
//!
//! One test runs every case with the default (optimised) session: it loads `graph.pb`,
//! feeds the `.npy` inputs, and compares every fetch with TensorFlow's value (shape and
//! dtype exactly; floats with `numpy.allclose`'s rule, NaN matching NaN; f16/bf16 after
//! widening; integers and bools exactly), or, for `expect_error` cases, checks that loading
//! or running fails with that gRPC code. It prints one line per failure and
//! `N passed, M failed`, and fails when M > 0.
//!
//! Cases named in `tests/fixtures/ops/known_failures.txt` (one per line, `# reason` after
//! it) are reported as known failures and do not fail the test; a known failure that
//! passes is reported as such so the list can be trimmed. `RILL_OP_CASE=substring` runs
//! only the cases whose name contains the substring.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::bf16;
use rill::graph::{Code, DType, Graph, Tensor};
use rill::npy::read_npy;
use rill::ops::registry;
use rill::prelude::*;
use serde_json::Value;
use support::{string_map, to_f64};

mod support;

fn ops_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ops")
}

/// The dtype named by TensorFlow's Python name (`tf.DType.name`).
fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "float32" => DType::F32,
        "float64" => DType::F64,
        "float16" => DType::F16,
        "bfloat16" => DType::BF16,
        "int8" => DType::I8,
        "int16" => DType::I16,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "uint8" => DType::U8,
        "uint16" => DType::U16,
        "uint32" => DType::U32,
        "uint64" => DType::U64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

fn code_of(name: &str) -> Option<Code> {
    Some(match name {
        "Cancelled" => Code::Cancelled,
        "Unknown" => Code::Unknown,
        "InvalidArgument" => Code::InvalidArgument,
        "DeadlineExceeded" => Code::DeadlineExceeded,
        "NotFound" => Code::NotFound,
        "AlreadyExists" => Code::AlreadyExists,
        "PermissionDenied" => Code::PermissionDenied,
        "ResourceExhausted" => Code::ResourceExhausted,
        "FailedPrecondition" => Code::FailedPrecondition,
        "Aborted" => Code::Aborted,
        "OutOfRange" => Code::OutOfRange,
        "Unimplemented" => Code::Unimplemented,
        "Internal" => Code::Internal,
        "Unavailable" => Code::Unavailable,
        "DataLoss" => Code::DataLoss,
        "Unauthenticated" => Code::Unauthenticated,
        _ => return None,
    })
}

/// bfloat16 arrays are stored as float32 `.npy` (NumPy has no bfloat16): narrow them.
fn to_bf16(t: Tensor) -> Result<Tensor, String> {
    let values = to_f64(&t).ok_or("bfloat16 data must be stored as float32")?;
    Tensor::new(
        t.dims(),
        values
            .iter()
            .map(|&x| bf16::from_f64(x))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| e.to_string())
}

fn compare(
    name: &str,
    actual: &Tensor,
    expected: &Tensor,
    dtype: Option<DType>,
    rtol: f64,
    atol: f64,
) -> Result<(), String> {
    let want_dtype = dtype.unwrap_or(expected.dtype());
    if actual.dtype() != want_dtype {
        return Err(format!(
            "{name}: dtype {} expected {}",
            actual.dtype(),
            want_dtype
        ));
    }
    if actual.dims() != expected.dims() {
        return Err(format!(
            "{name}: shape {} expected {}",
            actual.shape(),
            expected.shape()
        ));
    }
    let actual = actual.clone().detach();
    match (to_f64(&actual), to_f64(expected)) {
        (Some(a), Some(e)) => {
            let mut bad = 0;
            let mut worst: Option<(f64, usize)> = None;
            for (i, (&x, &y)) in a.iter().zip(&e).enumerate() {
                let ok =
                    x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= atol + rtol * y.abs();
                if !ok {
                    bad += 1;
                    let err = (x - y).abs();
                    if worst.is_none_or(|(w, _)| err > w || err.is_nan()) {
                        worst = Some((err, i));
                    }
                }
            }
            if let Some((err, i)) = worst {
                return Err(format!(
                    "{name}: {bad} of {} values off, max abs error {err:.3e} at {i} (got {}, expected {})",
                    a.len(),
                    a[i],
                    e[i]
                ));
            }
            Ok(())
        }
        (None, None) => {
            if actual != *expected {
                return Err(format!(
                    "{name}: values differ (got {actual:?}, expected {expected:?})"
                ));
            }
            Ok(())
        }
        _ => Err(format!(
            "{name}: dtype {} cannot be compared with stored {}",
            actual.dtype(),
            expected.dtype()
        )),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.json"))
        .map_err(|e| format!("reading case.json: {e}"))?;
    let manifest: Value =
        serde_json::from_str(&text).map_err(|e| format!("parsing case.json: {e}"))?;
    let dtypes: BTreeMap<String, Option<DType>> = string_map(&manifest, "dtypes")
        .into_iter()
        .map(|(k, v)| (k, dtype_of(&v)))
        .collect();
    let dtype = |name: &str| dtypes.get(name).copied().flatten();
    let expect_error = match manifest["expect_error"].as_str() {
        Some(name) => Some(code_of(name).ok_or(format!("unknown error class '{name}'"))?),
        None => None,
    };
    let rtol = manifest["rtol"].as_f64().unwrap_or(1e-5);
    let atol = manifest["atol"].as_f64().unwrap_or(1e-6);

    let mut feeds: Vec<(String, Tensor)> = Vec::new();
    for (name, file) in string_map(&manifest, "feeds") {
        let mut t = read_npy(&dir.join(&file)).map_err(|e| format!("feed {name}: {e}"))?;
        if dtype(&name) == Some(DType::BF16) {
            t = to_bf16(t)?;
        }
        feeds.push((name, t));
    }
    let fetches = string_map(&manifest, "fetches");

    let run = || -> rill::graph::Result<Vec<Tensor>> {
        let graph = Graph::load(dir.join("graph.pb"), registry())?;
        let session = Session::new(graph, SessionOptions::default())?;
        let feed_refs: Vec<(&str, Tensor)> =
            feeds.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
        let names: Vec<&str> = fetches.iter().map(|(n, _)| n.as_str()).collect();
        session.run(&feed_refs, &names, &[])
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("panicked: {msg}")
    })?;
    match (expect_error, result) {
        (Some(code), Ok(_)) => Err(format!("expected a {code} error, but it ran")),
        (Some(code), Err(e)) if e.code == code => Ok(()),
        (Some(code), Err(e)) => Err(format!("expected a {code} error, got {e}")),
        (None, Err(e)) => Err(format!("{e}")),
        (None, Ok(got)) => {
            if got.len() != fetches.len() {
                return Err(format!(
                    "{} outputs for {} fetches",
                    got.len(),
                    fetches.len()
                ));
            }
            for ((name, file), actual) in fetches.iter().zip(&got) {
                let mut expected =
                    read_npy(&dir.join(file)).map_err(|e| format!("expected {name}: {e}"))?;
                if dtype(name) == Some(DType::BF16) {
                    expected = to_bf16(expected)?;
                }
                compare(name, actual, &expected, dtype(name), rtol, atol)?;
            }
            Ok(())
        }
    }
}

/// `known_failures.txt`: case name -> reason.
fn known_failures(root: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root.join("known_failures.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (name, reason) = line.split_once('#').unwrap_or((line, ""));
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_string(), reason.trim().to_string()))
        })
        .collect()
}

#[test]
fn op_cases() {
    let root = ops_root();
    let filter = std::env::var("RILL_OP_CASE").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read op cases at {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").exists())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(&filter))
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty() || !filter.is_empty(),
        "no op cases found under {}",
        root.display()
    );
    let known = known_failures(&root);
    // Silence the default panic message of kernels that panic (caught and reported).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (mut passed, mut failed, mut known_failed, mut known_passed) = (0, 0, 0, 0);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let outcome = run_case(dir);
        match (outcome, known.get(&name)) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(_)) => {
                passed += 1;
                known_passed += 1;
                println!("KNOWN FAILURE NOW PASSES {name}: remove it from known_failures.txt");
            }
            (Err(why), None) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
            (Err(why), Some(reason)) => {
                known_failed += 1;
                println!("KNOWN FAILURE {name}: {why} [{reason}]");
            }
        }
    }
    std::panic::set_hook(hook);
    let stale: Vec<&String> = known
        .keys()
        .filter(|k| filter.is_empty() && !dirs.iter().any(|d| d.ends_with(k.as_str())))
        .collect();
    for name in &stale {
        println!("known_failures.txt names {name}, which is not a case");
    }
    println!(
        "{passed} passed, {failed} failed ({known_failed} known failures, {known_passed} known failures now pass)"
    );
    assert!(failed == 0, "{failed} op cases failed");
}
