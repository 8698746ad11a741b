//! `Range`: the vector `start, start + delta, ...` stopping before `limit`.
//!
//! `Range` is not differentiable.

use rill_graph::{InferenceContext, OpDef, Output, Result, Shape};

use super::common::{check_scalar, input_f64s, vector};
use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Range")
            .input("start: Tidx")
            .input("limit: Tidx")
            .input("delta: Tidx")
            .output("output: Tidx")
            .attr("Tidx: {bfloat16, half, float, double, int8, int16, int32, int64, uint16, uint32} = DT_INT32")
            .shape_fn(range_shape),
    )?;
    r.no_gradient("Range")?;
    Ok(())
}

/// The element count of `range(start, limit, delta)`, or a description of what is wrong.
pub fn range_len(
    start: f64,
    limit: f64,
    delta: f64,
    integral: bool,
) -> std::result::Result<u64, String> {
    if delta == 0.0 {
        return Err("delta must not be 0".into());
    }
    if start > limit && delta > 0.0 {
        return Err(format!(
            "start ({start}) must be <= limit ({limit}) when delta ({delta}) is positive"
        ));
    }
    if start < limit && delta < 0.0 {
        return Err(format!(
            "start ({start}) must be >= limit ({limit}) when delta ({delta}) is negative"
        ));
    }
    let n = if integral {
        let (span, step) = ((limit - start).abs(), delta.abs());
        ((span + step - 1.0) / step).floor()
    } else {
        ((limit - start) / delta).abs().ceil()
    };
    if !n.is_finite() || n > u64::MAX as f64 {
        return Err(format!(
            "range({start}, {limit}, {delta}) has too many elements"
        ));
    }
    Ok(n as u64)
}

fn range_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    for i in 0..3 {
        check_scalar(cx, i)?;
    }
    let value = |i| input_f64s(cx, i).and_then(|v| v.first().copied());
    let (Some(start), Some(limit), Some(delta)) = (value(0), value(1), value(2)) else {
        return Ok(vec![vector(None::<usize>)]);
    };
    let integral = cx.attr_type("Tidx")?.is_integer();
    let n = range_len(start, limit, delta, integral)
        .map_err(|why| cx.error(format!("Range: {why}")))?;
    let n = usize::try_from(n).map_err(|_| cx.error("Range has too many elements".into()))?;
    Ok(vec![vector(n)])
}

impl Builder {
    /// `tf.range(start, limit, delta)` with scalar inputs of one dtype.
    pub fn range(&self, start: Output, limit: Output, delta: Output) -> Result<Output> {
        self.op("Range")
            .input(start)
            .input(limit)
            .input(delta)
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer, infer_with_values};
    use rill_graph::{DType, Tensor};

    #[test]
    fn lengths() {
        let a = attrs(&[("Tidx", DType::I32.into())]);
        let range = |s: i32, l: i32, d: i32| {
            let v = [
                Some(Tensor::scalar(s)),
                Some(Tensor::scalar(l)),
                Some(Tensor::scalar(d)),
            ];
            infer_with_values("Range", &a, "[];[];[]", &v)
        };
        assert_eq!(range(0, 10, 3).unwrap(), "[4]");
        assert_eq!(range(10, 0, -3).unwrap(), "[4]");
        assert_eq!(range(0, 0, 1).unwrap(), "[0]");
        assert!(range(0, 10, 0).is_err());
        assert!(range(10, 0, 1).is_err());
        assert!(range(0, 10, -1).is_err());
        let f = attrs(&[("Tidx", DType::F32.into())]);
        let v = [
            Some(Tensor::scalar(0f32)),
            Some(Tensor::scalar(1f32)),
            Some(Tensor::scalar(0.3f32)),
        ];
        assert_eq!(
            infer_with_values("Range", &f, "[];[];[]", &v).unwrap(),
            "[4]"
        );
        assert_eq!(infer("Range", &a, "[];[];[]").unwrap(), "[?]");
        assert!(infer("Range", &a, "[2];[];[]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let r = b
            .range(
                b.scalar_i32(1).unwrap(),
                b.scalar_i32(7).unwrap(),
                b.scalar_i32(2).unwrap(),
            )
            .unwrap();
        assert_eq!(
            (b.dtype(r), b.shape(r).to_string()),
            (DType::I32, "[3]".to_string())
        );
    }
}
