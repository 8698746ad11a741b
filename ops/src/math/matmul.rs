//! Matrix products: `MatMul` (rank-2, `transpose_a`/`transpose_b`) and the batched
//! `BatchMatMul` (batch dims must match), `BatchMatMulV2` and `BatchMatMulV3` (batch dims
//! broadcast; V3 has separate input and output dtypes `Ta`, `Tb`, `Tout`), with builder
//! methods.
//!
//! Shapes follow TensorFlow's `MatMulShape` / `BatchMatMul(V2)Shape`; inner dimensions that
//! differ are an error naming both inputs and their shapes.
//!
//! Gradients (`MatMul`, `BatchMatMul`, `BatchMatMulV2`, `BatchMatMulV3`) are products with
//! the incoming gradient for each transpose combination, as TensorFlow's; a batched
//! operand's gradient is summed over the batch dims it was broadcast along. V3's products
//! are V3 nodes whose `Tout` is the operand's dtype (marked `grad_x` / `grad_y`, as TF's
//! `math_ops.matmul(..., grad_a=True)`).

use rill_graph::{DType, Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{broadcast_shapes, concat_shapes, subshape, type_attr};
use crate::array::{broadcast_with_reduction, StridedSliceMasks};
use crate::gradient::{sum_axes, GradContext};
use crate::Builder;

const MATMUL: &str = "bfloat16, half, float, double, int32, int64, uint8, uint16, uint32, uint64";
const BATCH_V1: &str = "bfloat16, half, float, double, int32, int64";
const BATCH_V2: &str =
    "bfloat16, half, float, double, int16, int32, int64, uint8, uint16, uint32, uint64";
const BATCH_V3_IN: &str = "bfloat16, half, float, double, uint8, int8, int16, int32, int64";
const BATCH_V3_OUT: &str = "bfloat16, half, float, double, int16, int32, int64";

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("MatMul")
            .input("a: T")
            .input("b: T")
            .output("product: T")
            .attr("transpose_a: bool = false")
            .attr("transpose_b: bool = false")
            .attr(&type_attr("T", MATMUL))
            .attr("grad_a: bool = false")
            .attr("grad_b: bool = false")
            .shape_fn(matmul_shape),
    )?;
    for (name, set) in [("BatchMatMul", BATCH_V1), ("BatchMatMulV2", BATCH_V2)] {
        r.register(
            OpDef::build(name)
                .input("x: T")
                .input("y: T")
                .output("output: T")
                .attr(&type_attr("T", set))
                .attr("adj_x: bool = false")
                .attr("adj_y: bool = false")
                .attr("grad_x: bool = false")
                .attr("grad_y: bool = false")
                .shape_fn(if name == "BatchMatMul" {
                    batch_matmul_shape
                } else {
                    batch_matmul_v2_shape
                }),
        )?;
    }
    r.register(
        OpDef::build("BatchMatMulV3")
            .input("x: Ta")
            .input("y: Tb")
            .output("output: Tout")
            .attr(&type_attr("Ta", BATCH_V3_IN))
            .attr(&type_attr("Tb", BATCH_V3_IN))
            .attr(&type_attr("Tout", BATCH_V3_OUT))
            .attr("adj_x: bool = false")
            .attr("adj_y: bool = false")
            .attr("grad_x: bool = false")
            .attr("grad_y: bool = false")
            .shape_fn(batch_matmul_v2_shape),
    )?;
    r.gradient("MatMul", matmul_grad)?;
    r.gradient("BatchMatMul", batch_matmul_grad)?;
    r.gradient("BatchMatMulV2", batch_matmul_grad)?;
    r.gradient("BatchMatMulV3", batch_matmul_grad)
}

/// The products giving `(da, db)` for `a · b` with `a`/`b` transposed per `(ta, tb)`, as
/// `(lhs, rhs, transpose lhs, transpose rhs)` each.
type Product = (Output, Output, bool, bool);
fn product_grads(a: Output, b: Output, g: Output, ta: bool, tb: bool) -> (Product, Product) {
    match (ta, tb) {
        (false, false) => ((g, b, false, true), (a, g, true, false)),
        (false, true) => ((g, b, false, false), (g, a, true, false)),
        (true, false) => ((b, g, false, true), (a, g, false, false)),
        (true, true) => ((b, g, true, true), (g, a, true, true)),
    }
}

fn matmul_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let (ta, tb) = (c.attr_bool("transpose_a")?, c.attr_bool("transpose_b")?);
    let (pa, pb) = product_grads(c.x(0), c.x(1), c.dy(0)?, ta, tb);
    let da = c.b.matmul_t(pa.0, pa.1, pa.2, pa.3)?;
    let db = c.b.matmul_t(pb.0, pb.1, pb.2, pb.3)?;
    Ok(vec![Some(da), Some(db)])
}

/// Batched products: the same products, then each gradient summed over the batch dims its
/// operand was broadcast along.
fn batch_matmul_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    let b = c.b;
    let (x, y) = (c.x(0), c.x(1));
    let (adj_x, adj_y) = (c.attr_bool("adj_x")?, c.attr_bool("adj_y")?);
    let (px, py) = product_grads(x, y, c.dy(0)?, adj_x, adj_y);
    let v3 = c.op_type() == "BatchMatMulV3";
    // One product; for V3 a V3 node giving `dtype`, flagged as the gradient of `flag`.
    let product = |(l, r, al, ar): Product, dtype: DType, flag: &str| {
        if v3 {
            b.op("BatchMatMulV3")
                .input(l)
                .input(r)
                .attr("adj_x", al)
                .attr("adj_y", ar)
                .attr("Tout", dtype)
                .attr(flag, true)
                .build_output()
        } else {
            b.batch_matmul(l, r, al, ar)
        }
    };
    let dx = product(px, b.dtype(x), "grad_x")?;
    let dy = product(py, b.dtype(y), "grad_y")?;
    let (sx, sy) = (b.shape(x), b.shape(y));
    if let (Some(xd), Some(yd)) = (sx.to_known(), sy.to_known()) {
        if xd.len() >= 2 && yd.len() >= 2 {
            let batch = |d: &[usize]| d[..d.len() - 2].iter().map(|&n| n as i64).collect();
            let (bx, by): (Vec<i64>, Vec<i64>) = (batch(&xd), batch(&yd));
            if bx == by {
                return Ok(vec![Some(dx), Some(dy)]);
            }
            if let Some(r) = broadcast_with_reduction(&bx, &by) {
                let full = |d: &[usize]| d.iter().map(|&n| n as i64).collect::<Vec<_>>();
                let dx = b.reshape_to(b.sum(dx, &r.r0, false)?, &full(&xd))?;
                let dy = b.reshape_to(b.sum(dy, &r.r1, false)?, &full(&yd))?;
                return Ok(vec![Some(dx), Some(dy)]);
            }
        }
    }
    let (shape_x, shape_y) = (b.shape_of(x)?, b.shape_of(y)?);
    let batch =
        |s: Output| b.strided_slice_const(s, &[0], &[-2], &[1], StridedSliceMasks::default());
    let (rx, ry) = b.broadcast_gradient_args(batch(shape_x)?, batch(shape_y)?)?;
    let dx = b.reshape(sum_axes(b, dx, rx, false)?, shape_x)?;
    let dy = b.reshape(sum_axes(b, dy, ry, false)?, shape_y)?;
    Ok(vec![Some(dx), Some(dy)])
}

/// The error for inner dimensions that differ.
fn inner_mismatch(
    cx: &InferenceContext,
    a: Dim,
    b: Dim,
    flags: (&str, bool, &str, bool),
) -> rill_graph::Error {
    let (fa, ta, fb, tb) = flags;
    cx.error(format!(
        "matrix inner dimensions must match: '{}' has shape {} and '{}' has shape {} \
         ({fa}={ta}, {fb}={tb}); {a} vs {b}",
        cx.input_names[0], cx.input_shapes[0], cx.input_names[1], cx.input_shapes[1]
    ))
}

fn matmul_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let a = cx.with_rank(0, 2)?;
    let b = cx.with_rank(1, 2)?;
    let (ta, tb) = (cx.attr_bool("transpose_a")?, cx.attr_bool("transpose_b")?);
    let rows = a.dim(if ta { 1 } else { 0 });
    let cols = b.dim(if tb { 0 } else { 1 });
    let inner_a = a.dim(if ta { 0 } else { 1 });
    let inner_b = b.dim(if tb { 1 } else { 0 });
    if inner_a.merge(inner_b).is_none() {
        return Err(inner_mismatch(
            cx,
            inner_a,
            inner_b,
            ("transpose_a", ta, "transpose_b", tb),
        ));
    }
    Ok(vec![Shape::from_dims([rows, cols])])
}

/// Rows, cols and the batch shapes of a batched product; errors on rank < 2 or on inner
/// dims that differ.
fn batch_parts(cx: &InferenceContext) -> Result<(Shape, Shape, Shape)> {
    let a = cx.with_rank_at_least(0, 2)?;
    let b = cx.with_rank_at_least(1, 2)?;
    let (adj_x, adj_y) = (cx.attr_bool("adj_x")?, cx.attr_bool("adj_y")?);
    let rows = a.dim(if adj_x { -1 } else { -2 });
    let cols = b.dim(if adj_y { -2 } else { -1 });
    let inner_a = a.dim(if adj_x { -2 } else { -1 });
    let inner_b = b.dim(if adj_y { -1 } else { -2 });
    if inner_a.merge(inner_b).is_none() {
        return Err(inner_mismatch(
            cx,
            inner_a,
            inner_b,
            ("adj_x", adj_x, "adj_y", adj_y),
        ));
    }
    Ok((
        subshape(&a, 0, Some(-2)),
        subshape(&b, 0, Some(-2)),
        Shape::from_dims([rows, cols]),
    ))
}

fn batch_matmul_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let (batch_a, batch_b, matrix) = batch_parts(cx)?;
    let batch = batch_a.merge(&batch_b).map_err(|_| {
        cx.error(format!(
            "batch dimensions must be equal: '{}' has shape {} and '{}' has shape {}",
            cx.input_names[0], cx.input_shapes[0], cx.input_names[1], cx.input_shapes[1]
        ))
    })?;
    Ok(vec![concat_shapes(&batch, &matrix)])
}

fn batch_matmul_v2_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let (batch_a, batch_b, matrix) = batch_parts(cx)?;
    let batch = broadcast_shapes(&batch_a, &batch_b, true).ok_or_else(|| {
        cx.error(format!(
            "batch dimensions must broadcast: '{}' has shape {} and '{}' has shape {}",
            cx.input_names[0], cx.input_shapes[0], cx.input_names[1], cx.input_shapes[1]
        ))
    })?;
    Ok(vec![concat_shapes(&batch, &matrix)])
}

impl Builder {
    /// `MatMul`: the matrix product `a · b`.
    pub fn matmul(&self, a: Output, b: Output) -> Result<Output> {
        self.matmul_t(a, b, false, false)
    }

    /// `MatMul` with either operand transposed first.
    pub fn matmul_t(
        &self,
        a: Output,
        b: Output,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<Output> {
        self.op("MatMul")
            .input(a)
            .input(b)
            .attr("transpose_a", transpose_a)
            .attr("transpose_b", transpose_b)
            .build_output()
    }

    /// `BatchMatMulV2`: batched products with broadcasting batch dims, either operand
    /// adjointed (transposed) first.
    pub fn batch_matmul(&self, x: Output, y: Output, adj_x: bool, adj_y: bool) -> Result<Output> {
        self.op("BatchMatMulV2")
            .input(x)
            .input(y)
            .attr("adj_x", adj_x)
            .attr("adj_y", adj_y)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    fn t(ta: bool, tb: bool) -> rill_graph::Attrs {
        attrs(&[
            ("T", DType::F32.into()),
            ("transpose_a", ta.into()),
            ("transpose_b", tb.into()),
        ])
    }

    #[test]
    fn matmul() {
        assert_eq!(
            infer("MatMul", &t(false, false), "[2,?];[?,3]").unwrap(),
            "[2,3]"
        );
        assert_eq!(
            infer("MatMul", &t(false, false), "[2,4];[4,3]").unwrap(),
            "[2,3]"
        );
        assert_eq!(
            infer("MatMul", &t(true, false), "[4,2];[4,3]").unwrap(),
            "[2,3]"
        );
        assert_eq!(
            infer("MatMul", &t(false, true), "[2,4];[3,4]").unwrap(),
            "[2,3]"
        );
        assert_eq!(
            infer("MatMul", &t(true, true), "[4,2];[3,4]").unwrap(),
            "[2,3]"
        );
        assert_eq!(infer("MatMul", &t(false, false), "?;?").unwrap(), "[?,?]");
        assert_eq!(
            infer("MatMul", &t(false, false), "?;[4,7]").unwrap(),
            "[?,7]"
        );
    }

    #[test]
    fn matmul_errors_name_both_inputs() {
        let e = infer("MatMul", &t(false, false), "[2,3];[4,5]").unwrap_err();
        for part in ["in0:0", "in1:0", "[2,3]", "[4,5]", "3 vs 4"] {
            assert!(e.message.contains(part), "{e}");
        }
        assert!(infer("MatMul", &t(false, false), "[2,3,4];[4,5]").is_err());
        assert!(infer("MatMul", &t(false, true), "[2,3];[3,5]").is_err());
    }

    #[test]
    fn batch_matmul() {
        let a = |adj_x: bool, adj_y: bool| {
            attrs(&[
                ("T", DType::F32.into()),
                ("adj_x", adj_x.into()),
                ("adj_y", adj_y.into()),
            ])
        };
        assert_eq!(
            infer("BatchMatMul", &a(false, false), "[5,2,3];[?,3,4]").unwrap(),
            "[5,2,4]"
        );
        assert!(infer("BatchMatMul", &a(false, false), "[5,2,3];[1,3,4]").is_err());
        assert_eq!(
            infer("BatchMatMulV2", &a(false, false), "[5,1,2,3];[7,3,4]").unwrap(),
            "[5,7,2,4]"
        );
        assert_eq!(
            infer("BatchMatMulV2", &a(true, true), "[3,2];[6,4,3]").unwrap(),
            "[6,2,4]"
        );
        assert_eq!(
            infer("BatchMatMulV2", &a(false, false), "?;[3,4]").unwrap(),
            "?"
        );
        assert!(infer("BatchMatMulV2", &a(false, false), "[5,2,3];[4,3,4]").is_err());
        let e = infer("BatchMatMulV2", &a(false, false), "[2,3];[2,3]").unwrap_err();
        assert!(
            e.message.contains("adj_x=false") && e.message.contains("in1:0"),
            "{e}"
        );
        assert!(infer("BatchMatMulV2", &a(false, false), "[3];[3,4]").is_err());
        let v3 = attrs(&[
            ("Ta", DType::I8.into()),
            ("Tb", DType::I8.into()),
            ("Tout", DType::I32.into()),
        ]);
        assert_eq!(
            infer("BatchMatMulV3", &v3, "[2,2,3];[3,4]").unwrap(),
            "[2,2,4]"
        );
    }

    #[test]
    fn builder_mlp() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 784]).unwrap();
        let w1 = b.placeholder("w1", DType::F32, [784i64, 128]).unwrap();
        let b1 = b.placeholder("b1", DType::F32, [128i64]).unwrap();
        let w2 = b.placeholder("w2", DType::F32, [128i64, 10]).unwrap();
        let h = b
            .tanh(b.add(b.matmul(x, w1).unwrap(), b1).unwrap())
            .unwrap();
        let logits = b.matmul(h, w2).unwrap();
        assert_eq!(b.shape(logits).to_string(), "[?,10]");
        let e = b.matmul(x, w2).unwrap_err().to_string();
        for part in ["x:0", "w2:0", "[?,784]", "[128,10]", "MatMul"] {
            assert!(e.contains(part), "{e}");
        }
        let t = b.matmul_t(w1, x, true, true).unwrap();
        assert_eq!(b.shape(t).to_string(), "[128,?]");
    }
}
