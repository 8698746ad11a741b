//! Memory planning end to end: steady-state steps allocate no heap memory for planned
//! tensors (a counting global allocator shows it), results equal the unplanned run, and
//! the plan's peak is close to the lower bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rill::prelude::*;

/// Counts allocations of at least `BIG` bytes while `COUNTING` is set.
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static BIG_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The size of the last counted allocation, to name the culprit when there is one.
static LAST_BIG: AtomicUsize = AtomicUsize::new(0);
const BIG: usize = 16 << 10;

fn count(size: usize) {
    if size >= BIG && COUNTING.load(Ordering::Relaxed) {
        BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        LAST_BIG.store(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests of this file run one at a time, so the counter sees only one test's steps.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// x[64,1024] -> a dense layer (fused MatMul + BiasAdd + Relu), elementwise ops on
/// [64,1024] and [64,256] tensors (some read twice, so fusion leaves several nodes), reduced
/// to a scalar that is fetched.
fn planned_graph() -> Graph {
    let b = Builder::new();
    let x = b
        .placeholder("x", DType::F32, Shape::known(&[64, 1024]))
        .unwrap();
    let y = b
        .placeholder("y", DType::F32, Shape::known(&[1024]))
        .unwrap();
    let w = b
        .constant(
            Tensor::new(
                &[1024, 256],
                rill::bench_graphs::uniform(1024 * 256, 0.05, 3),
            )
            .unwrap(),
        )
        .unwrap();
    let bias = b
        .constant(Tensor::new(&[256], rill::bench_graphs::uniform(256, 0.1, 4)).unwrap())
        .unwrap();
    let a = b.mul(x, y).unwrap();
    let c = b.tanh(a).unwrap();
    let d = b.add(c, x).unwrap();
    let h = b
        .op("BiasAdd")
        .input(b.matmul(d, w).unwrap())
        .input(bias)
        .build_output()
        .unwrap();
    let h = b.relu(h).unwrap();
    let e = b.mul(h, h).unwrap();
    let f = b.sub(e, h).unwrap();
    let g = b.sigmoid(f).unwrap();
    let s = b.sum(g, &[0, 1], false).unwrap();
    let t = b.sum(c, &[0, 1], false).unwrap();
    let total = b.add(s, t).unwrap();
    b.identity_named("total", total).unwrap();
    b.into_graph()
}

fn feeds() -> Vec<(&'static str, Tensor)> {
    let x: Vec<f32> = (0..64 * 1024)
        .map(|i| ((i % 97) as f32 - 48.0) / 40.0)
        .collect();
    let y: Vec<f32> = (0..1024).map(|i| ((i % 13) as f32 - 6.0) / 5.0).collect();
    vec![
        ("x:0", Tensor::new(&[64, 1024], x).unwrap()),
        ("y:0", Tensor::new(&[1024], y).unwrap()),
    ]
}

#[test]
fn steady_state_steps_allocate_nothing_for_planned_tensors() {
    let _serial = serial();
    let session = Session::new(planned_graph(), SessionOptions::default()).unwrap();
    let callable = session.prepare(&["x:0", "y:0"], &["total:0"], &[]).unwrap();
    let plan = session
        .compiled(&["x:0", "y:0"], &["total:0"], &[])
        .unwrap();
    let memory =
        rill::runtime::memory::MemoryPlan::new(&plan, &[vec![64, 1024], vec![1024]]).unwrap();
    let stats = &memory.stats;
    eprintln!(
        "peak {} naive {} bound {} planned {} heap {} in place {}",
        stats.planned_peak,
        stats.naive_sum,
        stats.lower_bound,
        stats.planned_tensors,
        stats.heap_tensors,
        stats.in_place
    );
    assert!(stats.planned_peak as f64 <= 1.1 * stats.lower_bound as f64);
    assert!(stats.planned_tensors >= 3, "{stats:?}");
    let inputs: Vec<Tensor> = feeds().into_iter().map(|(_, t)| t).collect();
    // Warm up: the first step plans memory and makes the arena; later ones let every pool
    // thread make the GEMM's own scratch space (not a tensor, and kept per thread).
    let first = callable.run(inputs.clone()).unwrap();
    for _ in 0..10 {
        callable.run(inputs.clone()).unwrap();
    }
    let batches: Vec<Vec<Tensor>> = (0..20).map(|_| inputs.clone()).collect();
    BIG_ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let mut last = vec![];
    for batch in batches {
        last = callable.run(batch).unwrap();
    }
    COUNTING.store(false, Ordering::Relaxed);
    assert_eq!(
        BIG_ALLOCS.load(Ordering::Relaxed),
        0,
        "steady-state steps allocated tensor memory (the last: {} bytes)",
        LAST_BIG.load(Ordering::Relaxed)
    );
    assert_eq!(first[0], last[0]);

    // The same graph without a memory plan allocates every intermediate.
    let plain = Session::new(planned_graph(), SessionOptions::unoptimized()).unwrap();
    let plain = plain.prepare(&["x:0", "y:0"], &["total:0"], &[]).unwrap();
    let expected = plain.run(inputs.clone()).unwrap();
    let (a, b) = (
        expected[0].scalar_value::<f32>().unwrap(),
        last[0].scalar_value::<f32>().unwrap(),
    );
    assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{a} vs {b}");
    BIG_ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    plain.run(inputs).unwrap();
    COUNTING.store(false, Ordering::Relaxed);
    assert!(BIG_ALLOCS.load(Ordering::Relaxed) > 0);
}

/// Planned peak, lower bound and naive sum of a step for feeds of `dims`.
fn plan_stats(
    session: &Session,
    feeds: &[&str],
    dims: &[Vec<usize>],
    fetches: &[&str],
    targets: &[&str],
) -> rill::runtime::memory::MemoryStats {
    let plan = session.compiled(feeds, fetches, targets).unwrap();
    rill::runtime::memory::MemoryPlan::new(&plan, dims)
        .unwrap()
        .stats
}

fn check_bound(what: &str, s: &rill::runtime::memory::MemoryStats) {
    eprintln!(
        "{what}: peak {} bound {} naive {} ({} planned, {} in place)",
        s.planned_peak, s.lower_bound, s.naive_sum, s.planned_tensors, s.in_place
    );
    assert!(
        s.planned_peak as f64 <= 1.1 * s.lower_bound as f64,
        "{what}: planned peak {} is more than 1.1x the lower bound {}",
        s.planned_peak,
        s.lower_bound
    );
}

#[test]
fn planned_peak_is_within_a_tenth_of_the_lower_bound() {
    let _serial = serial();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("fixture.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    for dir in dirs {
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json")).unwrap())
                .unwrap();
        let graph = Graph::load(
            dir.join(manifest["graph"].as_str().unwrap_or("graph.pb")),
            rill::ops::registry(),
        )
        .unwrap();
        let empty = serde_json::Map::new();
        let feeds: Vec<(String, Vec<usize>)> = manifest["feeds"]
            .as_object()
            .unwrap_or(&empty)
            .iter()
            .map(|(name, file)| {
                let t = rill::npy::read_npy(&dir.join(file.as_str().unwrap())).unwrap();
                (name.clone(), t.dims().to_vec())
            })
            .collect();
        let mut fetches: Vec<String> = manifest["fetches"]
            .as_object()
            .unwrap_or(&empty)
            .keys()
            .cloned()
            .collect();
        // Training fixtures: the step the harness runs most (loss and the train op).
        if fetches.is_empty() {
            fetches = manifest["per_step_fetches"]
                .as_object()
                .unwrap_or(&empty)
                .keys()
                .cloned()
                .collect();
        }
        let targets: Vec<String> = manifest["train_targets"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let session = Session::new(graph, SessionOptions::default()).unwrap();
        let names: Vec<&str> = feeds.iter().map(|(n, _)| n.as_str()).collect();
        let dims: Vec<Vec<usize>> = feeds.iter().map(|(_, d)| d.clone()).collect();
        let fetches: Vec<&str> = fetches.iter().map(String::as_str).collect();
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        if !targets.is_empty() {
            // Variables must exist before a step that reads them can be compiled.
            let init: Vec<String> = manifest["init_targets"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let init: Vec<&str> = init.iter().map(String::as_str).collect();
            session.run(&[], &[], &init).unwrap();
        }
        let stats = plan_stats(&session, &names, &dims, &fetches, &targets);
        check_bound(&dir.display().to_string(), &stats);
    }

    let m = rill::bench_graphs::mlp_train_step().unwrap();
    let session = Session::new(m.graph, SessionOptions::default()).unwrap();
    let stats = plan_stats(
        &session,
        &["x:0", "y:0"],
        &[vec![64, 784], vec![64, 10]],
        &[&m.loss],
        &[&m.train],
    );
    check_bound("mlp_train_step", &stats);
    assert!(stats.planned_tensors > 10);

    let (graph, _) = rill::bench_graphs::elementwise_chain().unwrap();
    let session = Session::new(graph, SessionOptions::default()).unwrap();
    let n = rill::bench_graphs::CHAIN_LEN;
    let stats = plan_stats(
        &session,
        &["x:0", "y:0"],
        &[vec![n], vec![n]],
        &["out:0"],
        &[],
    );
    check_bound("elementwise_chain", &stats);
}

#[test]
fn training_steps_agree_with_and_without_optimisation() {
    let _serial = serial();
    let run = |options: SessionOptions| {
        let m = rill::bench_graphs::mlp_train_step().unwrap();
        let session = Session::new(m.graph, options).unwrap();
        session.run(&[], &[], &[&m.init]).unwrap();
        let step = session
            .prepare(&["x:0", "y:0"], &[&m.loss], &[&m.train])
            .unwrap();
        (0..5)
            .map(|_| {
                step.run(m.feeds.to_vec()).unwrap()[0]
                    .scalar_value::<f32>()
                    .unwrap()
            })
            .collect::<Vec<f32>>()
    };
    let (optimized, plain) = (
        run(SessionOptions::default()),
        run(SessionOptions::unoptimized()),
    );
    for (a, b) in optimized.iter().zip(&plain) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{optimized:?} vs {plain:?}"
        );
    }
    assert!(
        optimized[4] < optimized[0],
        "the loss goes down: {optimized:?}"
    );

    let (graph, feeds) = rill::bench_graphs::elementwise_chain().unwrap();
    let fetch = |options| {
        Session::new(graph.clone(), options)
            .unwrap()
            .run(
                &[("x:0", feeds[0].clone()), ("y:0", feeds[1].clone())],
                &["out:0"],
                &[],
            )
            .unwrap()
            .remove(0)
    };
    assert_eq!(
        fetch(SessionOptions::default()),
        fetch(SessionOptions::unoptimized())
    );
}
