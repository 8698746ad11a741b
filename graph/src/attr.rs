//! Typed node attributes ([`AttrValue`]), TensorFlow's `AttrValue` model: string, int,
//! float, bool, dtype, shape, tensor, function, lists of each, and placeholders.
//!
//! Invariant: `from_proto(to_proto(v)) == v` for every value Rill can hold; an attribute that
//! names a dtype Rill does not support is an Unimplemented error at import, never later.

use std::collections::BTreeMap;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;
use rill_proto::{attr_value, tensorflow::attr_value::ListValue, AttrValue as AttrProto};

/// Attributes of a node, sorted by name (as TensorFlow prints them).
pub type Attrs = BTreeMap<String, AttrValue>;

/// A function reference with its attributes (`NameAttrList`).
#[derive(Debug, Clone, PartialEq)]
pub struct FuncAttr {
    pub name: String,
    pub attrs: Attrs,
}

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    String(Vec<u8>),
    Int(i64),
    Float(f32),
    Bool(bool),
    Type(DType),
    Shape(Shape),
    Tensor(Tensor),
    Func(FuncAttr),
    /// A reference to an attribute of an enclosing function (`placeholder`).
    Placeholder(String),
    StringList(Vec<Vec<u8>>),
    IntList(Vec<i64>),
    FloatList(Vec<f32>),
    BoolList(Vec<bool>),
    TypeList(Vec<DType>),
    ShapeList(Vec<Shape>),
    TensorList(Vec<Tensor>),
    FuncList(Vec<FuncAttr>),
}

impl AttrValue {
    /// TensorFlow's attr type name of this value (`int`, `list(type)`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::String(_) => "string",
            AttrValue::Int(_) => "int",
            AttrValue::Float(_) => "float",
            AttrValue::Bool(_) => "bool",
            AttrValue::Type(_) => "type",
            AttrValue::Shape(_) => "shape",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Func(_) => "func",
            AttrValue::Placeholder(_) => "placeholder",
            AttrValue::StringList(_) => "list(string)",
            AttrValue::IntList(_) => "list(int)",
            AttrValue::FloatList(_) => "list(float)",
            AttrValue::BoolList(_) => "list(bool)",
            AttrValue::TypeList(_) => "list(type)",
            AttrValue::ShapeList(_) => "list(shape)",
            AttrValue::TensorList(_) => "list(tensor)",
            AttrValue::FuncList(_) => "list(func)",
        }
    }

    /// An empty list; TensorFlow cannot tell the element type of an empty list apart, so
    /// an empty `list` proto decodes to the list type the op definition asks for.
    pub fn empty_list(type_name: &str) -> Option<AttrValue> {
        Some(match type_name {
            "list(string)" => AttrValue::StringList(vec![]),
            "list(int)" => AttrValue::IntList(vec![]),
            "list(float)" => AttrValue::FloatList(vec![]),
            "list(bool)" => AttrValue::BoolList(vec![]),
            "list(type)" => AttrValue::TypeList(vec![]),
            "list(shape)" => AttrValue::ShapeList(vec![]),
            "list(tensor)" => AttrValue::TensorList(vec![]),
            "list(func)" => AttrValue::FuncList(vec![]),
            _ => return None,
        })
    }

    pub fn to_proto(&self) -> AttrProto {
        use attr_value::Value as V;
        let list = |l: ListValue| Some(V::List(l));
        let value = match self {
            AttrValue::String(s) => Some(V::S(s.clone())),
            AttrValue::Int(i) => Some(V::I(*i)),
            AttrValue::Float(f) => Some(V::F(*f)),
            AttrValue::Bool(b) => Some(V::B(*b)),
            AttrValue::Type(t) => Some(V::Type(t.to_proto() as i32)),
            AttrValue::Shape(s) => Some(V::Shape(s.to_proto())),
            AttrValue::Tensor(t) => Some(V::Tensor(t.to_proto())),
            AttrValue::Func(f) => Some(V::Func(func_to_proto(f))),
            AttrValue::Placeholder(p) => Some(V::Placeholder(p.clone())),
            AttrValue::StringList(v) => list(ListValue {
                s: v.clone(),
                ..Default::default()
            }),
            AttrValue::IntList(v) => list(ListValue {
                i: v.clone(),
                ..Default::default()
            }),
            AttrValue::FloatList(v) => list(ListValue {
                f: v.clone(),
                ..Default::default()
            }),
            AttrValue::BoolList(v) => list(ListValue {
                b: v.clone(),
                ..Default::default()
            }),
            AttrValue::TypeList(v) => list(ListValue {
                r#type: v.iter().map(|t| t.to_proto() as i32).collect(),
                ..Default::default()
            }),
            AttrValue::ShapeList(v) => list(ListValue {
                shape: v.iter().map(Shape::to_proto).collect(),
                ..Default::default()
            }),
            AttrValue::TensorList(v) => list(ListValue {
                tensor: v.iter().map(Tensor::to_proto).collect(),
                ..Default::default()
            }),
            AttrValue::FuncList(v) => list(ListValue {
                func: v.iter().map(func_to_proto).collect(),
                ..Default::default()
            }),
        };
        AttrProto { value }
    }

    /// Decodes an attribute; `expected` is the op definition's type for it (when known),
    /// used to give empty lists their element type.
    pub fn from_proto(proto: &AttrProto, expected: Option<&str>) -> Result<AttrValue> {
        use attr_value::Value as V;
        let dtype = |t: i32| -> Result<DType> {
            let (d, is_ref) = DType::from_proto(t)?;
            if is_ref {
                return Err(Error::invalid_argument(
                    "a type attribute cannot be a reference type",
                ));
            }
            Ok(d)
        };
        Ok(match &proto.value {
            None => {
                return Err(Error::invalid_argument("attribute has no value"));
            }
            Some(V::S(s)) => AttrValue::String(s.clone()),
            Some(V::I(i)) => AttrValue::Int(*i),
            Some(V::F(f)) => AttrValue::Float(*f),
            Some(V::B(b)) => AttrValue::Bool(*b),
            Some(V::Type(t)) => AttrValue::Type(dtype(*t)?),
            Some(V::Shape(s)) => AttrValue::Shape(Shape::from_proto(s)?),
            Some(V::Tensor(t)) => AttrValue::Tensor(Tensor::from_proto(t)?),
            Some(V::Func(f)) => AttrValue::Func(func_from_proto(f)?),
            Some(V::Placeholder(p)) => AttrValue::Placeholder(p.clone()),
            Some(V::List(l)) => {
                if !l.s.is_empty() {
                    AttrValue::StringList(l.s.clone())
                } else if !l.i.is_empty() {
                    AttrValue::IntList(l.i.clone())
                } else if !l.f.is_empty() {
                    AttrValue::FloatList(l.f.clone())
                } else if !l.b.is_empty() {
                    AttrValue::BoolList(l.b.clone())
                } else if !l.r#type.is_empty() {
                    AttrValue::TypeList(l.r#type.iter().map(|&t| dtype(t)).collect::<Result<_>>()?)
                } else if !l.shape.is_empty() {
                    AttrValue::ShapeList(
                        l.shape
                            .iter()
                            .map(Shape::from_proto)
                            .collect::<Result<_>>()?,
                    )
                } else if !l.tensor.is_empty() {
                    AttrValue::TensorList(
                        l.tensor
                            .iter()
                            .map(Tensor::from_proto)
                            .collect::<Result<_>>()?,
                    )
                } else if !l.func.is_empty() {
                    AttrValue::FuncList(l.func.iter().map(func_from_proto).collect::<Result<_>>()?)
                } else {
                    expected
                        .and_then(AttrValue::empty_list)
                        .unwrap_or(AttrValue::IntList(vec![]))
                }
            }
        })
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_float(&self) -> Option<f32> {
        match self {
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_type(&self) -> Option<DType> {
        match self {
            AttrValue::Type(t) => Some(*t),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }
    pub fn as_shape(&self) -> Option<&Shape> {
        match self {
            AttrValue::Shape(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            AttrValue::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn as_int_list(&self) -> Option<&[i64]> {
        match self {
            AttrValue::IntList(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_type_list(&self) -> Option<&[DType]> {
        match self {
            AttrValue::TypeList(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_string_list(&self) -> Option<&[Vec<u8>]> {
        match self {
            AttrValue::StringList(v) => Some(v),
            _ => None,
        }
    }
}

fn func_to_proto(f: &FuncAttr) -> rill_proto::NameAttrList {
    rill_proto::NameAttrList {
        name: f.name.clone(),
        attr: f
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_proto()))
            .collect(),
    }
}

fn func_from_proto(f: &rill_proto::NameAttrList) -> Result<FuncAttr> {
    Ok(FuncAttr {
        name: f.name.clone(),
        attrs: f
            .attr
            .iter()
            .map(|(k, v)| Ok((k.clone(), AttrValue::from_proto(v, None)?)))
            .collect::<Result<_>>()?,
    })
}

macro_rules! attr_from {
    ($($ty:ty => $variant:ident $(($conv:expr))?),* $(,)?) => {
        $(impl From<$ty> for AttrValue {
            fn from(v: $ty) -> AttrValue { AttrValue::$variant($( $conv )?(v)) }
        })*
    };
}

attr_from! {
    i64 => Int, f32 => Float, bool => Bool, DType => Type, Shape => Shape, Tensor => Tensor,
    Vec<i64> => IntList, Vec<f32> => FloatList, Vec<DType> => TypeList, Vec<Shape> => ShapeList,
    &str => String((|s: &str| s.as_bytes().to_vec())),
    String => String((String::into_bytes)),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip() {
        let values = vec![
            AttrValue::from("SAME"),
            AttrValue::Int(-3),
            AttrValue::Float(0.5),
            AttrValue::Bool(true),
            AttrValue::Type(DType::BF16),
            AttrValue::Shape(Shape::parse("[?,3]").unwrap()),
            AttrValue::Tensor(Tensor::vector(vec![1i32, 2])),
            AttrValue::Func(FuncAttr {
                name: "f".into(),
                attrs: [("T".to_string(), AttrValue::Type(DType::F32))].into(),
            }),
            AttrValue::IntList(vec![1, 2, 2, 1]),
            AttrValue::TypeList(vec![DType::F32, DType::I64]),
            AttrValue::StringList(vec![b"loc:@w".to_vec()]),
            AttrValue::ShapeList(vec![Shape::unknown()]),
        ];
        for v in values {
            assert_eq!(
                AttrValue::from_proto(&v.to_proto(), Some(v.type_name())).unwrap(),
                v
            );
        }
        let empty = AttrValue::TypeList(vec![]);
        assert_eq!(
            AttrValue::from_proto(&empty.to_proto(), Some("list(type)")).unwrap(),
            empty
        );
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(AttrValue::from_proto(&AttrProto { value: None }, None).is_err());
        let ref_type = AttrProto {
            value: Some(attr_value::Value::Type(101)),
        };
        assert!(AttrValue::from_proto(&ref_type, None).is_err());
    }
}
