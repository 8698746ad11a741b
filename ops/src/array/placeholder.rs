//! `Placeholder` and `PlaceholderWithDefault`: graph inputs fed at run time.
//!
//! `Placeholder` is not differentiable; `PlaceholderWithDefault` passes its gradient on.

use rill_graph::{DType, InferenceContext, OpDef, Output, Result, Shape};

use crate::Builder;

pub(crate) fn register(r: &mut crate::Registry) -> Result<()> {
    r.register(
        OpDef::build("Placeholder")
            .output("output: dtype")
            .attr("dtype: type")
            .attr("shape: shape = ?")
            .shape_fn(placeholder_shape),
    )?;
    r.register(
        OpDef::build("PlaceholderWithDefault")
            .input("input: dtype")
            .output("output: dtype")
            .attr("dtype: type")
            .attr("shape: shape")
            .shape_fn(with_default_shape),
    )?;
    r.no_gradient("Placeholder")?;
    r.gradient("PlaceholderWithDefault", |c| Ok(c.only(c.dy(0)?)))?;
    Ok(())
}

fn placeholder_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.attr_shape("shape")?.clone()])
}

fn with_default_shape(cx: &InferenceContext) -> Result<Vec<Shape>> {
    let declared = cx.attr_shape("shape")?;
    let input = cx.input(0)?;
    if !declared.is_compatible_with(input) {
        return Err(cx.error(format!(
            "default value '{}' has shape {input}, incompatible with the declared shape {declared}",
            cx.input_names[0]
        )));
    }
    Ok(vec![declared.clone()])
}

impl Builder {
    /// A graph input named `name`, fed at run time; `shape` may be partial
    /// (`[-1, 784]`, `[None, Some(784)]`).
    pub fn placeholder(&self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Result<Output> {
        self.op("Placeholder")
            .name(name)
            .attr("dtype", dtype)
            .attr("shape", shape.into())
            .build_output()
    }

    /// `input` unless fed; the declared `shape` may be less specific than `input`'s.
    pub fn placeholder_with_default(
        &self,
        name: &str,
        input: Output,
        shape: impl Into<Shape>,
    ) -> Result<Output> {
        self.op("PlaceholderWithDefault")
            .name(name)
            .input(input)
            .attr("shape", shape.into())
            .build_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{attrs, infer};

    #[test]
    fn shapes() {
        let a = attrs(&[
            ("dtype", DType::F32.into()),
            ("shape", Shape::from([-1i64, 784]).into()),
        ]);
        assert_eq!(infer("Placeholder", &a, "").unwrap(), "[?,784]");
        let a = attrs(&[("dtype", DType::F32.into())]);
        assert_eq!(infer("Placeholder", &a, "").unwrap(), "?");
        let a = attrs(&[
            ("dtype", DType::F32.into()),
            ("shape", Shape::from([-1i64, 3]).into()),
        ]);
        assert_eq!(
            infer("PlaceholderWithDefault", &a, "[2,3]").unwrap(),
            "[?,3]"
        );
        assert!(infer("PlaceholderWithDefault", &a, "[2,4]").is_err());
    }

    #[test]
    fn builder() {
        let b = Builder::new();
        let x = b.placeholder("x", DType::F32, [-1i64, 784]).unwrap();
        assert_eq!(b.shape(x).to_string(), "[?,784]");
        assert_eq!(b.graph().tensor_name(x), "x:0");
    }
}
