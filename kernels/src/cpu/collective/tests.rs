//! Every member of a group runs in one process over a [`LocalRendezvous`], as devices of
//! one task do: results against the sequential merge for each algorithm, group sizes 1-8,
//! uneven and empty chunks, multi-piece rings; gathers and broadcasts; timeouts and aborts.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use rill_graph::{AttrValue, Code, DType, DeviceSpec, Error, Result, Tensor};

use crate::cpu::math::test_util::node;
use crate::rendezvous::{LocalRendezvous, Rendezvous};
use crate::{DeviceType, KernelContext, ResourceMgr};

fn device(i: usize) -> String {
    format!("/job:localhost/replica:0/task:0/device:CPU:{i}")
}

/// Runs `op` on `ranks` of a group of `n` (each rank `i` with `inputs[i]`) and returns
/// each one's result, in `ranks` order.
fn run_ranks(
    op: &str,
    n: usize,
    ranks: &[usize],
    inputs: &[Option<Tensor>],
    attrs: &[(&str, AttrValue)],
    rendezvous: &Arc<dyn Rendezvous>,
) -> Vec<Result<Tensor>> {
    let resources = ResourceMgr::new();
    let devices: Vec<Vec<u8>> = (0..n).map(|i| device(i).into_bytes()).collect();
    let mut receivers = vec![];
    for &r in ranks {
        let mut all: Vec<(&str, AttrValue)> = vec![
            ("group_size", AttrValue::Int(n as i64)),
            ("group_key", AttrValue::Int(1)),
            ("instance_key", AttrValue::Int(5)),
            ("_group_devices", AttrValue::StringList(devices.clone())),
        ];
        all.extend(attrs.iter().cloned());
        let input: Vec<Tensor> = inputs[r].iter().cloned().collect();
        let mut node = node(op, &all, &input);
        node.assigned_device = Some(DeviceSpec::parse(&device(r)).unwrap());
        let kernel = crate::registry().create(&node, DeviceType::Cpu).unwrap();
        let mut cx = KernelContext::new("collective", &resources);
        cx.rendezvous = Some(rendezvous);
        let (tx, rx) = mpsc::channel();
        kernel.compute_async(&cx, input, Box::new(move |r| drop(tx.send(r))));
        receivers.push(rx);
    }
    receivers
        .into_iter()
        .map(|rx| rx.recv().unwrap().map(|mut v| v.remove(0)))
        .collect()
}

fn run_all(op: &str, inputs: &[Option<Tensor>], attrs: &[(&str, AttrValue)]) -> Vec<Tensor> {
    let n = inputs.len();
    let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
    let ranks: Vec<usize> = (0..n).collect();
    run_ranks(op, n, &ranks, inputs, attrs, &rv)
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

fn values(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + rank * 17) % 101) as f32 * 0.37 - 15.0)
        .collect()
}

#[test]
fn reduce_matches_the_sequential_sum_for_every_algorithm_and_size() {
    for hint in ["ring", "tree", "hierarchical", "auto"] {
        for n in 1..=8 {
            for len in [1, 3, 7, 1000, 300_001] {
                if len == 300_001 && n % 3 != 0 {
                    continue; // multi-piece rings: a few group sizes suffice
                }
                let inputs: Vec<Option<Tensor>> = (0..n)
                    .map(|r| Some(Tensor::new(&[len], values(r, len)).unwrap()))
                    .collect();
                let hosts: Vec<i64> = (0..n as i64).map(|r| r / 3).collect();
                let attrs = [
                    ("merge_op", "Add".into()),
                    ("final_op", "Div".into()),
                    ("communication_hint", hint.into()),
                    ("_rank_hosts", AttrValue::IntList(hosts)),
                ];
                let out = run_all("CollectiveReduce", &inputs, &attrs);
                let first = out[0].as_slice::<f32>().unwrap();
                for i in [0, len / 2, len - 1] {
                    let want: f32 = (0..n).map(|r| values(r, len)[i]).sum::<f32>() / n as f32;
                    assert!(
                        (first[i] - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{hint} n={n} len={len} [{i}]: {} vs {want}",
                        first[i]
                    );
                }
                for t in &out {
                    assert_eq!(
                        t.as_slice::<f32>().unwrap(),
                        first,
                        "{hint} n={n} len={len}"
                    );
                }
            }
        }
    }
}

#[test]
fn integer_reductions_are_exact_and_every_merge_op_works() {
    for (merge, want) in [
        ("Add", 10), // 0 + 1 + 2 + 3 + 4
        ("Mul", 0),
        ("Min", 0),
        ("Max", 4),
    ] {
        for hint in ["ring", "tree"] {
            let inputs: Vec<Option<Tensor>> = (0..5)
                .map(|r| Some(Tensor::new(&[2, 3], vec![r as i64 + (1i64 << 40); 6]).unwrap()))
                .collect();
            let attrs = [
                ("merge_op", merge.into()),
                ("final_op", "Id".into()),
                ("communication_hint", hint.into()),
            ];
            let out = run_all("CollectiveReduce", &inputs, &attrs);
            let base = 1i64 << 40;
            let expect = match merge {
                "Add" => 5 * base + want,
                "Mul" => (0..5).fold(1i64, |a, r| a.wrapping_mul(r + base)),
                _ => base + want,
            };
            for t in out {
                assert_eq!(t.dims(), &[2, 3]);
                assert_eq!(t.as_slice::<i64>().unwrap(), &[expect; 6], "{merge} {hint}");
            }
        }
    }
}

#[test]
fn gather_concatenates_in_rank_order() {
    for n in 1..=5 {
        let inputs: Vec<Option<Tensor>> = (0..n)
            .map(|r| Some(Tensor::new(&[2, 2], vec![r as i32; 4]).unwrap()))
            .collect();
        for t in run_all("CollectiveGather", &inputs, &[]) {
            assert_eq!(t.dims(), &[2 * n, 2]);
            let want: Vec<i32> = (0..n as i32).flat_map(|r| [r; 4]).collect();
            assert_eq!(t.as_slice::<i32>().unwrap(), want.as_slice());
        }
    }
}

#[test]
fn broadcast_reaches_every_rank_from_any_source() {
    for n in 1..=6 {
        for source in [0, n / 2, n - 1] {
            let value = Tensor::new(&[3], vec![1.5f64, -2.0, 7.0]).unwrap();
            let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
            let resources = ResourceMgr::new();
            let devices: Vec<Vec<u8>> = (0..n).map(|i| device(i).into_bytes()).collect();
            let mut receivers = vec![];
            for r in 0..n {
                let op = if r == source {
                    "CollectiveBcastSend"
                } else {
                    "CollectiveBcastRecv"
                };
                let attrs = [
                    ("group_size", AttrValue::Int(n as i64)),
                    ("group_key", AttrValue::Int(2)),
                    ("instance_key", AttrValue::Int(9)),
                    ("_group_devices", AttrValue::StringList(devices.clone())),
                    ("_source_rank", AttrValue::Int(source as i64)),
                    ("T", AttrValue::Type(DType::F64)),
                    ("shape", AttrValue::Shape(value.shape())),
                ];
                let input = if r == source {
                    vec![value.clone()]
                } else {
                    vec![]
                };
                let mut node = node(op, &attrs, &input);
                node.assigned_device = Some(DeviceSpec::parse(&device(r)).unwrap());
                let kernel = crate::registry().create(&node, DeviceType::Cpu).unwrap();
                let mut cx = KernelContext::new("bcast", &resources);
                cx.rendezvous = Some(&rv);
                let (tx, rx) = mpsc::channel();
                kernel.compute_async(&cx, input, Box::new(move |r| drop(tx.send(r))));
                receivers.push(rx);
            }
            for rx in receivers {
                let out = rx.recv().unwrap().unwrap();
                assert_eq!(out[0].as_slice::<f64>().unwrap(), &[1.5, -2.0, 7.0]);
            }
        }
    }
}

#[test]
fn a_silent_peer_is_named_after_the_timeout_and_an_abort_ends_every_wait() {
    let n = 3;
    let inputs: Vec<Option<Tensor>> = (0..n)
        .map(|_| Some(Tensor::new(&[4], vec![1.0f32; 4]).unwrap()))
        .collect();
    let attrs = [
        ("merge_op", "Add".into()),
        ("final_op", "Id".into()),
        ("communication_hint", "ring".into()),
        ("timeout_seconds", AttrValue::Float(0.3)),
    ];
    let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
    let results = run_ranks("CollectiveReduce", n, &[0, 1], &inputs, &attrs, &rv);
    let err = results[0].as_ref().unwrap_err();
    assert_eq!(err.code, Code::DeadlineExceeded, "{err}");
    assert!(err.message.contains("missing ranks: [2]"), "{err}");

    let rv: Arc<dyn Rendezvous> = Arc::new(LocalRendezvous::new());
    let waiter = rv.clone();
    let abort = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        waiter.abort(Error::new(Code::Unavailable, "task 2 died"));
    });
    let attrs = &attrs[..3];
    let results = run_ranks("CollectiveReduce", n, &[0, 1], &inputs, attrs, &rv);
    abort.join().unwrap();
    for r in results {
        let err = r.unwrap_err();
        assert!(err.message.contains("task 2 died"), "{err}");
    }
}

#[test]
fn members_outside_the_group_and_missing_devices_are_refused() {
    let attrs = [
        ("group_size", AttrValue::Int(2)),
        ("group_key", AttrValue::Int(1)),
        ("instance_key", AttrValue::Int(1)),
        ("merge_op", "Add".into()),
        ("final_op", "Id".into()),
    ];
    let x = Tensor::new(&[1], vec![1.0f32]).unwrap();
    let bare = node("CollectiveReduce", &attrs, std::slice::from_ref(&x));
    let err = crate::registry()
        .create(&bare, DeviceType::Cpu)
        .err()
        .unwrap();
    assert_eq!(err.code, Code::FailedPrecondition, "{err}");
    let mut with = attrs.to_vec();
    with.push((
        "_group_devices",
        AttrValue::StringList(vec![b"/device:CPU:1".to_vec(), b"/device:CPU:2".to_vec()]),
    ));
    let mut outside = node("CollectiveReduce", &with, &[x]);
    outside.assigned_device = Some(DeviceSpec::parse(&device(0)).unwrap());
    let err = crate::registry()
        .create(&outside, DeviceType::Cpu)
        .err()
        .unwrap();
    assert_eq!(err.code, Code::FailedPrecondition, "{err}");
}
