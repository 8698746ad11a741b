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
const BIG: usize = 16 << 10;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= BIG && COUNTING.load(Ordering::Relaxed) {
            BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= BIG && COUNTING.load(Ordering::Relaxed) {
            BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= BIG && COUNTING.load(Ordering::Relaxed) {
            BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// x[64,1024] -> a chain of elementwise ops on 256 KiB tensors, some read twice, reduced
/// to a scalar that is fetched.
fn elementwise_graph() -> Graph {
    let b = Builder::new();
    let x = b
        .placeholder("x", DType::F32, Shape::known(&[64, 1024]))
        .unwrap();
    let y = b
        .placeholder("y", DType::F32, Shape::known(&[1024]))
        .unwrap();
    let a = b.mul(x, y).unwrap();
    let c = b.tanh(a).unwrap();
    let d = b.add(c, x).unwrap();
    let e = b.mul(d, d).unwrap();
    let f = b.sub(e, c).unwrap();
    let g = b.relu(f).unwrap();
    let h = b.sigmoid(g).unwrap();
    let s = b.sum(h, &[0, 1], false).unwrap();
    b.identity_named("total", s).unwrap();
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
    let session = Session::new(elementwise_graph(), SessionOptions::default()).unwrap();
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
    assert!(stats.naive_sum > stats.planned_peak);
    let inputs: Vec<Tensor> = feeds().into_iter().map(|(_, t)| t).collect();
    // Warm up: the first step plans memory and makes the arena.
    let first = callable.run(inputs.clone()).unwrap();
    callable.run(inputs.clone()).unwrap();
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
        "steady-state steps allocated tensor memory"
    );
    assert_eq!(first[0], last[0]);

    // The same graph without a memory plan allocates every intermediate.
    let plain = Session::new(elementwise_graph(), SessionOptions::unoptimized()).unwrap();
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
