//! The interface of gradient functions and the graph helpers they share.
//!
//! A [`GradFn`] receives a [`GradContext`]: the builder, the forward node, its data inputs
//! and outputs, and the gradient arriving at each output (`None` where the differentiated
//! value does not depend on that output). It adds the nodes computing the gradient with
//! respect to each data input and returns one entry per input; `None` means no gradient
//! flows there (shape, index and axis inputs, integer casts). Each op's function is
//! registered beside its definition ([`crate::Registry::gradient`]); the walk over the graph
//! lives in `rill-autodiff`.
//!
//! The shared helpers follow TensorFlow's gradient code: [`unbroadcast`] and [`sum_to`]
//! reduce a broadcast gradient back to an operand's shape (BroadcastGradientArgs + Sum +
//! Reshape, or constant axes when shapes are known at graph time), [`reduced_shape`] is the
//! shape of a reduction with its axes kept as 1.
//!
//! Invariants: a gradient function returns exactly one entry per data input, with that
//! input's dtype, and only adds nodes; its errors name the forward node and op.

use std::fmt;

use rill_graph::{AttrValue, Code, DType, Error, NodeId, Output, Result, Tensor};

use crate::array::broadcast_with_reduction;
use crate::{Builder, NodeBuilder};

/// Computes the gradients of a node's data inputs from the gradients of its outputs.
pub type GradFn = fn(&GradContext) -> Result<Vec<Option<Output>>>;

/// An op's gradient entry.
#[derive(Clone, Copy)]
pub enum Gradient {
    /// The op's gradient function.
    Fn(GradFn),
    /// TensorFlow's `NotDifferentiable`: no gradient flows through the op.
    NotDifferentiable,
}

impl fmt::Debug for Gradient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gradient::Fn(_) => f.write_str("Gradient::Fn"),
            Gradient::NotDifferentiable => f.write_str("Gradient::NotDifferentiable"),
        }
    }
}

/// What a gradient function sees.
pub struct GradContext<'a> {
    pub b: &'a Builder,
    /// The forward node being differentiated.
    pub node: NodeId,
    /// Its data inputs.
    pub inputs: Vec<Output>,
    /// Its outputs.
    pub outputs: Vec<Output>,
    /// The gradient arriving at each output (`dy`), `None` where there is none.
    pub grads: Vec<Option<Output>>,
}

impl<'a> GradContext<'a> {
    /// The context for `node`, with `grads` (one per output; missing entries are `None`).
    pub fn new(b: &'a Builder, node: NodeId, mut grads: Vec<Option<Output>>) -> GradContext<'a> {
        let (inputs, n_out) = {
            let g = b.graph();
            let n = g.node(node);
            (n.inputs.clone(), n.num_outputs())
        };
        grads.resize(n_out, None);
        GradContext {
            b,
            node,
            inputs,
            outputs: (0..n_out).map(|i| node.output(i)).collect(),
            grads,
        }
    }

    /// The forward node's name.
    pub fn node_name(&self) -> String {
        self.b.graph().node(self.node).name.clone()
    }

    /// The forward node's op type.
    pub fn op_type(&self) -> String {
        self.b.graph().node(self.node).op_name().to_string()
    }

    /// Data input `i`.
    pub fn x(&self, i: usize) -> Output {
        self.inputs[i]
    }

    /// Output `i`.
    pub fn y(&self, i: usize) -> Output {
        self.outputs[i]
    }

    /// The gradient arriving at output `i`; zeros of the output's shape when none arrives.
    pub fn dy(&self, i: usize) -> Result<Output> {
        match self.grads.get(i).copied().flatten() {
            Some(g) => Ok(g),
            None => self.b.zeros_like(self.outputs[i]),
        }
    }

    pub fn dtype(&self, o: Output) -> DType {
        self.b.dtype(o)
    }

    /// An error about this node.
    pub fn error(&self, code: Code, message: impl Into<String>) -> Error {
        Error::new(code, message).at_node(&self.node_name(), &self.op_type())
    }

    /// The node's attr `name`.
    pub fn attr(&self, name: &str) -> Result<AttrValue> {
        self.b
            .graph()
            .node(self.node)
            .attr(name)
            .cloned()
            .ok_or_else(|| self.error(Code::Internal, format!("attr '{name}' is missing")))
    }

    fn typed<T>(&self, name: &str, get: impl Fn(&AttrValue) -> Option<T>) -> Result<T> {
        let v = self.attr(name)?;
        get(&v).ok_or_else(|| {
            self.error(
                Code::InvalidArgument,
                format!(
                    "attr '{name}' is a {}, not the expected kind",
                    v.type_name()
                ),
            )
        })
    }

    pub fn attr_bool(&self, name: &str) -> Result<bool> {
        self.typed(name, AttrValue::as_bool)
    }

    pub fn attr_int(&self, name: &str) -> Result<i64> {
        self.typed(name, AttrValue::as_int)
    }

    pub fn attr_float(&self, name: &str) -> Result<f32> {
        self.typed(name, AttrValue::as_float)
    }

    pub fn attr_str(&self, name: &str) -> Result<String> {
        self.typed(name, |v| v.as_str().map(str::to_string))
    }

    pub fn attr_ints(&self, name: &str) -> Result<Vec<i64>> {
        self.typed(name, |v| v.as_int_list().map(<[i64]>::to_vec))
    }

    pub fn attr_type(&self, name: &str) -> Result<DType> {
        self.typed(name, AttrValue::as_type)
    }

    /// `nb` with the forward node's attrs `names` copied onto it.
    pub fn with_attrs<'b>(
        &self,
        mut nb: NodeBuilder<'b>,
        names: &[&str],
    ) -> Result<NodeBuilder<'b>> {
        for &name in names {
            nb = nb.attr(name, self.attr(name)?);
        }
        Ok(nb)
    }

    /// The value of `o` when it is a `Const` (seen through `Identity`), as integers.
    pub fn const_ints(&self, o: Output) -> Option<Vec<i64>> {
        const_value(self.b, o)?.to_i64_vec().ok()
    }

    /// The fully known dims of `o`, if its shape is known at graph time.
    pub fn static_dims(&self, o: Output) -> Option<Vec<usize>> {
        self.b.shape(o).to_known()
    }

    /// `Some(g)` for every input: the common case of a single differentiable input.
    pub fn only(&self, g: Output) -> Vec<Option<Output>> {
        let mut v = vec![None; self.inputs.len()];
        if let Some(first) = v.first_mut() {
            *first = Some(g);
        }
        v
    }
}

/// The value of `o` when it is a `Const` (seen through `Identity`).
pub fn const_value(b: &Builder, o: Output) -> Option<Tensor> {
    let g = b.graph();
    let mut cur = o;
    loop {
        let n = g.node(cur.node);
        match n.op_name() {
            "Const" => return n.attr("value")?.as_tensor().cloned(),
            "Identity" => cur = *n.inputs.first()?,
            _ => return None,
        }
    }
}

/// A scalar constant `v` of `dtype` (floats through a `Cast` when not f32/f64).
pub fn scalar_like(b: &Builder, dtype: DType, v: f64) -> Result<Output> {
    match dtype {
        DType::F64 => b.scalar_const(v),
        DType::F32 => b.scalar_const(v as f32),
        DType::I32 => b.scalar_const(v as i32),
        DType::I64 => b.scalar_const(v as i64),
        other => {
            let c = b.scalar_const(v as f32)?;
            b.cast(c, other)
        }
    }
}

/// `g` reshaped to `x`'s shape (a constant shape when it is known at graph time).
pub fn reshape_like(b: &Builder, g: Output, x: Output) -> Result<Output> {
    match b.shape(x).to_known() {
        Some(dims) => {
            let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            b.reshape_to(g, &dims)
        }
        None => b.reshape(g, b.shape_of(x)?),
    }
}

/// `Sum` of `x` over the axes held by the int vector `axes`.
pub fn sum_axes(b: &Builder, x: Output, axes: Output, keep_dims: bool) -> Result<Output> {
    b.op("Sum")
        .input(x)
        .input(axes)
        .attr("keep_dims", keep_dims)
        .build_output()
}

/// The sum of all elements of `x`, a scalar.
pub fn sum_all(b: &Builder, x: Output) -> Result<Output> {
    match b.shape(x).rank() {
        Some(rank) => b.sum(x, &(0..rank as i64).collect::<Vec<_>>(), false),
        None => {
            let (zero, one) = (b.scalar_const(0i32)?, b.scalar_const(1i32)?);
            let axes = b.range(zero, b.rank(x)?, one)?;
            sum_axes(b, x, axes, false)
        }
    }
}

/// `g` (with the broadcast shape of `x` and something else) summed back to `x`'s shape.
pub fn sum_to(b: &Builder, g: Output, x: Output) -> Result<Output> {
    let (gs, xs) = (b.shape(g).to_known(), b.shape(x).to_known());
    if let (Some(gd), Some(xd)) = (&gs, &xs) {
        if gd == xd {
            return Ok(g);
        }
        let to_i64 = |d: &[usize]| d.iter().map(|&n| n as i64).collect::<Vec<_>>();
        if let Some(r) = broadcast_with_reduction(&to_i64(gd), &to_i64(xd)) {
            let summed = b.sum(g, &r.r1, false)?;
            return b.reshape_to(summed, &to_i64(xd));
        }
    }
    let sx = b.shape_of(x)?;
    let sg = b.shape_of(g)?;
    let (_, rx) = b.broadcast_gradient_args(sg, sx)?;
    let summed = sum_axes(b, g, rx, false)?;
    b.reshape(summed, sx)
}

/// The gradients `gx`, `gy` of a broadcasting binary op `f(x, y)` (both with the output's
/// shape) reduced to the shapes of `x` and `y`.
pub fn unbroadcast(
    b: &Builder,
    x: Output,
    y: Output,
    gx: Output,
    gy: Output,
) -> Result<(Output, Output)> {
    let (xs, ys) = (b.shape(x).to_known(), b.shape(y).to_known());
    if let (Some(xd), Some(yd)) = (&xs, &ys) {
        if xd == yd {
            return Ok((gx, gy));
        }
        let to_i64 = |d: &[usize]| d.iter().map(|&n| n as i64).collect::<Vec<_>>();
        if let Some(r) = broadcast_with_reduction(&to_i64(xd), &to_i64(yd)) {
            // An operand with the output's shape keeps its gradient as is.
            let reduce = |g: Output, dims: Vec<i64>, axes: &[i64]| -> Result<Output> {
                if dims == r.shape {
                    return Ok(g);
                }
                b.reshape_to(b.sum(g, axes, false)?, &dims)
            };
            return Ok((
                reduce(gx, to_i64(xd), &r.r0)?,
                reduce(gy, to_i64(yd), &r.r1)?,
            ));
        }
    }
    let sx = b.shape_of(x)?;
    let sy = b.shape_of(y)?;
    let (rx, ry) = b.broadcast_gradient_args(sx, sy)?;
    let gx = b.reshape(sum_axes(b, gx, rx, false)?, sx)?;
    let gy = b.reshape(sum_axes(b, gy, ry, false)?, sy)?;
    Ok((gx, gy))
}

/// The int32 shape of `x` with the dims listed in the int `axes` (a scalar or vector,
/// negative counting from the end) set to 1: the shape of a reduction with `keep_dims`.
pub fn reduced_shape(b: &Builder, x: Output, axes: Output) -> Result<Output> {
    let shape = b.shape(x);
    if let (Some(dims), Some(axes)) = (shape.dims(), const_value(b, axes)) {
        if let Ok(axes) = axes.to_i64_vec() {
            let rank = dims.len() as i64;
            let mut keep = vec![true; dims.len()];
            for a in axes {
                let a = if a < 0 { a + rank } else { a };
                if (0..rank).contains(&a) {
                    keep[a as usize] = false;
                }
            }
            if let Some(known) = shape.to_known() {
                let out: Vec<i64> = known
                    .iter()
                    .zip(&keep)
                    .map(|(&d, &k)| if k { d as i64 } else { 1 })
                    .collect();
                return b.index_const(&out);
            }
            // shape * keep + (1 - keep), in int32.
            let mask: Vec<i32> = keep.iter().map(|&k| i32::from(k)).collect();
            let ones: Vec<i32> = keep.iter().map(|&k| i32::from(!k)).collect();
            let s = b.shape_of(x)?;
            let kept = b.mul(s, b.vector_const(mask)?)?;
            return b.add(kept, b.vector_const(ones)?);
        }
    }
    // TensorFlow's dynamic form: DynamicStitch([range(rank), axes], [shape, ones]).
    let s = b.shape_of(x)?;
    let rank = b.size(s)?;
    let axes = b.cast(axes, DType::I32)?;
    let axes = b.reshape_to(axes, &[-1])?;
    let axes = b.floor_mod(b.add(axes, rank)?, rank)?;
    let ones = b.fill(b.shape_of(axes)?, b.scalar_const(1i32)?)?;
    let all = b.range(b.scalar_const(0i32)?, rank, b.scalar_const(1i32)?)?;
    b.dynamic_stitch(&[all, axes], &[s, ones])
}

/// `g`, the gradient of a reduction of `x` over `axes` (shape: the reduced output's),
/// broadcast back to `x`'s shape.
pub fn unreduce(b: &Builder, g: Output, x: Output, axes: Output) -> Result<Output> {
    let kept = reduced_shape(b, x, axes)?;
    let g = b.reshape(g, kept)?;
    if b.shape(g).to_known().is_some() && b.shape(g) == b.shape(x) {
        return Ok(g);
    }
    b.broadcast_to(g, b.shape_of(x)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_use_constants_when_shapes_are_known() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [3i64]).unwrap();
        let g = b.add(x, y).unwrap();
        let (gx, gy) = unbroadcast(&b, x, y, g, g).unwrap();
        assert_eq!(gx, g);
        assert_eq!(b.shape(gy).to_string(), "[3]");
        let s = reduced_shape(&b, x, b.index_const(&[-1]).unwrap()).unwrap();
        let t = const_value(&b, s).unwrap();
        assert_eq!(t.to_i64_vec().unwrap(), vec![2, 1]);
    }

    #[test]
    fn dynamic_shapes_use_broadcast_gradient_args() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [3i64]).unwrap();
        let g = b.add(x, y).unwrap();
        let (_, gy) = unbroadcast(&b, x, y, g, g).unwrap();
        let graph = b.graph();
        assert!(graph
            .nodes()
            .any(|(_, n)| n.op_name() == "BroadcastGradientArgs"));
        assert_eq!(graph.node(gy.node).op_name(), "Reshape");
        drop(graph);
        let s = reduced_shape(&b, x, b.index_const(&[0]).unwrap()).unwrap();
        assert_eq!(b.shape(s).to_string(), "[2]");
    }

    #[test]
    fn context_reads_attrs_and_fills_missing_grads_with_zeros() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 2]).unwrap();
        let m = b.matmul_t(x, x, true, false).unwrap();
        let cx = GradContext::new(&b, m.node, vec![]);
        assert!(cx.attr_bool("transpose_a").unwrap());
        assert_eq!(
            cx.attr_int("transpose_a").unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(cx.attr("nope").unwrap_err().node.as_deref(), Some("MatMul"));
        let dy = cx.dy(0).unwrap();
        assert_eq!(b.graph().node(dy.node).op_name(), "ZerosLike");
        assert_eq!(cx.only(dy), vec![Some(dy), None]);
    }
}
