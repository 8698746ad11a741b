//! Instantiating a function's body in place of a call, as TensorFlow's function inlining
//! does (`InlineFunctionBody`).
//!
//! Body nodes are renamed `<prefix>/<name>`; each argument enters through an `Identity`
//! `<prefix>/<arg>` reading the call's input; `$T`-style attr placeholders take the values
//! the call instantiates the function with. FunctionDef inputs (`arg`, `node:out_arg:k`,
//! `^node`) become GraphDef inputs (`node:index`) through the ops' output arg lengths. When
//! the call has control inputs, a `NoOp` `<prefix>/input_control_node` waits for them and
//! every argument and every body node without inputs waits for it, so nothing of the body
//! runs before the call could (and a body under a dead `Switch` branch is dead).

use std::collections::HashMap;

use rill_graph::{AttrValue, Attrs, Code, DType, Error, Result};
use rill_proto::{attr_value, AttrValue as AttrProto, FunctionDef, NodeDef};

use super::{function_error, Lowerer, MAX_DEPTH};

/// One instantiation of a function.
pub(super) struct Call<'c> {
    pub function: &'c str,
    /// The attrs the function is instantiated with (values of its placeholders).
    pub attrs: &'c HashMap<String, AttrProto>,
    /// Prefix of the body's node names.
    pub prefix: &'c str,
    /// Tensor names of the arguments, in signature order (list args flattened).
    pub inputs: &'c [String],
    /// Nodes the body waits for.
    pub controls: &'c [String],
    /// Device of body nodes that ask for none.
    pub device: &'c str,
    /// Functions being instantiated around this call (outermost first).
    pub stack: &'c [String],
}

/// What an instantiated body offers its caller.
pub(super) struct Inlined {
    /// Tensor names of the results, in signature order (list results flattened).
    pub outputs: Vec<String>,
    /// The results' dtypes where the signature gives them.
    pub output_types: Vec<Option<DType>>,
    /// The nodes of `control_ret` (side effects the caller must wait for).
    pub control_outputs: Vec<String>,
    /// The `NoOp` waiting for the call's control inputs, if it had any.
    pub input_control: Option<String>,
}

/// A body node: its FunctionDef form with placeholders substituted and its new name.
struct BodyNode<'f> {
    def: &'f NodeDef,
    attr: HashMap<String, AttrProto>,
    name: String,
}

impl Lowerer<'_> {
    /// Queues the nodes of `call`'s body and returns how to reach its results.
    pub(super) fn inline(&mut self, call: &Call) -> Result<Inlined> {
        let f = call.function;
        if call.stack.iter().any(|s| s == f) {
            return Err(function_error(
                Code::Unimplemented,
                f,
                format!(
                    "recursive call ({} -> {f}); Rill inlines functions and cannot run recursion",
                    call.stack.join(" -> ")
                ),
            ));
        }
        if call.stack.len() >= MAX_DEPTH {
            return Err(function_error(
                Code::ResourceExhausted,
                f,
                format!("calls nest more than {MAX_DEPTH} deep"),
            ));
        }
        let fdef: &FunctionDef = self.library.get(f).copied().ok_or_else(|| {
            Error::not_found(format!("function '{f}' is not in the graph's library"))
        })?;
        let sig = fdef
            .signature
            .as_ref()
            .ok_or_else(|| function_error(Code::InvalidArgument, f, "has no signature"))?;
        let mut stack = call.stack.to_vec();
        stack.push(f.to_string());

        // The instantiation attrs, typed by the signature (for arg lengths and dtypes).
        let mut attrs = Attrs::new();
        for a in &sig.attr {
            let v = call.attrs.get(&a.name).or(a.default_value.as_ref());
            if let Some(v) = v.and_then(|v| AttrValue::from_proto(v, Some(&a.r#type)).ok()) {
                attrs.insert(a.name.clone(), v);
            }
        }
        let arg_types =
            |arg: &rill_proto::tensorflow::op_def::ArgDef| -> Result<Vec<Option<DType>>> {
                let missing = |attr: &str| {
                    function_error(
                        Code::InvalidArgument,
                        f,
                        format!(
                            "arg '{}' needs attr '{attr}', which the call does not set",
                            arg.name
                        ),
                    )
                };
                if !arg.type_list_attr.is_empty() {
                    let l = attrs
                        .get(&arg.type_list_attr)
                        .and_then(AttrValue::as_type_list)
                        .ok_or_else(|| missing(&arg.type_list_attr))?;
                    return Ok(l.iter().map(|&d| Some(d)).collect());
                }
                let one = if !arg.type_attr.is_empty() {
                    attrs.get(&arg.type_attr).and_then(AttrValue::as_type)
                } else {
                    DType::from_proto(arg.r#type).ok().map(|(d, _)| d)
                };
                if arg.number_attr.is_empty() {
                    return Ok(vec![one]);
                }
                let n = attrs
                    .get(&arg.number_attr)
                    .and_then(AttrValue::as_int)
                    .ok_or_else(|| missing(&arg.number_attr))?;
                Ok(vec![one; n.max(0) as usize])
            };

        let input_types: Vec<Vec<Option<DType>>> =
            sig.input_arg.iter().map(arg_types).collect::<Result<_>>()?;
        let expected: usize = input_types.iter().map(Vec::len).sum();
        if expected != call.inputs.len() {
            return Err(function_error(
                Code::InvalidArgument,
                f,
                format!(
                    "takes {expected} inputs, but the call gives {}",
                    call.inputs.len()
                ),
            ));
        }

        let input_control = if call.controls.is_empty() {
            None
        } else {
            let name = self.fresh_name(&format!("{}/input_control_node", call.prefix));
            let input = call.controls.iter().map(|c| format!("^{c}")).collect();
            let node = super::node_def(&name, "NoOp", input, call.device, Attrs::new());
            self.emit(node, &stack);
            Some(name)
        };

        // Arguments: one Identity per tensor.
        let mut args: HashMap<&str, Vec<String>> = HashMap::new();
        let mut next = call.inputs.iter();
        for (arg, types) in sig.input_arg.iter().zip(&input_types) {
            let is_list = !arg.type_list_attr.is_empty() || !arg.number_attr.is_empty();
            let mut refs = Vec::with_capacity(types.len());
            for (j, t) in types.iter().enumerate() {
                let base = if is_list {
                    format!("{}/{}_{j}", call.prefix, arg.name)
                } else {
                    format!("{}/{}", call.prefix, arg.name)
                };
                let name = self.fresh_name(&base);
                let mut input = vec![next.next().expect("input count checked").clone()];
                input.extend(input_control.iter().map(|c| format!("^{c}")));
                let mut a = Attrs::new();
                if let Some(t) = t {
                    a.insert("T".into(), AttrValue::Type(*t));
                }
                let node = super::node_def(&name, "Identity", input, call.device, a);
                self.emit(node, &stack);
                refs.push(name);
            }
            args.insert(arg.name.as_str(), refs);
        }

        // Body nodes, renamed under the prefix, placeholders substituted.
        let mut body: HashMap<&str, BodyNode> = HashMap::with_capacity(fdef.node_def.len());
        for nd in &fdef.node_def {
            let name = self.fresh_name(&format!("{}/{}", call.prefix, nd.name));
            let mut attr = HashMap::with_capacity(nd.attr.len());
            for (k, v) in &nd.attr {
                let v = substitute(v, call.attrs).map_err(|e| {
                    Error::new(e.code, format!("attr '{k}': {}", e.message)).at_node(&name, &nd.op)
                })?;
                attr.insert(k.clone(), v);
            }
            if body
                .insert(
                    nd.name.as_str(),
                    BodyNode {
                        def: nd,
                        attr,
                        name,
                    },
                )
                .is_some()
            {
                return Err(function_error(
                    Code::InvalidArgument,
                    f,
                    format!("two nodes are named '{}'", nd.name),
                ));
            }
        }
        for nd in &fdef.node_def {
            let b = &body[nd.name.as_str()];
            let name = b.name.clone();
            let at = |e: Error| e.at_node(&name, &nd.op);
            // An op Rill does not know fails here, at session creation.
            self.op_def(&nd.op).map_err(at)?;
            let (mut data, mut control) = (vec![], vec![]);
            for text in &nd.input {
                match text.strip_prefix('^') {
                    Some(c) => control.extend(
                        self.resolve_control(c, &args, &body)
                            .map_err(|e| at(function_error(Code::InvalidArgument, f, e)))?,
                    ),
                    None => data.extend(self.resolve(text, &args, &body).map_err(|e| {
                        at(Error::new(
                            e.code,
                            format!("function '{f}', input '{text}': {}", e.message),
                        ))
                    })?),
                }
            }
            // Nodes without inputs run after the call's control inputs, or else in the
            // frame of its first argument (a call inside a loop body).
            if data.is_empty() && control.is_empty() {
                let anchor = input_control.clone().or_else(|| {
                    sig.input_arg
                        .iter()
                        .find_map(|a| args.get(a.name.as_str())?.first().cloned())
                });
                control.extend(anchor.map(|c| format!("^{c}")));
            }
            data.extend(control);
            let node = NodeDef {
                name: name.clone(),
                op: nd.op.clone(),
                input: data,
                device: if nd.device.is_empty() {
                    call.device.to_string()
                } else {
                    nd.device.clone()
                },
                attr: body[nd.name.as_str()].attr.clone(),
                experimental_debug_info: nd.experimental_debug_info.clone(),
                experimental_type: nd.experimental_type.clone(),
            };
            self.emit(node, &stack);
        }

        // Results, in signature order.
        let mut outputs = vec![];
        let mut output_types = vec![];
        for arg in &sig.output_arg {
            let text = fdef.ret.get(&arg.name).ok_or_else(|| {
                function_error(
                    Code::InvalidArgument,
                    f,
                    format!("result '{}' has no 'ret' entry", arg.name),
                )
            })?;
            let refs = self.resolve(text, &args, &body).map_err(|e| {
                Error::new(
                    e.code,
                    format!(
                        "function '{f}', result '{}' = '{text}': {}",
                        arg.name, e.message
                    ),
                )
            })?;
            let types = arg_types(arg).unwrap_or_default();
            output_types.extend((0..refs.len()).map(|i| types.get(i).copied().flatten()));
            outputs.extend(refs);
        }
        let mut control_ret: Vec<(&String, &String)> = fdef.control_ret.iter().collect();
        control_ret.sort();
        let mut control_outputs = vec![];
        for (key, node) in control_ret {
            let b = body.get(node.as_str()).ok_or_else(|| {
                function_error(
                    Code::InvalidArgument,
                    f,
                    format!("control result '{key}' names '{node}', which is not a node"),
                )
            })?;
            control_outputs.push(b.name.clone());
        }
        Ok(Inlined {
            outputs,
            output_types,
            control_outputs,
            input_control,
        })
    }

    /// GraphDef tensor names for a FunctionDef data input: `arg` (all of an argument's
    /// tensors), `node:out_arg:k`, `node:out_arg` (the whole output arg) or `node`.
    fn resolve(
        &mut self,
        text: &str,
        args: &HashMap<&str, Vec<String>>,
        body: &HashMap<&str, BodyNode>,
    ) -> Result<Vec<String>> {
        let parts: Vec<&str> = text.split(':').collect();
        if let Some(refs) = args.get(parts[0]) {
            return match parts[..] {
                [_] => Ok(refs.clone()),
                [_, k] => {
                    let k: usize = k
                        .parse()
                        .map_err(|_| Error::invalid_argument("bad argument index"))?;
                    refs.get(k)
                        .map(|r| vec![r.clone()])
                        .ok_or_else(|| Error::invalid_argument("argument index out of range"))
                }
                _ => Err(Error::invalid_argument("not an input of the function body")),
            };
        }
        let b = body.get(parts[0]).ok_or_else(|| {
            Error::invalid_argument("names neither an argument nor a node of the function")
        })?;
        let (out_arg, k) = match parts[..] {
            [_] => return Ok(vec![b.name.clone()]),
            [_, out] => (out, None),
            [_, out, k] => (
                out,
                Some(
                    k.parse::<usize>()
                        .map_err(|_| Error::invalid_argument("bad output index"))?,
                ),
            ),
            _ => return Err(Error::invalid_argument("malformed input")),
        };
        let op = self.op_def(&b.def.op)?;
        let position = op
            .outputs
            .iter()
            .position(|a| a.name == out_arg)
            .ok_or_else(|| {
                Error::invalid_argument(format!("{} has no output arg '{out_arg}'", b.def.op))
            })?;
        let mut attrs = Attrs::new();
        for (key, v) in &b.attr {
            let expected = op.attr(key).map(|a| a.ty.as_str());
            if let Ok(v) = AttrValue::from_proto(v, expected) {
                attrs.insert(key.clone(), v);
            }
        }
        for a in &op.attrs {
            if let (false, Some(d)) = (attrs.contains_key(&a.name), &a.default) {
                attrs.insert(a.name.clone(), d.clone());
            }
        }
        let lengths = op.arg_lengths(&op.outputs[..=position], &attrs)?;
        let offset: usize = lengths[..position].iter().sum();
        let len = lengths[position];
        let tensor = |i: usize| match i {
            0 => b.name.clone(),
            i => format!("{}:{i}", b.name),
        };
        match k {
            Some(k) if k < len => Ok(vec![tensor(offset + k)]),
            Some(k) => Err(Error::invalid_argument(format!(
                "output arg '{out_arg}' of {} has {len} tensors, not {}",
                b.def.op,
                k + 1
            ))),
            None => Ok((offset..offset + len).map(tensor).collect()),
        }
    }

    /// GraphDef control inputs (`^node`) for a FunctionDef `^name`.
    fn resolve_control(
        &self,
        name: &str,
        args: &HashMap<&str, Vec<String>>,
        body: &HashMap<&str, BodyNode>,
    ) -> std::result::Result<Vec<String>, String> {
        if let Some(refs) = args.get(name) {
            return Ok(refs.iter().map(|r| format!("^{r}")).collect());
        }
        body.get(name)
            .map(|b| vec![format!("^{}", b.name)])
            .ok_or_else(|| format!("control input '^{name}' names no node of the function"))
    }
}

/// `v` with placeholders (`$T`) replaced by the instantiation's attrs, in function attrs
/// too.
fn substitute(v: &AttrProto, attrs: &HashMap<String, AttrProto>) -> Result<AttrProto> {
    use attr_value::Value as V;
    let func = |f: &rill_proto::NameAttrList| -> Result<rill_proto::NameAttrList> {
        let mut f = f.clone();
        for a in f.attr.values_mut() {
            *a = substitute(a, attrs)?;
        }
        Ok(f)
    };
    Ok(match &v.value {
        Some(V::Placeholder(p)) => attrs.get(p).cloned().ok_or_else(|| {
            Error::invalid_argument(format!(
                "placeholder '${p}' has no value: the call does not set attr '{p}'"
            ))
        })?,
        Some(V::Func(f)) => AttrProto {
            value: Some(V::Func(func(f)?)),
        },
        Some(V::List(l)) if !l.func.is_empty() => {
            let mut l = l.clone();
            l.func = l.func.iter().map(func).collect::<Result<_>>()?;
            AttrProto {
                value: Some(V::List(l)),
            }
        }
        _ => v.clone(),
    })
}
