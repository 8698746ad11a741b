//! Ops read from a protobuf `OpDef`: the signature of a library function
//! (`FunctionDef.signature`), so a node whose op type is a function name loads like any
//! other op.
//!
//! Invariant: the result passes the same checks as an op declared in Rust
//! ([`OpDefBuilder::finish`]); a reference-typed argument is InvalidArgument.

use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op_def::{Allowed, ArgDef, ArgType, AttrDef, OpDef, OpDefBuilder};

impl OpDef {
    /// The op of a function's signature (`FunctionDef.signature`), so a node whose op type
    /// is a function name (a direct call) can be loaded. Its outputs have unknown shapes.
    pub fn from_proto(proto: &rill_proto::OpDef) -> Result<OpDef> {
        let bad = |m: String| {
            Error::invalid_argument(format!("signature of function '{}': {m}", proto.name))
        };
        let arg = |a: &rill_proto::tensorflow::op_def::ArgDef| -> Result<ArgDef> {
            let ty = if !a.type_list_attr.is_empty() {
                ArgType::List(a.type_list_attr.clone())
            } else if !a.type_attr.is_empty() {
                ArgType::Attr(a.type_attr.clone())
            } else {
                let (d, is_ref) = DType::from_proto(a.r#type)?;
                if is_ref {
                    return Err(bad(format!("arg '{}' has a reference type", a.name)));
                }
                ArgType::Fixed(d)
            };
            Ok(ArgDef {
                name: a.name.clone(),
                ty,
                number_attr: (!a.number_attr.is_empty()).then(|| a.number_attr.clone()),
                is_ref: a.is_ref,
            })
        };
        let mut def = OpDef::build(&proto.name).def;
        def.inputs = proto.input_arg.iter().map(arg).collect::<Result<_>>()?;
        def.outputs = proto.output_arg.iter().map(arg).collect::<Result<_>>()?;
        def.is_stateful = proto.is_stateful;
        for a in &proto.attr {
            let default = a
                .default_value
                .as_ref()
                .map(|v| AttrValue::from_proto(v, Some(&a.r#type)))
                .transpose()?;
            let allowed = match a
                .allowed_values
                .as_ref()
                .map(|v| AttrValue::from_proto(v, None))
            {
                Some(Ok(AttrValue::TypeList(t))) => Some(Allowed::Types(t)),
                Some(Ok(AttrValue::StringList(s))) => Some(Allowed::Strings(
                    s.iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect(),
                )),
                _ => None,
            };
            def.attrs.push(AttrDef {
                name: a.name.clone(),
                ty: a.r#type.clone(),
                default,
                allowed,
                minimum: a.has_minimum.then_some(a.minimum),
            });
        }
        OpDefBuilder {
            def,
            errors: vec![],
        }
        .finish()
        .map_err(|e| bad(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_from_function_signature() {
        use rill_proto::tensorflow::op_def::{ArgDef as P, AttrDef as A};
        let sig = rill_proto::OpDef {
            name: "__inference_f_12".into(),
            input_arg: vec![
                P {
                    name: "x".into(),
                    r#type: rill_proto::DataType::DtFloat as i32,
                    ..Default::default()
                },
                P {
                    name: "ys".into(),
                    type_attr: "T".into(),
                    number_attr: "N".into(),
                    ..Default::default()
                },
            ],
            output_arg: vec![P {
                name: "out".into(),
                type_list_attr: "Tout".into(),
                ..Default::default()
            }],
            attr: vec![
                A {
                    name: "T".into(),
                    r#type: "type".into(),
                    ..Default::default()
                },
                A {
                    name: "N".into(),
                    r#type: "int".into(),
                    has_minimum: true,
                    minimum: 1,
                    ..Default::default()
                },
                A {
                    name: "Tout".into(),
                    r#type: "list(type)".into(),
                    ..Default::default()
                },
            ],
            is_stateful: true,
            ..Default::default()
        };
        let d = OpDef::from_proto(&sig).unwrap();
        assert_eq!(d.inputs[0].ty, ArgType::Fixed(DType::F32));
        assert_eq!(d.inputs[1].number_attr.as_deref(), Some("N"));
        assert_eq!(d.outputs[0].ty, ArgType::List("Tout".into()));
        assert_eq!(d.attr("N").unwrap().minimum, Some(1));
        assert!(d.is_stateful);
        let mut broken = sig.clone();
        broken.attr.clear();
        assert!(OpDef::from_proto(&broken).is_err());
    }
}
