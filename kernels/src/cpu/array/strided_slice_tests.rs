//! Tests of `StridedSlice` and `StridedSliceGrad`: every mask, negative strides, clamping
//! and the bounds errors, with values worked out by hand (as NumPy indexing gives them).

use super::super::test_util::*;
use rill_graph::{AttrValue, Code, Tensor};

/// Runs `x[spec]` with begin/end/strides and masks `[begin, end, ellipsis, new_axis, shrink]`.
fn ss(x: Tensor, b: &[i32], e: &[i32], s: &[i32], masks: [i64; 5]) -> rill_graph::Result<Tensor> {
    let names = [
        "begin_mask",
        "end_mask",
        "ellipsis_mask",
        "new_axis_mask",
        "shrink_axis_mask",
    ];
    let attrs: Vec<(&str, AttrValue)> = names
        .iter()
        .zip(masks)
        .map(|(n, m)| (*n, m.into()))
        .collect();
    let n = b.len();
    run1(
        "StridedSlice",
        &attrs,
        vec![x, i(&[n], b), i(&[n], e), i(&[n], s)],
    )
}

fn x34() -> Tensor {
    iota(&[3, 4])
}

#[test]
fn reversed_full_range() {
    // x[::-1]
    let y = ss(x34(), &[0], &[0], &[-1], [1, 1, 0, 0, 0]).unwrap();
    assert_eq!(
        ints(&y),
        (vec![3, 4], vec![8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3])
    );
    // x[::-1] on a vector, and x[10:-10:-1] clamps to the same thing.
    let v = iota(&[5]);
    let y = ss(v.clone(), &[10], &[-10], &[-1], [0, 0, 0, 0, 0]).unwrap();
    assert_eq!(ints(&y), (vec![5], vec![4, 3, 2, 1, 0]));
}

#[test]
fn negative_strides_with_masks() {
    // x[2:0:-1, ::-2]
    let y = ss(x34(), &[2, 0], &[0, 0], &[-1, -2], [2, 2, 0, 0, 0]).unwrap();
    assert_eq!(ints(&y), (vec![2, 2], vec![11, 9, 7, 5]));
    // x[-1:-4:-1, 3:0:-3] -> rows 2,1,0; cols 3
    let y = ss(x34(), &[-1, 3], &[-4, 0], &[-1, -3], [0, 0, 0, 0, 0]).unwrap();
    assert_eq!(ints(&y), (vec![3, 1], vec![11, 7, 3]));
}

#[test]
fn out_of_bounds_ranges_clamp() {
    // x[-100:100, 1:100:2]
    let y = ss(x34(), &[-100, 1], &[100, 100], &[1, 2], [0, 0, 0, 0, 0]).unwrap();
    assert_eq!(ints(&y), (vec![3, 2], vec![1, 3, 5, 7, 9, 11]));
    // x[2:1] is empty, x[5:] too.
    assert_eq!(
        ss(x34(), &[2], &[1], &[1], [0, 0, 0, 0, 0]).unwrap().dims(),
        &[0, 4]
    );
    assert_eq!(
        ss(x34(), &[5], &[0], &[1], [0, 1, 0, 0, 0]).unwrap().dims(),
        &[0, 4]
    );
}

#[test]
fn shrink_axis() {
    // x[1:, -1]
    let y = ss(x34(), &[1, -1], &[0, 0], &[1, 1], [0, 1, 0, 0, 2]).unwrap();
    assert_eq!(ints(&y), (vec![2], vec![7, 11]));
    // x[-1]
    let y = ss(x34(), &[-1], &[0], &[1], [0, 0, 0, 0, 1]).unwrap();
    assert_eq!(ints(&y), (vec![4], vec![8, 9, 10, 11]));
    // x[1, 2] is a scalar.
    let y = ss(x34(), &[1, 2], &[2, 3], &[1, 1], [0, 0, 0, 0, 3]).unwrap();
    assert_eq!(ints(&y), (vec![], vec![6]));
}

#[test]
fn shrink_axis_out_of_range_is_an_error() {
    let e = ss(x34(), &[3], &[4], &[1], [0, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(e.message, "slice index 3 of dimension 0 out of bounds.");
    let e = ss(x34(), &[-4], &[0], &[1], [0, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(e.message, "slice index -1 of dimension 0 out of bounds.");
    let e = ss(x34(), &[0, 1], &[0, 0], &[1, -1], [0, 0, 0, 0, 2]).unwrap_err();
    assert_eq!(e.message, "only stride 1 allowed on non-range indexing.");
}

#[test]
fn ellipsis() {
    // x[..., 1:3]
    let y = ss(x34(), &[0, 1], &[0, 3], &[1, 1], [0, 0, 1, 0, 0]).unwrap();
    assert_eq!(ints(&y), (vec![3, 2], vec![1, 2, 5, 6, 9, 10]));
    // x[...] on a scalar is the scalar.
    let y = ss(Tensor::scalar(7i32), &[0], &[0], &[1], [0, 0, 1, 0, 0]).unwrap();
    assert_eq!(ints(&y), (vec![], vec![7]));
}

#[test]
fn new_axis_ellipsis_and_shrink_together() {
    let x = iota(&[2, 3, 4]); // x[a][b][c] = 12a + 4b + c
                              // x[tf.newaxis, ..., 2]
    let y = ss(
        x.clone(),
        &[0, 0, 2],
        &[0, 0, 3],
        &[1, 1, 1],
        [0, 0, 2, 1, 4],
    )
    .unwrap();
    assert_eq!(ints(&y), (vec![1, 2, 3], vec![2, 6, 10, 14, 18, 22]));
    // x[..., tf.newaxis, 1]
    let y = ss(
        x.clone(),
        &[0, 0, 1],
        &[0, 0, 2],
        &[1, 1, 1],
        [0, 0, 1, 2, 4],
    )
    .unwrap();
    assert_eq!(ints(&y), (vec![2, 3, 1], vec![1, 5, 9, 13, 17, 21]));
    // x[1, tf.newaxis, ::-1, tf.newaxis] -> shape [1, 3, 1, 4], rows b = 2,1,0 of x[1]
    let y = ss(
        x.clone(),
        &[1, 0, 0, 0],
        &[2, 0, 0, 0],
        &[1, 1, -1, 1],
        [4, 4, 0, 10, 1],
    )
    .unwrap();
    let (dims, v) = ints(&y);
    assert_eq!(dims, vec![1, 3, 1, 4]);
    assert_eq!(&v[..5], &[20, 21, 22, 23, 16]);
    // new axis on a scalar
    let y = ss(Tensor::scalar(7i32), &[0], &[0], &[1], [0, 0, 0, 1, 0]).unwrap();
    assert_eq!(ints(&y), (vec![1], vec![7]));
}

#[test]
fn identity_shares_and_int64_specs_work() {
    let x = x34();
    let y = ss(x.clone(), &[0], &[0], &[1], [1, 1, 0, 0, 0]).unwrap();
    assert!(std::ptr::eq(x.buffer(), y.buffer()));
    let y = run1(
        "StridedSlice",
        &[],
        vec![x, l(&[2], &[0, 1]), l(&[2], &[3, 4]), l(&[2], &[2, 2])],
    )
    .unwrap();
    assert_eq!(ints(&y), (vec![2, 2], vec![1, 3, 9, 11]));
    let s = Tensor::new(&[3], vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]).unwrap();
    let y = ss(s, &[0], &[0], &[-1], [1, 1, 0, 0, 0]).unwrap();
    assert_eq!(y.as_slice::<Vec<u8>>().unwrap()[0], b"c".to_vec());
}

#[test]
fn bad_specs() {
    let e = ss(x34(), &[0], &[0], &[0], [0, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(e.message, "strides[0] must be non-zero");
    let e = ss(x34(), &[0, 0], &[0, 0], &[1, 1], [0, 0, 3, 0, 0]).unwrap_err();
    assert_eq!(e.message, "Multiple ellipses in slice spec not allowed");
    let e = ss(x34(), &[0, 0, 0], &[1, 1, 1], &[1, 1, 1], [0, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(
        e.message,
        "Index out of range using input dim 2; input has only 2 dims"
    );
    let e = ss(Tensor::scalar(1i32), &[0], &[1], &[1], [0, 0, 0, 0, 1]).unwrap_err();
    assert_eq!(e.message, "Attempting to slice scalar input.");
    let e = run1(
        "StridedSlice",
        &[],
        vec![x34(), i(&[1], &[0]), i(&[2], &[0, 0]), i(&[2], &[1, 1])],
    )
    .unwrap_err();
    assert!(
        e.message
            .starts_with("Expected begin, end, and strides to be 1D equal size tensors"),
        "{}",
        e.message
    );
}

#[test]
fn strided_slice_grad() {
    // d/dx of x[1:, -1] on a [3,4] input.
    let attrs = [
        ("end_mask", AttrValue::Int(1)),
        ("shrink_axis_mask", AttrValue::Int(2)),
    ];
    let inputs = vec![
        i(&[2], &[3, 4]),
        i(&[2], &[1, -1]),
        i(&[2], &[0, 0]),
        i(&[2], &[1, 1]),
        f(&[2], &[1.0, 2.0]),
    ];
    let dx = run1("StridedSliceGrad", &attrs, inputs).unwrap();
    let mut want = vec![0.0f32; 12];
    want[7] = 1.0;
    want[11] = 2.0;
    assert_eq!(floats(&dx), (vec![3, 4], want));
    // d/dx of x[::-1] on a vector reverses dy.
    let attrs = [
        ("begin_mask", AttrValue::Int(1)),
        ("end_mask", AttrValue::Int(1)),
    ];
    let inputs = vec![
        i(&[1], &[3]),
        i(&[1], &[0]),
        i(&[1], &[0]),
        i(&[1], &[-1]),
        f(&[3], &[1.0, 2.0, 3.0]),
    ];
    let dx = run1("StridedSliceGrad", &attrs, inputs).unwrap();
    assert_eq!(floats(&dx), (vec![3], vec![3.0, 2.0, 1.0]));
    let inputs = vec![
        i(&[1], &[3]),
        i(&[1], &[0]),
        i(&[1], &[0]),
        i(&[1], &[-1]),
        f(&[2], &[1.0, 2.0]),
    ];
    assert!(run("StridedSliceGrad", &attrs, inputs).is_err());
}
