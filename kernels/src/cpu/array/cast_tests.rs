//! Tests of `Cast`: truncation toward zero, x86 out-of-range results, integer wrapping,
//! bool conversions, half types and `Truncate`.

use super::super::test_util::*;
use half::{bf16, f16};
use rill_graph::{AttrValue, Code, DType, Tensor};

fn cast(x: Tensor, dst: DType) -> Tensor {
    run1(
        "Cast",
        &[("SrcT", x.dtype().into()), ("DstT", dst.into())],
        vec![x],
    )
    .unwrap()
}

#[test]
fn float_to_int_truncates_toward_zero() {
    let y = cast(f(&[5], &[-1.7, 1.7, -0.5, 2.0, -0.0]), DType::I32);
    assert_eq!(ints(&y), (vec![5], vec![-1, 1, 0, 2, 0]));
    let y = cast(Tensor::vector(vec![-2.9f64, 1e10]), DType::I64);
    assert_eq!(y.as_slice::<i64>().unwrap(), &[-2, 10_000_000_000]);
}

#[test]
fn float_to_int_out_of_range_matches_x86() {
    let y = cast(f(&[4], &[f32::NAN, f32::INFINITY, 3e9, -3e9]), DType::I32);
    assert_eq!(ints(&y).1, vec![i32::MIN; 4]);
    let y = cast(f(&[2], &[f32::NAN, 1e19]), DType::I64);
    assert_eq!(y.as_slice::<i64>().unwrap(), &[i64::MIN, i64::MIN]);
    let y = cast(f(&[2], &[100000.0, -1.0]), DType::I16);
    assert_eq!(y.as_slice::<i16>().unwrap(), &[-31072, -1]);
    let y = cast(f(&[3], &[-1.0, 300.0, 255.9]), DType::U8);
    assert_eq!(y.as_slice::<u8>().unwrap(), &[255, 44, 255]);
    let y = cast(f(&[2], &[3e9, -1.0]), DType::U32);
    assert_eq!(y.as_slice::<u32>().unwrap(), &[3_000_000_000, u32::MAX]);
    let y = cast(Tensor::vector(vec![1.5e19f64, 7.9]), DType::U64);
    assert_eq!(
        y.as_slice::<u64>().unwrap(),
        &[15_000_000_000_000_000_000, 7]
    );
}

#[test]
fn integers_wrap_and_widen() {
    let y = cast(i(&[3], &[300, -1, 128]), DType::U8);
    assert_eq!(y.as_slice::<u8>().unwrap(), &[44, 255, 128]);
    let y = cast(i(&[2], &[-1, 7]), DType::U64);
    assert_eq!(y.as_slice::<u64>().unwrap(), &[u64::MAX, 7]);
    let y = cast(Tensor::vector(vec![u64::MAX]), DType::I64);
    assert_eq!(y.as_slice::<i64>().unwrap(), &[-1]);
    let y = cast(Tensor::vector(vec![16_777_217i32]), DType::F32);
    assert_eq!(floats(&y).1, vec![16_777_216.0]);
}

#[test]
fn bools() {
    let y = cast(f(&[4], &[0.0, -0.0, 0.5, f32::NAN]), DType::Bool);
    assert_eq!(y.as_slice::<bool>().unwrap(), &[false, false, true, true]);
    let y = cast(Tensor::vector(vec![true, false]), DType::F32);
    assert_eq!(floats(&y).1, vec![1.0, 0.0]);
    let y = cast(Tensor::vector(vec![true, false]), DType::I64);
    assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 0]);
    let y = cast(Tensor::vector(vec![true]), DType::BF16);
    assert_eq!(y.as_slice::<bf16>().unwrap(), &[bf16::ONE]);
}

#[test]
fn half_types() {
    let y = cast(f(&[3], &[1.5, 65536.0, -2.25]), DType::F16);
    assert_eq!(
        y.as_slice::<f16>().unwrap(),
        &[f16::from_f32(1.5), f16::INFINITY, f16::from_f32(-2.25)]
    );
    let y = cast(Tensor::vector(vec![f16::from_f32(-3.75)]), DType::I32);
    assert_eq!(ints(&y).1, vec![-3]);
    let y = cast(Tensor::vector(vec![bf16::from_f32(2.5)]), DType::F16);
    assert_eq!(y.as_slice::<f16>().unwrap(), &[f16::from_f32(2.5)]);
    let y = cast(Tensor::vector(vec![1000i64]), DType::F16);
    assert_eq!(y.as_slice::<f16>().unwrap(), &[f16::from_f32(1000.0)]);
}

#[test]
fn truncate_attr() {
    // 1 + 0.75 * 2^-7 rounds up to 1 + 2^-7 in bfloat16, truncates to 1.
    let x = f(&[2], &[1.0 + 1.0 / 256.0 + 1.0 / 512.0, f32::NAN]);
    let a = |t: bool| {
        [
            ("SrcT", AttrValue::Type(DType::F32)),
            ("DstT", DType::BF16.into()),
            ("Truncate", t.into()),
        ]
    };
    let y = run1("Cast", &a(false), vec![x.clone()]).unwrap();
    assert_eq!(y.as_slice::<bf16>().unwrap()[0], bf16::from_f32(1.0078125));
    let y = run1("Cast", &a(true), vec![x]).unwrap();
    assert_eq!(y.as_slice::<bf16>().unwrap()[0], bf16::ONE);
    assert!(y.as_slice::<bf16>().unwrap()[1].is_nan());
    let y = run1(
        "Cast",
        &[("DstT", DType::F32.into()), ("Truncate", true.into())],
        vec![Tensor::vector(vec![0.1f64])],
    )
    .unwrap();
    assert_eq!(floats(&y).1[0], f32::from_bits(0.1f32.to_bits() - 1));
}

#[test]
fn same_type_forwards_and_strings() {
    let x = iota(&[3]);
    let y = cast(x.clone(), DType::I32);
    assert!(std::ptr::eq(x.buffer(), y.buffer()));
    let s = Tensor::vector(vec![b"1".to_vec()]);
    assert_eq!(cast(s.clone(), DType::String), s);
    let e = run("Cast", &[("DstT", DType::I32.into())], vec![s]).unwrap_err();
    assert_eq!(e.code, Code::Unimplemented);
    let e = cast(Tensor::zeros(DType::F32, &[0, 2]).unwrap(), DType::U8);
    assert_eq!(e.dims(), &[0, 2]);
}
