//! Elementwise binary math ops with numpy broadcasting — arithmetic (`Add`, `AddV2`, `Sub`,
//! `Mul`, `Div`, `RealDiv`, `FloorMod`, `Pow`, `Maximum`, ...), comparisons (`Less`,
//! `Equal`, ...) and logical ops — each declared by one line of a table; plus the builder's
//! `binary` and named methods.
//!
//! Shapes: TensorFlow's `BroadcastBinaryOpShapeFn`; `Equal`/`NotEqual` honour
//! `incompatible_shape_error` (false: incompatible shapes give a scalar, never an error).
//!
//! Gradients: the arithmetic ops' functions are in `GRADIENTS`; comparisons, logical ops
//! and the integer-valued divisions are not differentiable.

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{broadcast_shapes, type_attr, FLOAT, NUMBER};
use crate::gradient::{scalar_like, unbroadcast, GradContext, GradFn};
use crate::Builder;

/// How an op's `T` is given.
#[derive(Clone, Copy)]
enum Ty {
    /// `T` from this set.
    Set(&'static str),
    /// `T: type` (any dtype).
    Any,
    /// No `T`: both inputs and the output are `bool`.
    Bool,
}
use Ty::{Any, Set};

/// Flags of a table row.
const COMMUTATIVE: u8 = 1;
const AGGREGATE: u8 = 2;
/// Output `z: bool` (comparisons).
const BOOL_OUT: u8 = 4;
/// Has `incompatible_shape_error: bool = true` (Equal, NotEqual).
const SHAPE_ERROR_ATTR: u8 = 8;
/// Inputs are named `y, x` (Atan2).
const YX: u8 = 16;

const ADD: &str = "bfloat16, half, float, double, uint8, int8, int16, int32, int64, string";
const ADD_V2: &str =
    "bfloat16, half, float, double, uint8, uint16, uint32, uint64, int8, int16, int32, int64";
/// TensorFlow's `BINARY_MORE()` set (Sub, Mul, Div, FloorDiv, ...), without complex.
const MORE: &str = NUMBER;
/// TensorFlow's `BINARY_FEWER()` set.
const FEWER: &str = "bfloat16, half, float, double, int32, int64";
const MOD: &str = "int32, int64, bfloat16, half, float, double";
const POW: &str = "bfloat16, half, float, double, int8, int16, int32, int64";

/// `(op, T, flags)`: `x: T, y: T -> z: T` (or `z: bool`).
const BINARY: &[(&str, Ty, u8)] = &[
    ("Add", Set(ADD), 0),
    ("AddV2", Set(ADD_V2), COMMUTATIVE | AGGREGATE),
    ("Sub", Set(MORE), 0),
    ("Mul", Set(MORE), COMMUTATIVE),
    ("Div", Set(MORE), 0),
    ("RealDiv", Set(MORE), 0),
    ("DivNoNan", Set(FLOAT), 0),
    ("FloorDiv", Set(MORE), 0),
    ("TruncateDiv", Set(MORE), 0),
    ("FloorMod", Set(NUMBER), 0),
    ("Mod", Set(MOD), 0),
    ("TruncateMod", Set(MOD), 0),
    ("Pow", Set(POW), 0),
    ("SquaredDifference", Set(FEWER), COMMUTATIVE),
    ("Maximum", Set(NUMBER), COMMUTATIVE),
    ("Minimum", Set(NUMBER), COMMUTATIVE),
    ("Atan2", Set(FLOAT), YX),
    ("Less", Set(NUMBER), BOOL_OUT),
    ("LessEqual", Set(NUMBER), BOOL_OUT),
    ("Greater", Set(NUMBER), BOOL_OUT),
    ("GreaterEqual", Set(NUMBER), BOOL_OUT),
    ("Equal", Any, BOOL_OUT | COMMUTATIVE | SHAPE_ERROR_ATTR),
    ("NotEqual", Any, BOOL_OUT | COMMUTATIVE | SHAPE_ERROR_ATTR),
    ("LogicalAnd", Ty::Bool, COMMUTATIVE),
    ("LogicalOr", Ty::Bool, COMMUTATIVE),
];

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    for &(name, ty, flags) in BINARY {
        let (a, b) = if flags & YX != 0 {
            ("y", "x")
        } else {
            ("x", "y")
        };
        let t = if matches!(ty, Ty::Bool) { "bool" } else { "T" };
        let z = if flags & BOOL_OUT != 0 || matches!(ty, Ty::Bool) {
            "z: bool".to_string()
        } else {
            "z: T".to_string()
        };
        let mut def = OpDef::build(name)
            .input(&format!("{a}: {t}"))
            .input(&format!("{b}: {t}"))
            .output(&z);
        def = match ty {
            Set(set) => def.attr(&type_attr("T", set)),
            Any => def.attr("T: type"),
            Ty::Bool => def,
        };
        if flags & SHAPE_ERROR_ATTR != 0 {
            def = def
                .attr("incompatible_shape_error: bool = true")
                .shape_fn(equality_shape);
        } else {
            def = def.shape_fn(rill_graph::shape_fn::broadcast_binary);
        }
        if flags & COMMUTATIVE != 0 {
            def = def.commutative();
        }
        if flags & AGGREGATE != 0 {
            def = def.aggregate();
        }
        r.register(def)?;
    }
    for &(op, f) in GRADIENTS {
        r.gradient(op, f)?;
    }
    for op in [
        "FloorDiv",
        "TruncateDiv",
        "Less",
        "LessEqual",
        "Greater",
        "GreaterEqual",
        "Equal",
        "NotEqual",
        "LogicalAnd",
        "LogicalOr",
    ] {
        r.no_gradient(op)?;
    }
    Ok(())
}

/// Gradient functions (TensorFlow's `math_grad.py`): each computes the gradients at the
/// broadcast output shape and [`unbroadcast`] sums them back to each operand's shape.
const GRADIENTS: &[(&str, GradFn)] = &[
    ("Add", |c| both(c, |_, dy| Ok((dy, dy)))),
    ("AddV2", |c| both(c, |_, dy| Ok((dy, dy)))),
    ("Sub", |c| both(c, |c, dy| Ok((dy, c.b.neg(dy)?)))),
    ("Mul", |c| {
        both(c, |c, dy| Ok((c.b.mul(dy, c.x(1))?, c.b.mul(c.x(0), dy)?)))
    }),
    ("Div", div_grad),
    ("RealDiv", div_grad),
    ("DivNoNan", |c| {
        both(c, |c, dy| {
            let b = c.b;
            let (x, y) = (c.x(0), c.x(1));
            let gy = b.div_no_nan(b.div_no_nan(b.neg(x)?, y)?, y)?;
            Ok((b.div_no_nan(dy, y)?, b.mul(dy, gy)?))
        })
    }),
    ("Maximum", |c| select_grad(c, "GreaterEqual")),
    ("Minimum", |c| select_grad(c, "LessEqual")),
    ("Pow", pow_grad),
    ("SquaredDifference", |c| {
        both(c, |c, dy| {
            let b = c.b;
            let two = scalar_like(b, c.dtype(c.x(0)), 2.0)?;
            let d = b.mul(b.mul(two, dy)?, b.sub(c.x(0), c.x(1))?)?;
            Ok((d, b.neg(d)?))
        })
    }),
    ("FloorMod", |c| {
        both(c, |c, dy| {
            let q = c.b.floor_div(c.x(0), c.x(1))?;
            Ok((dy, c.b.mul(dy, c.b.neg(q)?)?))
        })
    }),
    ("Atan2", |c| {
        // Inputs are (y, x): d/dy = x / (x² + y²), d/dx = -y / (x² + y²).
        both(c, |c, dy| {
            let b = c.b;
            let (y, x) = (c.x(0), c.x(1));
            let inv = b.real_div(dy, b.add(b.square(x)?, b.square(y)?)?)?;
            Ok((b.mul(x, inv)?, b.mul(b.neg(y)?, inv)?))
        })
    }),
];

/// Runs `f(c, dy)` for the gradients at the output's shape, then reduces them to the
/// operands' shapes.
fn both(
    c: &GradContext,
    f: impl Fn(&GradContext, Output) -> Result<(Output, Output)>,
) -> Result<Vec<Option<Output>>> {
    let (gx, gy) = f(c, c.dy(0)?)?;
    let (gx, gy) = unbroadcast(c.b, c.x(0), c.x(1), gx, gy)?;
    Ok(vec![Some(gx), Some(gy)])
}

/// `x / y`: `dy / y` and `dy * (-x / y / y)`.
fn div_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    both(c, |c, dy| {
        let b = c.b;
        let (x, y) = (c.x(0), c.x(1));
        let gy = b.real_div(b.real_div(b.neg(x)?, y)?, y)?;
        Ok((b.real_div(dy, y)?, b.mul(dy, gy)?))
    })
}

/// `Maximum`/`Minimum`: the gradient goes to `x` where `cmp(x, y)` holds (ties go to `x`),
/// else to `y`.
fn select_grad(c: &GradContext, cmp: &str) -> Result<Vec<Option<Output>>> {
    both(c, |c, dy| {
        let b = c.b;
        let mask = b.binary(cmp, c.x(0), c.x(1))?;
        let zeros = b.zeros_like(dy)?;
        Ok((b.select_v2(mask, dy, zeros)?, b.select_v2(mask, zeros, dy)?))
    })
}

/// `z = x^y`: `dy * y * x^(y-1)` and `dy * z * log(x)` (0 where `x <= 0`).
fn pow_grad(c: &GradContext) -> Result<Vec<Option<Output>>> {
    both(c, |c, dy| {
        let b = c.b;
        let (x, y, z) = (c.x(0), c.x(1), c.y(0));
        let dtype = c.dtype(x);
        let one = scalar_like(b, dtype, 1.0)?;
        let gx = b.mul(b.mul(dy, y)?, b.pow(x, b.sub(y, one)?)?)?;
        let positive = b.greater(x, scalar_like(b, dtype, 0.0)?)?;
        let safe_x = b.select_v2(positive, x, b.ones_like(x)?)?;
        let log_x = b.select_v2(positive, b.log(safe_x)?, b.zeros_like(x)?)?;
        let gy = b.mul(b.mul(dy, z)?, log_x)?;
        Ok((gx, gy))
    })
}

/// Broadcasting that, with `incompatible_shape_error = false`, gives a scalar (the op's
/// answer is a scalar `false`/`true`) or an unknown shape instead of an error.
fn equality_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    if cx.attr_bool("incompatible_shape_error")? {
        return Ok(vec![cx.broadcast(0, 1)?]);
    }
    let out = broadcast_shapes(cx.input(0)?, cx.input(1)?, false).unwrap_or_else(Shape::unknown);
    Ok(vec![out])
}

impl Builder {
    /// Any elementwise binary op by name (`"AddV2"`, `"Less"`, ...).
    pub fn binary(&self, op: &str, x: Output, y: Output) -> Result<Output> {
        self.op(op).input(x).input(y).build_output()
    }
}

macro_rules! binary_methods {
    ($($name:ident => $op:literal),* $(,)?) => {
        impl Builder {
            $(
                #[doc = concat!("`", $op, "(x, y)`, elementwise with broadcasting.")]
                pub fn $name(&self, x: Output, y: Output) -> Result<Output> {
                    self.binary($op, x, y)
                }
            )*
        }
    };
}

binary_methods! {
    add => "AddV2", sub => "Sub", mul => "Mul", div => "Div", real_div => "RealDiv",
    div_no_nan => "DivNoNan", floor_div => "FloorDiv", truncate_div => "TruncateDiv",
    floor_mod => "FloorMod", pow => "Pow", squared_difference => "SquaredDifference",
    maximum => "Maximum", minimum => "Minimum", atan2 => "Atan2", less => "Less",
    less_equal => "LessEqual", greater => "Greater", greater_equal => "GreaterEqual",
    equal => "Equal", not_equal => "NotEqual", logical_and => "LogicalAnd",
    logical_or => "LogicalOr",
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};
    use rill_graph::DType;

    fn f32() -> rill_graph::Attrs {
        attrs(&[("T", DType::F32.into())])
    }

    #[test]
    fn broadcasting() {
        for op in [
            "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Pow", "FloorMod", "Less",
        ] {
            assert_eq!(
                infer(op, &f32(), "[2,1,4];[3,1]").unwrap(),
                "[2,3,4]",
                "{op}"
            );
        }
        assert_eq!(infer("Mul", &f32(), "[?,4];[4]").unwrap(), "[?,4]");
        assert_eq!(infer("Mul", &f32(), "[?];[5]").unwrap(), "[5]");
        assert_eq!(infer("Mul", &f32(), "[];[2,3]").unwrap(), "[2,3]");
        assert_eq!(infer("Mul", &f32(), "?;[2]").unwrap(), "?");
        assert_eq!(infer("Mul", &f32(), "[1,?];[?,1]").unwrap(), "[?,?]");
        assert_eq!(
            infer("LogicalAnd", &attrs(&[]), "[3];[2,1]").unwrap(),
            "[2,3]"
        );
    }

    #[test]
    fn incompatible_shapes_name_both_inputs() {
        let e = infer("AddV2", &f32(), "[2,3];[4]").unwrap_err();
        assert_eq!(e.code, rill_graph::Code::InvalidArgument);
        for part in ["in0:0", "in1:0", "[2,3]", "[4]"] {
            assert!(e.message.contains(part), "{e}");
        }
    }

    #[test]
    fn equality_and_incompatible_shape_error() {
        let a = attrs(&[("T", DType::String.into())]);
        assert_eq!(infer("Equal", &a, "[2,1];[3]").unwrap(), "[2,3]");
        assert!(infer("NotEqual", &a, "[2];[3]").is_err());
        let lax = attrs(&[
            ("T", DType::I32.into()),
            ("incompatible_shape_error", false.into()),
        ]);
        assert_eq!(infer("Equal", &lax, "[2];[3]").unwrap(), "[]");
        assert_eq!(infer("Equal", &lax, "[?];[3]").unwrap(), "?");
        assert_eq!(infer("Equal", &lax, "[1];[3]").unwrap(), "[3]");
    }

    #[test]
    fn declarations() {
        let r = crate::registry();
        assert!(
            r.lookup("AddV2").unwrap().is_commutative && r.lookup("AddV2").unwrap().is_aggregate
        );
        assert!(!r.lookup("Sub").unwrap().is_commutative);
        let atan2 = r.lookup("Atan2").unwrap();
        assert_eq!(
            (atan2.inputs[0].name.as_str(), atan2.inputs[1].name.as_str()),
            ("y", "x")
        );
        let less = r.lookup("Less").unwrap();
        assert_eq!(
            less.arg_types(&less.outputs, &f32()).unwrap(),
            vec![DType::Bool]
        );
        assert!(infer("Add", &attrs(&[("T", DType::String.into())]), "[1];[1]").is_ok());
        assert!(infer("AddV2", &attrs(&[("T", DType::String.into())]), "[1];[1]").is_err());
        assert!(infer("RealDiv", &attrs(&[("T", DType::Bool.into())]), "[1];[1]").is_err());
    }

    #[test]
    fn builder_error_names_nodes_and_shapes() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [2i64, 3]).unwrap();
        let y = b.placeholder("y", DType::F32, [4i64]).unwrap();
        let e = b.add(x, y).unwrap_err();
        let text = e.to_string();
        for part in ["x:0", "y:0", "[2,3]", "[4]", "AddV2"] {
            assert!(text.contains(part), "{text}");
        }
        let z = b.placeholder("z", DType::F32, [-1i64, 3]).unwrap();
        let s = b.sub(x, z).unwrap();
        assert_eq!(b.shape(s).to_string(), "[2,3]");
        assert_eq!(b.dtype(b.greater(x, z).unwrap()), DType::Bool);
    }
}
