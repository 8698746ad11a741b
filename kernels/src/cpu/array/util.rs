//! Shared plumbing of the array kernels: closure-backed kernels, attr readers with
//! TensorFlow's defaults, input-count checks, reading shape/axis/index tensors, writing
//! int32/int64 index outputs, fallible allocation, and the dtype dispatch macros
//! (`with_dtype!` over every dtype that holds values, `with_numeric!` over the numeric ones).
//!
//! Invariants: nothing here panics on user input; every failure is a typed
//! [`rill_graph::Error`]. A kernel built by [`kernel`] ignores the per-step context.

use rill_graph::{element_count, AttrValue, DType, Error, Node, Result, Tensor};

use crate::{Kernel, KernelContext};

/// A kernel whose computation is a closure over the attrs read by its factory.
pub(super) struct FnKernel<F>(F);

impl<F> Kernel for FnKernel<F>
where
    F: Fn(Vec<Tensor>) -> Result<Vec<Tensor>> + Send + Sync,
{
    fn compute(&self, _cx: &KernelContext, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        (self.0)(inputs)
    }
}

/// Boxes a closure as a kernel.
pub(super) fn kernel<F>(f: F) -> Result<Box<dyn Kernel>>
where
    F: Fn(Vec<Tensor>) -> Result<Vec<Tensor>> + Send + Sync + 'static,
{
    Ok(Box::new(FnKernel(f)))
}

/// Exactly `N` inputs, or InvalidArgument.
pub(super) fn take<const N: usize>(inputs: Vec<Tensor>) -> Result<[Tensor; N]> {
    let n = inputs.len();
    inputs
        .try_into()
        .map_err(|_| Error::invalid_argument(format!("expected {N} inputs, got {n}")))
}

fn missing(name: &str, ty: &str) -> Error {
    Error::invalid_argument(format!("missing or mistyped attr '{name}' (expected {ty})"))
}

/// An `int` attr; `default` when absent.
pub(super) fn attr_int(node: &Node, name: &str, default: Option<i64>) -> Result<i64> {
    match node.attr(name) {
        Some(v) => v.as_int().ok_or_else(|| missing(name, "int")),
        None => default.ok_or_else(|| missing(name, "int")),
    }
}

/// A `list(int)` attr; empty when absent.
pub(super) fn attr_ints(node: &Node, name: &str) -> Result<Vec<i64>> {
    match node.attr(name) {
        Some(AttrValue::IntList(v)) => Ok(v.clone()),
        Some(AttrValue::FloatList(v)) if v.is_empty() => Ok(vec![]),
        Some(_) => Err(missing(name, "list(int)")),
        None => Ok(vec![]),
    }
}

/// A `type` attr; `default` when absent.
pub(super) fn attr_type(node: &Node, name: &str, default: Option<DType>) -> Result<DType> {
    match node.attr(name) {
        Some(v) => v.as_type().ok_or_else(|| missing(name, "type")),
        None => default.ok_or_else(|| missing(name, "type")),
    }
}

/// A `bool` attr; `default` when absent.
pub(super) fn attr_bool(node: &Node, name: &str, default: bool) -> Result<bool> {
    match node.attr(name) {
        Some(v) => v.as_bool().ok_or_else(|| missing(name, "bool")),
        None => Ok(default),
    }
}

/// A `string` attr (lossily decoded); `default` when absent.
pub(super) fn attr_string(node: &Node, name: &str, default: &str) -> Result<String> {
    match node.attr(name) {
        Some(AttrValue::String(s)) => Ok(String::from_utf8_lossy(s).into_owned()),
        Some(_) => Err(missing(name, "string")),
        None => Ok(default.to_string()),
    }
}

/// An index-type attr (`out_type`, `Tidx`, ...) that must be int32 or int64.
pub(super) fn attr_index_type(node: &Node, name: &str, default: DType) -> Result<DType> {
    let t = attr_type(node, name, Some(default))?;
    match t {
        DType::I32 | DType::I64 => Ok(t),
        other => Err(Error::invalid_argument(format!(
            "attr '{name}' must be int32 or int64, got {other}"
        ))),
    }
}

/// TensorFlow's shape notation, `[2,3]`.
pub(super) fn shape_str(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// Row-major strides (in elements) of `dims`.
pub(super) fn row_strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The product of `dims` (callers pass dims of existing tensors or checked shapes).
pub(super) fn product(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// A 1-D integer tensor's values (a scalar counts as one value, as TF's legacy shapes).
pub(super) fn int_vector(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    if t.rank() > 1 {
        return Err(Error::invalid_argument(format!(
            "{what} must be 1-D, not {}",
            shape_str(t.dims())
        )));
    }
    t.to_i64_vec()
}

/// The single value of an integer tensor with one element.
pub(super) fn int_scalar(t: &Tensor, what: &str) -> Result<i64> {
    if t.num_elements() != 1 {
        return Err(Error::invalid_argument(format!(
            "{what} must be a scalar, got shape {}",
            shape_str(t.dims())
        )));
    }
    Ok(t.to_i64_vec()?[0])
}

/// Dims from a shape vector, each non-negative, with an element count that fits.
pub(super) fn dims_from(values: &[i64], what: &str) -> Result<Vec<usize>> {
    let dims = values
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| {
                Error::invalid_argument(format!("{what}: dimension {i} must be >= 0, got {d}"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    element_count(&dims)?;
    Ok(dims)
}

/// An int32 or int64 tensor of `values`; InvalidArgument when a value does not fit int32.
pub(super) fn index_tensor(dtype: DType, dims: &[usize], values: Vec<i64>) -> Result<Tensor> {
    match dtype {
        DType::I64 => Tensor::new(dims, values),
        DType::I32 => {
            let v = values
                .iter()
                .map(|&x| {
                    i32::try_from(x).map_err(|_| {
                        Error::invalid_argument(format!(
                            "value {x} does not fit the int32 output type"
                        ))
                    })
                })
                .collect::<Result<Vec<i32>>>()?;
            Tensor::new(dims, v)
        }
        other => Err(Error::invalid_argument(format!(
            "index outputs must be int32 or int64, not {other}"
        ))),
    }
}

/// A vector of `n` copies of `value`; ResourceExhausted instead of an abort when the
/// memory is not there.
pub(super) fn filled<T: Clone>(n: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::resource_exhausted(format!(
            "cannot allocate {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    v.resize(n, value);
    Ok(v)
}

/// Runs `$body` once per listed dtype with `$T` aliased to its element type; any other
/// dtype gives `$other`.
macro_rules! dispatch_dtype {
    ($dtype:expr, $T:ident => $body:expr, [$($V:ident: $t:ty),*], $other:ident => $err:expr) => {{
        use rill_graph::DType as D;
        match $dtype {
            $(D::$V => {
                type $T = $t;
                $body
            })*
            $other => $err,
        }
    }};
}

/// Runs `$body` with `$T` aliased to the element type of `$dtype` (every dtype that holds
/// values); other dtypes are Unimplemented.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::cpu::array::util::dispatch_dtype!($dtype, $T => $body, [
            F32: f32, F64: f64, F16: half::f16, BF16: half::bf16, I8: i8, I16: i16, I32: i32,
            I64: i64, U8: u8, U16: u16, U32: u32, U64: u64, Bool: bool, String: Vec<u8>
        ], other => Err(rill_graph::Error::unimplemented(format!(
            "tensors of dtype {other} hold no values"
        ))))
    };
}

/// Runs `$body` with `$T` aliased to the element type of a numeric `$dtype`; bool, string
/// and the rest are Unimplemented naming `$op`.
macro_rules! with_numeric {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        $crate::cpu::array::util::dispatch_dtype!($dtype, $T => $body, [
            F32: f32, F64: f64, F16: half::f16, BF16: half::bf16, I8: i8, I16: i16, I32: i32,
            I64: i64, U8: u8, U16: u16, U32: u32, U64: u64
        ], other => Err($crate::unsupported_dtype($op, other)))
    };
}

pub(super) use {dispatch_dtype, with_dtype, with_numeric};
