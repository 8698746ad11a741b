//! Reductions over axes: `Sum`, `Mean`, `Prod`, `Max`, `Min`, `All`, `Any` (with
//! `keep_dims`) and the index reductions `ArgMax`, `ArgMin`; with builder methods that add
//! the axes as an int32 `Const`.
//!
//! Shapes follow TensorFlow's `ReductionShape`: with constant axes (negative ones count from
//! the end, repeats allowed) the reduced dims are dropped or kept as 1; unknown axes give an
//! unknown shape, or with `keep_dims` an unknown shape of the input's rank.
//!
//! Gradients follow TensorFlow's `math_grad.py`: `Sum`/`Mean` broadcast the gradient back,
//! `Max`/`Min` share it between the tied extrema, `Prod` uses exclusive cumulative
//! products (exact when elements are zero); `All`, `Any`, `ArgMax`, `ArgMin` are not
//! differentiable.

use std::collections::BTreeSet;

use rill_graph::{DType, Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{type_attr, type_attr_default, with_rank_at_most, INDEX, NUMBER};
use crate::gradient::{reduced_shape, scalar_like, sum_axes, unreduce, GradContext};
use crate::Builder;

/// `(op, input and output dtype spec)`; `None` is the bool-only `All`/`Any`.
const REDUCTIONS: &[(&str, Option<&str>)] = &[
    ("Sum", Some(NUMBER)),
    ("Mean", Some(NUMBER)),
    ("Prod", Some(NUMBER)),
    ("Max", Some(NUMBER)),
    ("Min", Some(NUMBER)),
    ("All", None),
    ("Any", None),
];

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for &(name, types) in REDUCTIONS {
        let t = if types.is_some() { "T" } else { "bool" };
        let mut def = OpDef::build(name)
            .input(&format!("input: {t}"))
            .input("reduction_indices: Tidx")
            .output(&format!("output: {t}"))
            .attr("keep_dims: bool = false");
        if let Some(set) = types {
            def = def.attr(&type_attr("T", set));
        }
        r.register(
            def.attr(&type_attr_default("Tidx", INDEX, "DT_INT32"))
                .shape_fn(reduction_shape),
        )?;
    }
    for name in ["ArgMax", "ArgMin"] {
        r.register(
            OpDef::build(name)
                .input("input: T")
                .input("dimension: Tidx")
                .output("output: output_type")
                .attr(&type_attr("T", &format!("{NUMBER}, bool")))
                .attr(&type_attr_default(
                    "Tidx",
                    "int16, int32, int64",
                    "DT_INT32",
                ))
                .attr(&type_attr_default(
                    "output_type",
                    "int16, uint16, int32, int64",
                    "DT_INT64",
                ))
                .shape_fn(arg_reduction_shape),
        )?;
    }
    r.gradient("Sum", |c| {
        Ok(c.only(unreduce(c.b, c.dy(0)?, c.x(0), c.x(1))?))
    })?;
    r.gradient("Mean", mean_grad)?;
    r.gradient("Max", min_max_grad)?;
    r.gradient("Min", min_max_grad)?;
    r.gradient("Prod", prod_grad)?;
    for op in ["All", "Any", "ArgMax", "ArgMin"] {
        r.no_gradient(op)?;
    }
    Ok(())
}

/// `Mean`: the `Sum` gradient divided by the number of elements averaged.
fn mean_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, y) = (c.x(0), c.y(0));
    let g = unreduce(b, c.dy(0)?, x, c.x(1))?;
    let dtype = c.dtype(x);
    let factor = match (b.shape(x).num_elements(), b.shape(y).num_elements()) {
        (Some(n), Some(m)) => scalar_like(b, dtype, (n / m.max(1)) as f64)?,
        _ => {
            let one = b.scalar_const(1i32)?;
            let n = b.floor_div(b.size(x)?, b.maximum(b.size(y)?, one)?)?;
            b.cast(n, dtype)?
        }
    };
    Ok(c.only(b.div(g, factor)?))
}

/// `Max`/`Min` (TensorFlow's rule): the gradient is split evenly between the elements
/// equal to the result.
fn min_max_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, axes) = (c.x(0), c.x(1));
    let kept = reduced_shape(b, x, axes)?;
    let y = b.reshape(c.y(0), kept)?;
    let g = b.reshape(c.dy(0)?, kept)?;
    let hits = b.cast(b.equal(y, x)?, c.dtype(x))?;
    let count = sum_axes(b, hits, axes, true)?;
    Ok(c.only(b.mul(b.div(hits, count)?, g)?))
}

/// `Prod` (TensorFlow's rule, exact with zeros): the product of all other elements of each
/// reduced group, from exclusive cumulative products both ways. Needs constant axes and a
/// known rank.
fn prod_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let x = c.x(0);
    let (Some(rank), Some(axes)) = (b.shape(x).rank(), c.const_ints(c.x(1))) else {
        return Err(c.error(
            rill_graph::Code::Unimplemented,
            "the gradient of Prod needs constant reduction axes and an input of known rank",
        ));
    };
    let g = unreduce(b, c.dy(0)?, x, c.x(1))?;
    let r = rank as i64;
    let reduced: BTreeSet<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + r } else { a })
        .filter(|a| (0..r).contains(a))
        .collect();
    let other: Vec<i64> = (0..r).filter(|a| !reduced.contains(a)).collect();
    let perm: Vec<i64> = reduced
        .iter()
        .copied()
        .chain(other.iter().copied())
        .collect();
    let shape = b.shape_of(x)?;
    let count = |idx: &[i64]| -> Result<Output> {
        let dims = b.gather(shape, b.index_const(idx)?, 0)?;
        b.prod(dims, &[0], false)
    };
    let reduced_idx: Vec<i64> = reduced.iter().copied().collect();
    let flat = b.stack(&[count(&reduced_idx)?, count(&other)?], 0)?;
    let permuted = b.transpose_perm(x, &perm)?;
    let rows = b.reshape(permuted, flat)?;
    let left = b.cumprod(rows, 0, true, false)?;
    let right = b.cumprod(rows, 0, true, true)?;
    let others = b.reshape(b.mul(left, right)?, b.shape_of(permuted)?)?;
    let back = b.transpose(others, b.invert_permutation(b.index_const(&perm)?)?)?;
    Ok(c.only(b.mul(g, back)?))
}

fn reduction_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    with_rank_at_most(cx, 1, 1)?;
    let keep_dims = cx.attr_bool("keep_dims")?;
    let input = cx.input(0)?;
    let (Some(axes), Some(rank)) = (cx.input_ints(1)?, input.rank()) else {
        return Ok(vec![match (keep_dims, input.rank()) {
            (true, Some(rank)) => Shape::unknown_dims(rank),
            _ => Shape::unknown(),
        }]);
    };
    let mut reduced = BTreeSet::new();
    for a in axes {
        if a < -(rank as i64) || a >= rank as i64 {
            return Err(cx.error(format!(
                "invalid reduction axis {a} (from '{}') for input '{}' of shape {input} (rank {rank})",
                cx.input_names[1], cx.input_names[0]
            )));
        }
        reduced.insert(if a < 0 { a + rank as i64 } else { a } as usize);
    }
    let dims = input.dims().unwrap_or_default();
    let out =
        dims.iter()
            .enumerate()
            .filter_map(|(i, &d)| match (reduced.contains(&i), keep_dims) {
                (false, _) => Some(d),
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
            });
    Ok(vec![Shape::from_dims(out)])
}

fn arg_reduction_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    cx.with_rank(1, 0)?;
    let input = cx.input(0)?;
    let Some(rank) = input.rank() else {
        return Ok(vec![Shape::unknown()]);
    };
    if rank <= 1 {
        return Ok(vec![Shape::scalar()]);
    }
    let Some(axis) = cx.input_ints(1)?.and_then(|v| v.first().copied()) else {
        return Ok(vec![Shape::unknown_dims(rank - 1)]);
    };
    if axis < -(rank as i64) || axis >= rank as i64 {
        return Err(cx.error(format!(
            "dimension {axis} (from '{}') must be in [-{rank}, {rank}) for input '{}' of shape {input}",
            cx.input_names[1], cx.input_names[0]
        )));
    }
    let axis = if axis < 0 { axis + rank as i64 } else { axis } as usize;
    let dims = input.dims().unwrap_or_default();
    Ok(vec![Shape::from_dims(
        dims.iter()
            .enumerate()
            .filter(|&(i, _)| i != axis)
            .map(|(_, &d)| d),
    )])
}

impl Builder {
    /// Reduction op `op` of `x` over `axes` (an int32 `Const` is added for them).
    pub fn reduce(&self, op: &str, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        let axes = self.int32_vector_const(axes)?;
        self.op(op)
            .input(x)
            .input(axes)
            .attr("keep_dims", keep_dims)
            .build_output()
    }

    /// `Sum` of `x` over `axes`.
    pub fn sum(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("Sum", x, axes, keep_dims)
    }

    /// `Mean` of `x` over `axes`.
    pub fn mean(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("Mean", x, axes, keep_dims)
    }

    /// `Prod` of `x` over `axes`.
    pub fn prod(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("Prod", x, axes, keep_dims)
    }

    /// `Max` of `x` over `axes` (`tf.reduce_max`).
    pub fn reduce_max(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("Max", x, axes, keep_dims)
    }

    /// `Min` of `x` over `axes` (`tf.reduce_min`).
    pub fn reduce_min(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("Min", x, axes, keep_dims)
    }

    /// `All` of bool `x` over `axes` (`tf.reduce_all`).
    pub fn reduce_all(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("All", x, axes, keep_dims)
    }

    /// `Any` of bool `x` over `axes` (`tf.reduce_any`).
    pub fn reduce_any(&self, x: Output, axes: &[i64], keep_dims: bool) -> Result<Output> {
        self.reduce("Any", x, axes, keep_dims)
    }

    /// `ArgMax` of `x` along `axis`, as int64 indices.
    pub fn argmax(&self, x: Output, axis: i64) -> Result<Output> {
        let axis = self.int32_scalar_const(axis)?;
        self.op("ArgMax")
            .input(x)
            .input(axis)
            .attr("output_type", DType::I64)
            .build_output()
    }

    /// `ArgMin` of `x` along `axis`, as int64 indices.
    pub fn argmin(&self, x: Output, axis: i64) -> Result<Output> {
        let axis = self.int32_scalar_const(axis)?;
        self.op("ArgMin")
            .input(x)
            .input(axis)
            .attr("output_type", DType::I64)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::Tensor;

    fn reduce(op: &str, keep: bool, input: &str, axes: Tensor) -> Result<String> {
        let a = attrs(&[("T", DType::F32.into()), ("keep_dims", keep.into())]);
        let axes_shape = axes.shape().to_string();
        infer_with_values(
            op,
            &a,
            &format!("{input};{axes_shape}"),
            &[None, Some(axes)],
        )
    }

    #[test]
    fn constant_axes() {
        let v = |a: Vec<i32>| Tensor::vector(a);
        assert_eq!(
            reduce("Sum", false, "[2,3,4]", v(vec![1])).unwrap(),
            "[2,4]"
        );
        assert_eq!(
            reduce("Sum", true, "[2,3,4]", v(vec![1])).unwrap(),
            "[2,1,4]"
        );
        assert_eq!(
            reduce("Mean", false, "[2,?,4]", v(vec![-1])).unwrap(),
            "[2,?]"
        );
        assert_eq!(
            reduce("Mean", false, "[2,3,4]", v(vec![0, -1])).unwrap(),
            "[3]"
        );
        assert_eq!(
            reduce("Max", true, "[2,3,4]", v(vec![0, 2, -1])).unwrap(),
            "[1,3,1]"
        );
        assert_eq!(reduce("Prod", false, "[2,3]", v(vec![])).unwrap(), "[2,3]");
        assert_eq!(reduce("Sum", false, "[2,3]", v(vec![0, 1])).unwrap(), "[]");
        assert_eq!(
            reduce("Min", false, "[2,3]", Tensor::scalar(1i32)).unwrap(),
            "[2]"
        );
        assert_eq!(
            reduce("Sum", false, "[2,3]", Tensor::vector(vec![1i64])).unwrap(),
            "[2]"
        );
        let b = attrs(&[("keep_dims", true.into())]);
        let all = infer_with_values(
            "All",
            &b,
            "[2,3];[1]",
            &[None, Some(Tensor::vector(vec![0i32]))],
        );
        assert_eq!(all.unwrap(), "[1,3]");
    }

    #[test]
    fn unknown_axes_or_rank() {
        let f = |keep: bool| attrs(&[("T", DType::F32.into()), ("keep_dims", keep.into())]);
        assert_eq!(infer("Sum", &f(false), "[2,3];[1]").unwrap(), "?");
        assert_eq!(infer("Sum", &f(true), "[2,3];[?]").unwrap(), "[?,?]");
        assert_eq!(infer("Sum", &f(true), "?;[1]").unwrap(), "?");
        let axes = Tensor::vector(vec![0i32]);
        assert_eq!(
            infer_with_values("Sum", &f(true), "?;[1]", &[None, Some(axes)]).unwrap(),
            "?"
        );
        assert!(infer("Sum", &f(false), "[2,3];[1,1]").is_err());
    }

    #[test]
    fn bad_axes_name_the_inputs() {
        let e = reduce("Sum", false, "[2,3]", Tensor::vector(vec![2i32])).unwrap_err();
        assert!(
            e.message.contains("2") && e.message.contains("in0:0") && e.message.contains("[2,3]"),
            "{e}"
        );
        assert!(reduce("Sum", false, "[2,3]", Tensor::vector(vec![-3i32])).is_err());
    }

    #[test]
    fn arg_reductions() {
        let a = attrs(&[("T", DType::F32.into())]);
        let axis = |v: i32| vec![None, Some(Tensor::scalar(v))];
        assert_eq!(
            infer_with_values("ArgMax", &a, "[2,3,4];[]", &axis(1)).unwrap(),
            "[2,4]"
        );
        assert_eq!(
            infer_with_values("ArgMin", &a, "[2,3,4];[]", &axis(-1)).unwrap(),
            "[2,3]"
        );
        assert_eq!(infer("ArgMax", &a, "[2,3,4];[]").unwrap(), "[?,?]");
        assert_eq!(infer("ArgMax", &a, "[5];[]").unwrap(), "[]");
        assert_eq!(infer("ArgMax", &a, "?;[]").unwrap(), "?");
        assert!(infer_with_values("ArgMax", &a, "[2,3];[]", &axis(2)).is_err());
        assert!(infer("ArgMax", &a, "[2,3];[1]").is_err());
        let r = crate::registry();
        let d = r.lookup("ArgMax").unwrap();
        let mut full = a.clone();
        d.complete_attrs(&mut full).unwrap();
        assert_eq!(d.arg_types(&d.outputs, &full).unwrap(), vec![DType::I64]);
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3, 4]).unwrap();
        assert_eq!(b.shape(b.sum(x, &[1], false).unwrap()).to_string(), "[?,4]");
        assert_eq!(
            b.shape(b.mean(x, &[-1, 0], true).unwrap()).to_string(),
            "[1,3,1]"
        );
        assert_eq!(
            b.shape(b.reduce_max(x, &[], false).unwrap()).to_string(),
            "[?,3,4]"
        );
        let am = b.argmax(x, -1).unwrap();
        assert_eq!(
            (b.shape(am).to_string(), b.dtype(am)),
            ("[?,3]".to_string(), DType::I64)
        );
        let e = b.sum(x, &[3], false).unwrap_err().to_string();
        assert!(e.contains("x:0") && e.contains("[?,3,4]"), "{e}");
        assert!(b.sum(x, &[1 << 40], false).is_err());
    }
}
