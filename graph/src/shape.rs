//! Partially known shapes for graph-time inference: [`Dim`] (known size or unknown) and
//! [`Shape`] (a list of dims, or unknown rank), written TensorFlow's way: `[2,?]`, `?`.
//!
//! Invariant: a known dim is never negative; TensorFlow's `-1` becomes [`Dim::Unknown`] at
//! the boundary (proto or builder input) and never travels inside Rill.

use std::fmt;

use smallvec::SmallVec;

use crate::error::{Error, Result};
use rill_proto::{tensorflow::tensor_shape_proto, TensorShapeProto};

/// One dimension: a known size or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Unknown,
}

impl Dim {
    pub fn known(self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(n),
            Dim::Unknown => None,
        }
    }

    /// The more specific of two compatible dims; `None` when both are known and differ.
    pub fn merge(self, other: Dim) -> Option<Dim> {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) if a != b => None,
            (Dim::Known(a), _) | (_, Dim::Known(a)) => Some(Dim::Known(a)),
            _ => Some(Dim::Unknown),
        }
    }

    /// TensorFlow's encoding: the size, or -1 when unknown.
    pub fn to_i64(self) -> i64 {
        self.known().map_or(-1, |n| n as i64)
    }

    /// From TensorFlow's encoding; any negative number means unknown.
    pub fn from_i64(n: i64) -> Dim {
        if n < 0 {
            Dim::Unknown
        } else {
            Dim::Known(n as usize)
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl From<Option<usize>> for Dim {
    fn from(n: Option<usize>) -> Dim {
        n.map_or(Dim::Unknown, Dim::Known)
    }
}

/// A shape that may be partially known: known rank with some unknown dims, or unknown rank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    dims: Option<SmallVec<[Dim; 4]>>,
}

impl Shape {
    /// Unknown rank (`?`).
    pub fn unknown() -> Shape {
        Shape { dims: None }
    }

    /// Rank 0.
    pub fn scalar() -> Shape {
        Shape::known(&[])
    }

    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Shape {
        Shape::from_dims(dims.iter().map(|&d| Dim::Known(d)))
    }

    pub fn from_dims(dims: impl IntoIterator<Item = Dim>) -> Shape {
        Shape {
            dims: Some(dims.into_iter().collect()),
        }
    }

    /// Known rank, every dim unknown.
    pub fn unknown_dims(rank: usize) -> Shape {
        Shape::from_dims(std::iter::repeat_n(Dim::Unknown, rank))
    }

    pub fn rank(&self) -> Option<usize> {
        self.dims.as_ref().map(|d| d.len())
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        self.dims.as_deref()
    }

    /// The dim at `index` (negative counts from the end); unknown when the rank is unknown.
    pub fn dim(&self, index: i64) -> Dim {
        match &self.dims {
            None => Dim::Unknown,
            Some(d) => {
                let i = if index < 0 {
                    d.len() as i64 + index
                } else {
                    index
                };
                d.get(i as usize).copied().unwrap_or(Dim::Unknown)
            }
        }
    }

    pub fn is_fully_defined(&self) -> bool {
        self.dims
            .as_ref()
            .is_some_and(|d| d.iter().all(|d| d.known().is_some()))
    }

    /// The sizes, when every dim is known.
    pub fn to_known(&self) -> Option<Vec<usize>> {
        self.dims.as_ref()?.iter().map(|d| d.known()).collect()
    }

    /// The element count, when every dim is known and the product fits in a `u64`.
    pub fn num_elements(&self) -> Option<u64> {
        self.to_known()?
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
    }

    /// Whether a value of shape `other` could have this shape too.
    pub fn is_compatible_with(&self, other: &Shape) -> bool {
        self.merge(other).is_ok()
    }

    /// The most specific shape compatible with both, or an error naming the two.
    pub fn merge(&self, other: &Shape) -> Result<Shape> {
        match (&self.dims, &other.dims) {
            (None, _) => Ok(other.clone()),
            (_, None) => Ok(self.clone()),
            (Some(a), Some(b)) => {
                let incompatible = || {
                    Error::invalid_argument(format!("shapes {self} and {other} are incompatible"))
                };
                if a.len() != b.len() {
                    return Err(incompatible());
                }
                let dims = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| x.merge(*y).ok_or_else(incompatible))
                    .collect::<Result<SmallVec<_>>>()?;
                Ok(Shape { dims: Some(dims) })
            }
        }
    }

    /// numpy/TensorFlow broadcasting of two shapes.
    pub fn broadcast(&self, other: &Shape) -> Result<Shape> {
        let (Some(a), Some(b)) = (&self.dims, &other.dims) else {
            return Ok(Shape::unknown());
        };
        let rank = a.len().max(b.len());
        let mut out = SmallVec::with_capacity(rank);
        for i in 0..rank {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                Dim::Known(1)
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                Dim::Known(1)
            };
            let d = match (da, db) {
                (Dim::Known(1), d) | (d, Dim::Known(1)) => d,
                (Dim::Known(x), Dim::Known(y)) if x == y => Dim::Known(x),
                (Dim::Known(x), Dim::Known(y)) => {
                    return Err(Error::invalid_argument(format!(
                        "incompatible shapes for broadcasting: {self} and {other} (dimension {i}: {x} vs {y})"
                    )))
                }
                (Dim::Known(x), Dim::Unknown) | (Dim::Unknown, Dim::Known(x)) => Dim::Known(x),
                (Dim::Unknown, Dim::Unknown) => Dim::Unknown,
            };
            out.push(d);
        }
        Ok(Shape { dims: Some(out) })
    }

    /// Parses TensorFlow's notation: `?` (unknown rank), `[]`, `[2,?,3]`.
    pub fn parse(text: &str) -> Result<Shape> {
        let t = text.trim();
        if t == "?" {
            return Ok(Shape::unknown());
        }
        let inner = t
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(|| {
                Error::invalid_argument(format!("'{text}' is not a shape like [2,?]"))
            })?;
        if inner.trim().is_empty() {
            return Ok(Shape::scalar());
        }
        inner
            .split(',')
            .map(|d| match d.trim() {
                "?" | "-1" => Ok(Dim::Unknown),
                n => n.parse::<usize>().map(Dim::Known).map_err(|_| {
                    Error::invalid_argument(format!("'{n}' in '{text}' is not a dimension"))
                }),
            })
            .collect::<Result<SmallVec<_>>>()
            .map(|dims| Shape { dims: Some(dims) })
    }

    pub fn to_proto(&self) -> TensorShapeProto {
        match &self.dims {
            None => TensorShapeProto {
                dim: vec![],
                unknown_rank: true,
            },
            Some(dims) => TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| tensor_shape_proto::Dim {
                        size: d.to_i64(),
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            },
        }
    }

    /// From TensorFlow's proto; a dim below -1 is an InvalidArgument.
    pub fn from_proto(proto: &TensorShapeProto) -> Result<Shape> {
        if proto.unknown_rank {
            return Ok(Shape::unknown());
        }
        proto
            .dim
            .iter()
            .map(|d| match d.size {
                -1 => Ok(Dim::Unknown),
                n if n < 0 => Err(Error::invalid_argument(format!(
                    "shape dimension {n} is negative"
                ))),
                n => Ok(Dim::Known(n as usize)),
            })
            .collect::<Result<SmallVec<_>>>()
            .map(|dims| Shape { dims: Some(dims) })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dims {
            None => f.write_str("?"),
            Some(dims) => {
                f.write_str("[")?;
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl<const N: usize> From<[i64; N]> for Shape {
    /// TensorFlow's convention: -1 is an unknown dim.
    fn from(dims: [i64; N]) -> Shape {
        Shape::from_dims(dims.into_iter().map(Dim::from_i64))
    }
}

impl<const N: usize> From<[Option<usize>; N]> for Shape {
    fn from(dims: [Option<usize>; N]) -> Shape {
        Shape::from_dims(dims.into_iter().map(Dim::from))
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Shape {
        Shape::known(&dims)
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Shape {
        Shape::known(dims)
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(dims: Vec<Dim>) -> Shape {
        Shape::from_dims(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Shape {
        Shape::parse(t).unwrap()
    }

    #[test]
    fn parse_and_display() {
        for t in ["?", "[]", "[2,?,3]", "[0]"] {
            assert_eq!(s(t).to_string(), t);
        }
        assert!(Shape::parse("[a]").is_err());
        assert!(Shape::parse("2,3").is_err());
    }

    #[test]
    fn broadcasting() {
        assert_eq!(s("[2,1,4]").broadcast(&s("[3,1]")).unwrap(), s("[2,3,4]"));
        assert_eq!(s("[?,4]").broadcast(&s("[4]")).unwrap(), s("[?,4]"));
        assert_eq!(s("[?]").broadcast(&s("[5]")).unwrap(), s("[5]"));
        assert_eq!(s("[]").broadcast(&s("[2,3]")).unwrap(), s("[2,3]"));
        assert_eq!(s("?").broadcast(&s("[2]")).unwrap(), s("?"));
        let e = s("[2,3]").broadcast(&s("[4]")).unwrap_err();
        assert!(e.message.contains("[2,3] and [4]"), "{e}");
    }

    #[test]
    fn merging() {
        assert_eq!(s("[2,?]").merge(&s("[?,3]")).unwrap(), s("[2,3]"));
        assert_eq!(s("?").merge(&s("[1]")).unwrap(), s("[1]"));
        assert!(s("[2]").merge(&s("[3]")).is_err());
        assert!(s("[2]").merge(&s("[2,1]")).is_err());
    }

    #[test]
    fn proto_round_trip() {
        for t in ["?", "[]", "[2,?,3]"] {
            assert_eq!(Shape::from_proto(&s(t).to_proto()).unwrap(), s(t));
        }
        let mut bad = s("[2]").to_proto();
        bad.dim[0].size = -7;
        assert!(Shape::from_proto(&bad).is_err());
    }

    #[test]
    fn element_count_does_not_overflow() {
        assert_eq!(s("[2,3]").num_elements(), Some(6));
        let huge = Shape::known(&[usize::MAX, usize::MAX]);
        assert_eq!(huge.num_elements(), None);
        assert_eq!(Shape::from([-1i64, 784]), s("[?,784]"));
    }
}
