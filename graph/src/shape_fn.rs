//! Shape inference: the [`InferenceContext`] a shape function sees (attrs, input dtypes,
//! shapes, constant input values, input names) and helpers in TensorFlow's style.
//!
//! Invariant: a shape function returns exactly one [`Shape`] per output tensor and reports a
//! mismatch as InvalidArgument naming the inputs involved and their shapes; the graph
//! attaches the node name and op.

use crate::attr::{AttrValue, Attrs};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

/// Computes the output shapes of a node.
pub type ShapeFn = fn(&InferenceContext) -> Result<Vec<Shape>>;

/// What a shape function may look at.
pub struct InferenceContext<'a> {
    pub op: &'a str,
    pub attrs: &'a Attrs,
    pub input_dtypes: Vec<DType>,
    pub input_shapes: Vec<Shape>,
    /// The value of each input when it is a graph constant.
    pub input_values: Vec<Option<Tensor>>,
    /// For inputs that are shape vectors (the output of a `Shape` op), the partially known
    /// shape they describe.
    pub input_shape_values: Vec<Option<Shape>>,
    /// `node:index` of each input, for messages.
    pub input_names: Vec<String>,
    pub num_outputs: usize,
}

/// The default for ops without a shape function: every output unknown.
pub fn unknown_outputs(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![Shape::unknown(); cx.num_outputs])
}

/// Output 0 has the shape of input 0 (elementwise unary ops, Identity, ...).
pub fn unchanged(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.input(0)?.clone(); cx.num_outputs.max(1)])
}

/// Every output is a scalar.
pub fn scalars(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![Shape::scalar(); cx.num_outputs])
}

/// No outputs.
pub fn no_outputs(_: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![])
}

/// The broadcast of inputs 0 and 1 (binary elementwise ops).
pub fn broadcast_binary(cx: &InferenceContext) -> Result<Vec<Shape>> {
    Ok(vec![cx.broadcast(0, 1)?])
}

impl InferenceContext<'_> {
    pub fn num_inputs(&self) -> usize {
        self.input_shapes.len()
    }

    pub fn input(&self, i: usize) -> Result<&Shape> {
        self.input_shapes
            .get(i)
            .ok_or_else(|| Error::invalid_argument(format!("{} expects input {i}", self.op)))
    }

    /// Input `i`'s shape, which must have rank `rank`.
    pub fn with_rank(&self, i: usize, rank: usize) -> Result<Shape> {
        let s = self.input(i)?;
        match s.rank() {
            None => Ok(Shape::unknown_dims(rank)),
            Some(r) if r == rank => Ok(s.clone()),
            Some(r) => Err(self.error(format!(
                "input '{}' must have rank {rank}, but its shape is {s} (rank {r})",
                self.input_names[i]
            ))),
        }
    }

    /// Input `i`'s shape, which must have rank at least `rank`.
    pub fn with_rank_at_least(&self, i: usize, rank: usize) -> Result<Shape> {
        let s = self.input(i)?;
        match s.rank() {
            Some(r) if r < rank => Err(self.error(format!(
                "input '{}' must have rank at least {rank}, but its shape is {s}",
                self.input_names[i]
            ))),
            _ => Ok(s.clone()),
        }
    }

    /// The broadcast of inputs `i` and `j`, or an error naming both and their shapes.
    pub fn broadcast(&self, i: usize, j: usize) -> Result<Shape> {
        let (a, b) = (self.input(i)?, self.input(j)?);
        a.broadcast(b).map_err(|_| {
            self.error(format!(
                "incompatible shapes: '{}' has shape {a} and '{}' has shape {b}",
                self.input_names[i], self.input_names[j]
            ))
        })
    }

    /// The merge of inputs `i` and `j`, which must be compatible.
    pub fn merge_inputs(&self, i: usize, j: usize) -> Result<Shape> {
        let (a, b) = (self.input(i)?, self.input(j)?);
        a.merge(b).map_err(|_| {
            self.error(format!(
                "'{}' has shape {a} but '{}' has shape {b}; they must be equal",
                self.input_names[i], self.input_names[j]
            ))
        })
    }

    /// Two dims that must be equal (e.g. MatMul's inner dims): the known one, or an error.
    pub fn merge_dims(&self, a: Dim, b: Dim, what: &str) -> Result<Dim> {
        a.merge(b)
            .ok_or_else(|| self.error(format!("{what}: {a} vs {b}")))
    }

    pub fn error(&self, message: String) -> Error {
        Error::invalid_argument(message)
    }

    pub fn attr(&self, name: &str) -> Result<&AttrValue> {
        self.attrs
            .get(name)
            .ok_or_else(|| self.error(format!("{} is missing attr '{name}'", self.op)))
    }

    pub fn attr_int(&self, name: &str) -> Result<i64> {
        self.attr(name)?
            .as_int()
            .ok_or_else(|| self.error(format!("attr '{name}' must be an int")))
    }

    pub fn attr_bool(&self, name: &str) -> Result<bool> {
        self.attr(name)?
            .as_bool()
            .ok_or_else(|| self.error(format!("attr '{name}' must be a bool")))
    }

    pub fn attr_str(&self, name: &str) -> Result<&str> {
        self.attr(name)?
            .as_str()
            .ok_or_else(|| self.error(format!("attr '{name}' must be a string")))
    }

    pub fn attr_ints(&self, name: &str) -> Result<&[i64]> {
        self.attr(name)?
            .as_int_list()
            .ok_or_else(|| self.error(format!("attr '{name}' must be a list(int)")))
    }

    pub fn attr_type(&self, name: &str) -> Result<DType> {
        self.attr(name)?
            .as_type()
            .ok_or_else(|| self.error(format!("attr '{name}' must be a type")))
    }

    pub fn attr_shape(&self, name: &str) -> Result<&Shape> {
        self.attr(name)?
            .as_shape()
            .ok_or_else(|| self.error(format!("attr '{name}' must be a shape")))
    }

    /// The constant value of input `i`, if it is known at graph time.
    pub fn input_value(&self, i: usize) -> Option<&Tensor> {
        self.input_values.get(i)?.as_ref()
    }

    /// Input `i`'s constant integer values (axes, sizes), if known.
    pub fn input_ints(&self, i: usize) -> Result<Option<Vec<i64>>> {
        self.input_value(i).map(Tensor::to_i64_vec).transpose()
    }

    /// Reads input `i` as a shape vector (Reshape's `shape`, Fill's `dims`): from its
    /// constant value (-1 is unknown), from a `Shape` op it comes from, or else a shape
    /// whose rank is the vector's length when that is known.
    pub fn input_as_shape(&self, i: usize) -> Result<Shape> {
        if let Some(values) = self.input_ints(i)? {
            if self.input(i)?.rank() == Some(0) {
                return Err(self.error(format!(
                    "shape input '{}' must be a vector, got a scalar",
                    self.input_names[i]
                )));
            }
            return values
                .iter()
                .map(|&v| match v {
                    -1 => Ok(Dim::Unknown),
                    v if v < 0 => Err(self.error(format!(
                        "dimension {v} in shape input '{}' is negative",
                        self.input_names[i]
                    ))),
                    v => Ok(Dim::Known(v as usize)),
                })
                .collect::<Result<Vec<_>>>()
                .map(Shape::from);
        }
        if let Some(Some(s)) = self.input_shape_values.get(i) {
            return Ok(s.clone());
        }
        match self.with_rank(i, 1)?.dim(0) {
            Dim::Known(n) => Ok(Shape::unknown_dims(n)),
            Dim::Unknown => Ok(Shape::unknown()),
        }
    }

    /// Normalises a possibly negative `axis` against `rank`.
    pub fn canonical_axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            return Err(self.error(format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(if axis < 0 {
            (axis + r) as usize
        } else {
            axis as usize
        })
    }
}
