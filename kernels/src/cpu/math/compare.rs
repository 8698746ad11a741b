//! Comparison kernels (`Less`, `LessEqual`, `Greater`, `GreaterEqual`, `Equal`,
//! `NotEqual`, `ApproximateEqual`) producing bool with broadcasting, and the logical binary
//! kernels (`LogicalAnd`, `LogicalOr`).
//!
//! Invariants: comparisons run natively on every real dtype (f16/bf16 included; NaN
//! compares false, and unequal); `Equal`/`NotEqual` also take bool and string, and with
//! `incompatible_shape_error = false` return a scalar false/true for unbroadcastable
//! shapes, as TensorFlow does.

use std::marker::PhantomData;

use half::{bf16, f16};
use rill_graph::{DType, Node, Result, Tensor};

use super::binary::same_dtype;
use super::broadcast::{binary, binary_ref, binary_same, broadcast_dims};
use super::util::{attr_bool, attr_float, match_real, take};
use crate::{unsupported_dtype, Kernel, KernelContext, KernelRegistry};

trait CmpOp: Send + Sync + 'static {
    const NAME: &'static str;
    /// Equality ops also accept bool and string and may skip shape errors.
    const EQUALITY: bool = false;
    fn cmp<T: PartialOrd + ?Sized>(a: &T, b: &T) -> bool;
}

macro_rules! cmp_ops {
    ($($name:ident: $op:tt $(, $eq:ident)?;)*) => {
        mod op {
            use super::CmpOp;
            $(
                pub(super) struct $name;
                impl CmpOp for $name {
                    const NAME: &'static str = stringify!($name);
                    $(const EQUALITY: bool = { let _ = stringify!($eq); true };)?
                    #[inline(always)]
                    fn cmp<T: PartialOrd + ?Sized>(a: &T, b: &T) -> bool { a $op b }
                }
            )*
        }
        fn register_table(r: &mut KernelRegistry) {
            $(r.cpu(stringify!($name), Compare::<op::$name>::factory);)*
        }
    };
}

cmp_ops! {
    Less: <;
    LessEqual: <=;
    Greater: >;
    GreaterEqual: >=;
    Equal: ==, equality;
    NotEqual: !=, equality;
}

struct Compare<Op> {
    incompatible_shape_error: bool,
    _op: PhantomData<Op>,
}

impl<Op: CmpOp> Compare<Op> {
    fn factory(node: &Node) -> Result<Box<dyn Kernel>> {
        if let Some(d) = KernelRegistry::kernel_dtype(node) {
            let ok = d.is_float()
                || d.is_integer()
                || (Op::EQUALITY && matches!(d, DType::Bool | DType::String));
            if !ok {
                return Err(unsupported_dtype(Op::NAME, d));
            }
        }
        Ok(Box::new(Compare::<Op> {
            incompatible_shape_error: attr_bool(node, "incompatible_shape_error", true)?,
            _op: PhantomData,
        }))
    }
}

impl<Op: CmpOp> Kernel for Compare<Op> {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [a, b] = take(Op::NAME, inputs)?;
        same_dtype(Op::NAME, &a, &b)?;
        if Op::EQUALITY
            && !self.incompatible_shape_error
            && broadcast_dims(&[a.dims(), b.dims()]).is_err()
        {
            // TensorFlow: unbroadcastable shapes are simply "not equal".
            return Ok(vec![Tensor::scalar(!Op::cmp(&0, &0))]);
        }
        let dt = a.dtype();
        let out = match_real!(dt, T => binary::<T, T, bool>(&a, &b, |x, y| Op::cmp(&x, &y))?, d => {
            match d {
                DType::Bool if Op::EQUALITY => binary::<bool, bool, bool>(&a, &b, |x, y| Op::cmp(&x, &y))?,
                DType::String if Op::EQUALITY => {
                    binary_ref::<Vec<u8>, Vec<u8>, bool>(&a, &b, |x, y| Op::cmp(x.as_slice(), y.as_slice()))?
                }
                d => return Err(unsupported_dtype(Op::NAME, d)),
            }
        });
        Ok(vec![out])
    }
}

/// `ApproximateEqual`: `|x - y| < tolerance`, same shapes.
struct ApproximateEqual {
    tolerance: f64,
}

impl Kernel for ApproximateEqual {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [a, b] = take("ApproximateEqual", inputs)?;
        same_dtype("ApproximateEqual", &a, &b)?;
        if a.dims() != b.dims() {
            return Err(rill_graph::Error::invalid_argument(format!(
                "x and y must be of the same shape. x shape: {} y shape: {}",
                a.shape(),
                b.shape()
            )));
        }
        let t = self.tolerance;
        let out = match a.dtype() {
            DType::F32 => binary::<f32, f32, bool>(&a, &b, |x, y| ((x - y).abs() as f64) < t)?,
            DType::F64 => binary::<f64, f64, bool>(&a, &b, |x, y| (x - y).abs() < t)?,
            DType::F16 => {
                binary::<f16, f16, bool>(&a, &b, |x, y| ((x.to_f64() - y.to_f64()).abs()) < t)?
            }
            DType::BF16 => {
                binary::<bf16, bf16, bool>(&a, &b, |x, y| ((x.to_f64() - y.to_f64()).abs()) < t)?
            }
            d => return Err(unsupported_dtype("ApproximateEqual", d)),
        };
        Ok(vec![out])
    }
}

/// `LogicalAnd` / `LogicalOr` on bool.
struct Logical {
    name: &'static str,
    f: fn(bool, bool) -> bool,
}

impl Kernel for Logical {
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let [a, b] = take(self.name, inputs)?;
        if a.dtype() != DType::Bool || b.dtype() != DType::Bool {
            return Err(unsupported_dtype(self.name, a.dtype()));
        }
        Ok(vec![binary_same::<bool>(a, b, self.f)?])
    }
}

pub(crate) fn register(r: &mut KernelRegistry) {
    register_table(r);
    r.cpu("ApproximateEqual", |node| {
        Ok(Box::new(ApproximateEqual {
            tolerance: attr_float(node, "tolerance", 1e-5)? as f64,
        }))
    });
    r.cpu("LogicalAnd", |_| {
        Ok(Box::new(Logical {
            name: "LogicalAnd",
            f: |a, b| a && b,
        }))
    });
    r.cpu("LogicalOr", |_| {
        Ok(Box::new(Logical {
            name: "LogicalOr",
            f: |a, b| a || b,
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{f32s, i32s, run1};
    use rill_graph::{AttrValue, Tensor};

    fn bools(t: &Tensor) -> Vec<bool> {
        t.as_slice::<bool>().unwrap().to_vec()
    }

    #[test]
    fn comparisons_broadcast_to_bool() {
        let a = f32s(&[2, 2], &[1.0, 2.0, 3.0, f32::NAN]);
        let b = f32s(&[2], &[2.0, 2.0]);
        assert_eq!(
            bools(&run1("Less", &[], vec![a.clone(), b.clone()])),
            [true, false, false, false]
        );
        assert_eq!(
            bools(&run1("GreaterEqual", &[], vec![a.clone(), b.clone()])),
            [false, true, true, false]
        );
        assert_eq!(
            bools(&run1("NotEqual", &[], vec![a.clone(), b.clone()])),
            [true, false, true, true]
        );
        let e = run1("Equal", &[], vec![i32s(&[3], &[1, 2, 3]), i32s(&[], &[2])]);
        assert_eq!(bools(&e), [false, true, false]);
        let s = run1(
            "Equal",
            &[],
            vec![
                Tensor::vector(vec![b"a".to_vec(), b"b".to_vec()]),
                Tensor::scalar(b"b".to_vec()),
            ],
        );
        assert_eq!(bools(&s), [false, true]);
        let off = [("incompatible_shape_error", AttrValue::Bool(false))];
        let x = run1(
            "Equal",
            &off,
            vec![i32s(&[3], &[1, 2, 3]), i32s(&[2], &[1, 2])],
        );
        assert_eq!((x.dims(), bools(&x)), (&[][..], vec![false]));
        let x = run1(
            "NotEqual",
            &off,
            vec![i32s(&[3], &[1, 2, 3]), i32s(&[2], &[1, 2])],
        );
        assert_eq!(bools(&x), [true]);
        let ap = run1(
            "ApproximateEqual",
            &[],
            vec![f32s(&[2], &[1.0, 1.0]), f32s(&[2], &[1.000001, 1.1])],
        );
        assert_eq!(bools(&ap), [true, false]);
    }

    #[test]
    fn logical_ops() {
        let a = Tensor::vector(vec![true, true, false, false]);
        let b = Tensor::vector(vec![true, false, true, false]);
        assert_eq!(
            bools(&run1("LogicalAnd", &[], vec![a.clone(), b.clone()])),
            [true, false, false, false]
        );
        assert_eq!(
            bools(&run1("LogicalOr", &[], vec![a, b])),
            [true, true, true, false]
        );
    }
}
