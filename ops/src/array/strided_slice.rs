//! `StridedSlice`: numpy-style slicing `x[b:e:s, ..., tf.newaxis, i]` with TensorFlow's
//! full shape logic (in [`super::slice_spec`]); unknown where begin/end/strides or dims are
//! not known at graph time.
//!
//! `StridedSliceGrad` (the gradient: `dy` scattered into zeros of the input's shape) is
//! declared here too; each has the other as its gradient.

use rill_graph::{Dim, InferenceContext, OpDef, Output, Result, Shape};

use super::common::{name, vector_len};
use super::slice_spec::{slice_spec, StridedSliceMasks};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("StridedSlice")
            .input("input: T")
            .input("begin: Index")
            .input("end: Index")
            .input("strides: Index")
            .output("output: T")
            .attr("T: type")
            .attr("Index: {int16, int32, int64}")
            .attr("begin_mask: int = 0")
            .attr("end_mask: int = 0")
            .attr("ellipsis_mask: int = 0")
            .attr("new_axis_mask: int = 0")
            .attr("shrink_axis_mask: int = 0")
            .shape_fn(strided_slice_shape),
    )?;
    r.register(
        OpDef::build("StridedSliceGrad")
            .input("shape: Index")
            .input("begin: Index")
            .input("end: Index")
            .input("strides: Index")
            .input("dy: T")
            .output("output: T")
            .attr("T: type")
            .attr("Index: {int32, int64}")
            .attr("begin_mask: int = 0")
            .attr("end_mask: int = 0")
            .attr("ellipsis_mask: int = 0")
            .attr("new_axis_mask: int = 0")
            .attr("shrink_axis_mask: int = 0")
            .shape_fn(strided_slice_grad_shape),
    )?;
    r.gradient("StridedSlice", |c| {
        let b = c.b;
        let shape = b.shape_of_as(c.x(0), c.dtype(c.x(1)))?;
        let nb = b
            .op("StridedSliceGrad")
            .input(shape)
            .input(c.x(1))
            .input(c.x(2))
            .input(c.x(3))
            .input(c.dy(0)?);
        let g = c.with_attrs(nb, &MASKS)?.build_output()?;
        Ok(vec![Some(g), None, None, None])
    })?;
    // StridedSliceGrad is linear in `dy`: its gradient slices like the forward op.
    r.gradient("StridedSliceGrad", |c| {
        let nb =
            c.b.op("StridedSlice")
                .input(c.dy(0)?)
                .input(c.x(1))
                .input(c.x(2))
                .input(c.x(3));
        let g = c.with_attrs(nb, &MASKS)?.build_output()?;
        Ok(vec![None, None, None, None, Some(g)])
    })
}

const MASKS: [&str; 5] = [
    "begin_mask",
    "end_mask",
    "ellipsis_mask",
    "new_axis_mask",
    "shrink_axis_mask",
];

/// `StridedSliceGrad`'s output has the shape held by its `shape` input.
fn strided_slice_grad_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    vector_len(cx, 0)?;
    Ok(vec![cx.input_as_shape(0)?])
}

fn strided_slice_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let input = cx.input(0)?;
    let mut len = Dim::Unknown;
    for i in 1..4 {
        len = len.merge(vector_len(cx, i)?).ok_or_else(|| {
            cx.error(format!(
                "begin '{}', end '{}' and strides '{}' must have the same length, got shapes {}, {} and {}",
                name(cx, 1),
                name(cx, 2),
                name(cx, 3),
                cx.input_shapes[1],
                cx.input_shapes[2],
                cx.input_shapes[3]
            ))
        })?;
    }
    let strides = cx.input_ints(3)?;
    let (Some(dims), Some(_), Some(strides)) = (input.dims(), len.known(), strides) else {
        return Ok(vec![Shape::unknown()]);
    };
    let begin = cx.input_ints(1)?;
    let end = cx.input_ints(2)?;
    let in_dims: Vec<Option<i64>> = dims.iter().map(|d| d.known().map(|n| n as i64)).collect();
    let masks = StridedSliceMasks::from_context(cx)?;
    let spec = slice_spec(&in_dims, begin.as_deref(), end.as_deref(), &strides, masks).map_err(|why| {
        cx.error(format!(
            "invalid strided slice of '{}' with shape {input} (begin {}, end {}, strides {strides:?}): {why}",
            name(cx, 0),
            begin.as_ref().map_or_else(|| "?".to_string(), |b| format!("{b:?}")),
            end.as_ref().map_or_else(|| "?".to_string(), |e| format!("{e:?}")),
        ))
    })?;
    Ok(vec![spec.output_shape()])
}

impl Builder {
    /// `tf.strided_slice` with `begin`, `end` and `strides` int vectors.
    pub fn strided_slice(
        &self,
        x: Output,
        begin: Output,
        end: Output,
        strides: Output,
        masks: StridedSliceMasks,
    ) -> Result<Output> {
        self.op("StridedSlice")
            .input(x)
            .input(begin)
            .input(end)
            .input(strides)
            .attr("begin_mask", masks.begin)
            .attr("end_mask", masks.end)
            .attr("ellipsis_mask", masks.ellipsis)
            .attr("new_axis_mask", masks.new_axis)
            .attr("shrink_axis_mask", masks.shrink_axis)
            .build_output()
    }

    /// `tf.strided_slice` with constant `begin`, `end` and `strides`.
    pub fn strided_slice_const(
        &self,
        x: Output,
        begin: &[i64],
        end: &[i64],
        strides: &[i64],
        masks: StridedSliceMasks,
    ) -> Result<Output> {
        let all: Vec<i64> = begin.iter().chain(end).chain(strides).copied().collect();
        let vec = |v: &[i64]| {
            if all.iter().all(|&x| i32::try_from(x).is_ok()) {
                self.index_const(v)
            } else {
                self.vector_const(v.to_vec())
            }
        };
        let (b, e, s) = (vec(begin)?, vec(end)?, vec(strides)?);
        self.strided_slice(x, b, e, s, masks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{AttrValue, Attrs, DType, Tensor};

    fn a(m: StridedSliceMasks) -> Attrs {
        attrs(&[
            ("T", DType::F32.into()),
            ("Index", DType::I32.into()),
            ("begin_mask", m.begin.into()),
            ("end_mask", m.end.into()),
            ("ellipsis_mask", m.ellipsis.into()),
            ("new_axis_mask", m.new_axis.into()),
            ("shrink_axis_mask", m.shrink_axis.into()),
        ])
    }

    fn ss(input: &str, b: &[i32], e: &[i32], s: &[i32], m: StridedSliceMasks) -> Result<String> {
        let n = s.len();
        let v = [
            None,
            Some(Tensor::vector(b.to_vec())),
            Some(Tensor::vector(e.to_vec())),
            Some(Tensor::vector(s.to_vec())),
        ];
        infer_with_values(
            "StridedSlice",
            &a(m),
            &format!("{input};[{n}];[{n}];[{n}]"),
            &v,
        )
    }

    fn m() -> StridedSliceMasks {
        StridedSliceMasks::default()
    }

    #[test]
    fn basic_ranges() {
        // x[1:3, :]
        assert_eq!(
            ss(
                "[4,5]",
                &[1, 0],
                &[3, 0],
                &[1, 1],
                StridedSliceMasks { end: 2, ..m() }
            )
            .unwrap(),
            "[2,5]"
        );
        // x[1:3] (the rest implied)
        assert_eq!(ss("[4,5]", &[1], &[3], &[1], m()).unwrap(), "[2,5]");
        // x[::2]
        assert_eq!(
            ss(
                "[5,2]",
                &[0],
                &[0],
                &[2],
                StridedSliceMasks {
                    begin: 1,
                    end: 1,
                    ..m()
                }
            )
            .unwrap(),
            "[3,2]"
        );
        // Clamping: x[-10:10]
        assert_eq!(ss("[4]", &[-10], &[10], &[1], m()).unwrap(), "[4]");
        // Empty: x[3:1]
        assert_eq!(ss("[4]", &[3], &[1], &[1], m()).unwrap(), "[0]");
        // Negative indices: x[-3:-1]
        assert_eq!(ss("[5]", &[-3], &[-1], &[1], m()).unwrap(), "[2]");
    }

    #[test]
    fn negative_strides() {
        // x[::-1]
        assert_eq!(
            ss(
                "[5]",
                &[0],
                &[0],
                &[-1],
                StridedSliceMasks {
                    begin: 1,
                    end: 1,
                    ..m()
                }
            )
            .unwrap(),
            "[5]"
        );
        // x[3:0:-1]
        assert_eq!(ss("[5]", &[3], &[0], &[-1], m()).unwrap(), "[3]");
        // x[-1:-4:-2]
        assert_eq!(ss("[5]", &[-1], &[-4], &[-2], m()).unwrap(), "[2]");
        // x[1:3:-1] is empty
        assert_eq!(ss("[5]", &[1], &[3], &[-1], m()).unwrap(), "[0]");
        // x[10::-1] clamps to the last element
        assert_eq!(
            ss(
                "[5]",
                &[10],
                &[0],
                &[-1],
                StridedSliceMasks { end: 1, ..m() }
            )
            .unwrap(),
            "[5]"
        );
    }

    #[test]
    fn shrink_new_axis_and_ellipsis() {
        // x[1] on [4,5] -> [5]
        assert_eq!(
            ss(
                "[4,5]",
                &[1],
                &[2],
                &[1],
                StridedSliceMasks {
                    shrink_axis: 1,
                    ..m()
                }
            )
            .unwrap(),
            "[5]"
        );
        // x[-1] on [4,5]
        assert_eq!(
            ss(
                "[4,5]",
                &[-1],
                &[0],
                &[1],
                StridedSliceMasks {
                    shrink_axis: 1,
                    ..m()
                }
            )
            .unwrap(),
            "[5]"
        );
        // x[..., 0] on [2,3,4] -> [2,3]
        let em = StridedSliceMasks {
            ellipsis: 1,
            shrink_axis: 2,
            ..m()
        };
        assert_eq!(
            ss("[2,3,4]", &[0, 0], &[0, 1], &[1, 1], em).unwrap(),
            "[2,3]"
        );
        // x[tf.newaxis, :, 1] on [3,4] -> [1,3]
        let nm = StridedSliceMasks {
            new_axis: 1,
            begin: 2,
            end: 2,
            shrink_axis: 4,
            ..m()
        };
        assert_eq!(
            ss("[3,4]", &[0, 0, 1], &[0, 0, 2], &[1, 1, 1], nm).unwrap(),
            "[1,3]"
        );
        // x[..., tf.newaxis] on [2,3] -> [2,3,1]
        let tail = StridedSliceMasks {
            ellipsis: 1,
            new_axis: 2,
            ..m()
        };
        assert_eq!(
            ss("[2,3]", &[0, 0], &[0, 0], &[1, 1], tail).unwrap(),
            "[2,3,1]"
        );
        // x[1:, ..., ::-1] on [4,?,?,5] -> [3,?,?,5]
        let mid = StridedSliceMasks {
            ellipsis: 2,
            end: 5,
            begin: 4,
            ..m()
        };
        assert_eq!(
            ss("[4,?,?,5]", &[1, 0, 0], &[0, 0, 0], &[1, 1, -1], mid).unwrap(),
            "[3,?,?,5]"
        );
        // Unknown dim that is shrunk disappears.
        assert_eq!(
            ss(
                "[?,5]",
                &[0],
                &[1],
                &[1],
                StridedSliceMasks {
                    shrink_axis: 1,
                    ..m()
                }
            )
            .unwrap(),
            "[5]"
        );
        // Full shrink to a scalar.
        let both = StridedSliceMasks {
            shrink_axis: 3,
            ..m()
        };
        assert_eq!(ss("[4,5]", &[1, 2], &[2, 3], &[1, 1], both).unwrap(), "[]");
    }

    #[test]
    fn errors() {
        let e = ss(
            "[4,5]",
            &[4],
            &[5],
            &[1],
            StridedSliceMasks {
                shrink_axis: 1,
                ..m()
            },
        )
        .unwrap_err();
        assert!(
            e.message.contains("in0:0")
                && e.message.contains("[4,5]")
                && e.message.contains("out of bounds"),
            "{e}"
        );
        assert!(ss("[4]", &[0], &[1], &[0], m()).is_err());
        assert!(ss("[4]", &[0, 0], &[1, 1], &[1, 1], m()).is_err());
        assert!(ss(
            "[4]",
            &[0, 0],
            &[1, 1],
            &[1, 1],
            StridedSliceMasks { ellipsis: 3, ..m() }
        )
        .is_err());
        assert!(ss(
            "[4]",
            &[1],
            &[0],
            &[-1],
            StridedSliceMasks {
                shrink_axis: 1,
                ..m()
            }
        )
        .is_err());
        assert!(infer("StridedSlice", &a(m()), "[4];[1];[1];[1]").is_ok());
        assert!(infer("StridedSlice", &a(m()), "[4];[1];[1];[3]").is_err());
    }

    #[test]
    fn unknown_information() {
        // Unknown strides or input rank: unknown shape.
        assert_eq!(
            infer("StridedSlice", &a(m()), "[4,5];[1];[1];[1]").unwrap(),
            "?"
        );
        assert_eq!(ss("?", &[0], &[1], &[1], m()).unwrap(), "?");
        // Unknown begin/end: known where masks make the range full.
        let strides = Tensor::vector(vec![1i32, 1]);
        let v = [None, None, None, Some(strides)];
        let masks = StridedSliceMasks {
            begin: 2,
            end: 2,
            ..m()
        };
        assert_eq!(
            infer_with_values("StridedSlice", &a(masks), "[4,5];[2];[2];[2]", &v).unwrap(),
            "[?,5]"
        );
        let shrink = StridedSliceMasks {
            shrink_axis: 1,
            ..m()
        };
        assert_eq!(
            infer_with_values("StridedSlice", &a(shrink), "[4,5];[2];[2];[2]", &v).unwrap(),
            "[?]"
        );
        // Unknown dims give unknown sizes unless the dim is shrunk.
        assert_eq!(
            ss("[?,5]", &[0, 1], &[2, 3], &[1, 1], m()).unwrap(),
            "[?,2]"
        );
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 3, 4]).unwrap();
        let masks = StridedSliceMasks {
            ellipsis: 1,
            shrink_axis: 2,
            ..Default::default()
        };
        let y = b
            .strided_slice_const(x, &[0, 1], &[0, 2], &[1, 1], masks)
            .unwrap();
        assert_eq!(b.shape(y).to_string(), "[?,3]");
        let node = b.graph().node(y.node).clone();
        assert_eq!(node.attr("shrink_axis_mask"), Some(&AttrValue::Int(2)));
        let rev = StridedSliceMasks {
            begin: 2,
            end: 2,
            ..Default::default()
        };
        let z = b
            .strided_slice_const(x, &[0, 0], &[1, 0], &[1, -1], rev)
            .unwrap();
        assert_eq!(b.shape(z).to_string(), "[?,3,4]");
    }
}
