//! Op definitions ([`OpDef`]) in TensorFlow's model — input/output args typed by a fixed
//! dtype, a type attr or a type-list attr, repeated by a number attr; attrs with types,
//! defaults, allowed values and minimums; the stateful flag — and the [`OpRegistry`].
//!
//! Ops are declared with TensorFlow's own spec syntax, so a definition reads like
//! `REGISTER_OP`: `OpDef::build("MatMul").input("a: T").attr("transpose_a: bool = false")`.
//!
//! Invariants: an `OpDef` in a registry has unique arg and attr names, every type/number
//! attr an arg mentions is declared, and every default satisfies its attr's constraints.

use std::collections::HashMap;
use std::sync::Arc;

use crate::attr::{AttrValue, Attrs};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape_fn::ShapeFn;

/// How an arg's dtype is given.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgType {
    /// A fixed dtype (`x: float`).
    Fixed(DType),
    /// The value of a `type` attr (`x: T`), optionally repeated by a number attr (`N * T`).
    Attr(String),
    /// The value of a `list(type)` attr (`values: Tlist`): one tensor per listed dtype.
    List(String),
}

/// One input or output argument.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDef {
    pub name: String,
    pub ty: ArgType,
    /// `N` in `N * T`: the arg is a list of that many tensors.
    pub number_attr: Option<String>,
    /// `Ref(T)`: a reference to a mutable buffer (TF1 variables).
    pub is_ref: bool,
}

/// Constraint on an attr's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    Types(Vec<DType>),
    Strings(Vec<String>),
}

/// One attribute of an op.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrDef {
    pub name: String,
    /// TensorFlow's attr type: `type`, `int`, `float`, `bool`, `string`, `shape`, `tensor`,
    /// `func`, or `list(...)` of one of those.
    pub ty: String,
    pub default: Option<AttrValue>,
    pub allowed: Option<Allowed>,
    pub minimum: Option<i64>,
}

/// The definition of an op.
#[derive(Clone)]
pub struct OpDef {
    pub name: String,
    pub inputs: Vec<ArgDef>,
    pub outputs: Vec<ArgDef>,
    pub attrs: Vec<AttrDef>,
    pub is_stateful: bool,
    pub is_commutative: bool,
    pub is_aggregate: bool,
    /// Inputs may be uninitialised references (`Assign`'s target).
    pub allows_uninitialized_input: bool,
    pub shape_fn: ShapeFn,
}

impl std::fmt::Debug for OpDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpDef")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("attrs", &self.attrs)
            .field("is_stateful", &self.is_stateful)
            .finish()
    }
}

/// Declares an op with TensorFlow's spec strings; [`OpDefBuilder::finish`] checks it.
pub struct OpDefBuilder {
    pub(crate) def: OpDef,
    pub(crate) errors: Vec<String>,
}

impl OpDef {
    pub fn build(name: &str) -> OpDefBuilder {
        OpDefBuilder {
            def: OpDef {
                name: name.to_string(),
                inputs: vec![],
                outputs: vec![],
                attrs: vec![],
                is_stateful: false,
                is_commutative: false,
                is_aggregate: false,
                allows_uninitialized_input: false,
                shape_fn: crate::shape_fn::unknown_outputs,
            },
            errors: vec![],
        }
    }

    pub fn attr(&self, name: &str) -> Option<&AttrDef> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// How many tensors each arg of `args` has, given a node's attrs.
    pub fn arg_lengths(&self, args: &[ArgDef], attrs: &Attrs) -> Result<Vec<usize>> {
        args.iter()
            .map(|arg| {
                if let Some(n) = &arg.number_attr {
                    let n = attr_of(attrs, n)?
                        .as_int()
                        .ok_or_else(|| self.attr_type_error(n, "int"))?;
                    usize::try_from(n).map_err(|_| {
                        Error::invalid_argument(format!(
                            "attr '{}' of {} must be >= 0, got {n}",
                            arg.name, self.name
                        ))
                    })
                } else if let ArgType::List(l) = &arg.ty {
                    Ok(attr_of(attrs, l)?
                        .as_type_list()
                        .ok_or_else(|| self.attr_type_error(l, "list(type)"))?
                        .len())
                } else {
                    Ok(1)
                }
            })
            .collect()
    }

    /// The flat dtypes of `args` (inputs or outputs) under a node's attrs.
    pub fn arg_types(&self, args: &[ArgDef], attrs: &Attrs) -> Result<Vec<DType>> {
        let lengths = self.arg_lengths(args, attrs)?;
        let mut out = Vec::new();
        for (arg, len) in args.iter().zip(lengths) {
            match &arg.ty {
                ArgType::Fixed(d) => out.extend(std::iter::repeat_n(*d, len)),
                ArgType::Attr(t) => {
                    let d = attr_of(attrs, t)?
                        .as_type()
                        .ok_or_else(|| self.attr_type_error(t, "type"))?;
                    out.extend(std::iter::repeat_n(d, len));
                }
                ArgType::List(l) => out.extend_from_slice(
                    attr_of(attrs, l)?
                        .as_type_list()
                        .ok_or_else(|| self.attr_type_error(l, "list(type)"))?,
                ),
            }
        }
        Ok(out)
    }

    /// Fills the type and number attrs a node leaves unset from its input dtypes
    /// (`groups[i]` are the dtypes bound to input arg `i`), as TensorFlow's op builders do.
    pub fn infer_attrs_from_inputs(&self, attrs: &mut Attrs, groups: &[Vec<DType>]) -> Result<()> {
        if groups.len() != self.inputs.len() {
            return Err(Error::invalid_argument(format!(
                "{} takes {} input args ({}), got {}",
                self.name,
                self.inputs.len(),
                self.inputs
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                groups.len()
            )));
        }
        for (arg, dtypes) in self.inputs.iter().zip(groups) {
            if let Some(n) = &arg.number_attr {
                attrs
                    .entry(n.clone())
                    .or_insert(AttrValue::Int(dtypes.len() as i64));
            }
            match &arg.ty {
                ArgType::Attr(t) => {
                    if let Some(&d) = dtypes.first() {
                        attrs.entry(t.clone()).or_insert(AttrValue::Type(d));
                    }
                }
                ArgType::List(l) => {
                    attrs
                        .entry(l.clone())
                        .or_insert(AttrValue::TypeList(dtypes.clone()));
                }
                ArgType::Fixed(_) => {}
            }
        }
        Ok(())
    }

    /// Adds defaults for unset attrs, then checks every attr is present, of the declared
    /// type, allowed and above its minimum. Unknown attrs starting with `_` are kept.
    pub fn complete_attrs(&self, attrs: &mut Attrs) -> Result<()> {
        for def in &self.attrs {
            if !attrs.contains_key(&def.name) {
                match &def.default {
                    Some(v) => {
                        attrs.insert(def.name.clone(), v.clone());
                    }
                    None => {
                        return Err(Error::invalid_argument(format!(
                            "{} is missing attr '{}' of type {}",
                            self.name, def.name, def.ty
                        )))
                    }
                }
            }
            check_attr(&self.name, def, &attrs[&def.name])?;
        }
        Ok(())
    }

    fn attr_type_error(&self, name: &str, want: &str) -> Error {
        Error::invalid_argument(format!(
            "attr '{name}' of {} must be of type {want}",
            self.name
        ))
    }
}

fn attr_of<'a>(attrs: &'a Attrs, name: &str) -> Result<&'a AttrValue> {
    attrs
        .get(name)
        .ok_or_else(|| Error::invalid_argument(format!("missing attr '{name}'")))
}

fn check_attr(op: &str, def: &AttrDef, value: &AttrValue) -> Result<()> {
    let matches_type = value.type_name() == def.ty
        || matches!(value, AttrValue::Placeholder(_))
        || (def.ty == "string" && matches!(value, AttrValue::String(_)));
    if !matches_type {
        return Err(Error::invalid_argument(format!(
            "attr '{}' of {op} must be of type {}, got {} ({value:?})",
            def.name,
            def.ty,
            value.type_name()
        )));
    }
    match (&def.allowed, value) {
        (Some(Allowed::Types(ok)), AttrValue::Type(t)) if !ok.contains(t) => {
            return Err(Error::invalid_argument(format!(
                "{op} does not accept {t} for attr '{}' (allowed: {})",
                def.name,
                ok.iter()
                    .map(|d| d.tf_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        (Some(Allowed::Types(ok)), AttrValue::TypeList(ts)) => {
            if let Some(t) = ts.iter().find(|t| !ok.contains(t)) {
                return Err(Error::invalid_argument(format!(
                    "{op} does not accept {t} in attr '{}'",
                    def.name
                )));
            }
        }
        (Some(Allowed::Strings(ok)), AttrValue::String(s)) => {
            let s = String::from_utf8_lossy(s);
            if !ok.iter().any(|o| *o == s) {
                return Err(Error::invalid_argument(format!(
                    "attr '{}' of {op} must be one of {ok:?}, got \"{s}\"",
                    def.name
                )));
            }
        }
        _ => {}
    }
    if let Some(min) = def.minimum {
        let got = match value {
            AttrValue::Int(i) => Some(*i),
            AttrValue::IntList(v) => Some(v.len() as i64),
            AttrValue::TypeList(v) => Some(v.len() as i64),
            AttrValue::StringList(v) => Some(v.len() as i64),
            AttrValue::ShapeList(v) => Some(v.len() as i64),
            _ => None,
        };
        if let Some(got) = got.filter(|&g| g < min) {
            return Err(Error::invalid_argument(format!(
                "attr '{}' of {op} must be at least {min}, got {got}",
                def.name
            )));
        }
    }
    Ok(())
}

impl OpDefBuilder {
    /// An input arg: `name: float`, `name: T`, `name: N * T`, `name: Tlist`, `name: Ref(T)`.
    pub fn input(mut self, spec: &str) -> Self {
        match Self::parse_arg(spec) {
            Ok(a) => self.def.inputs.push(a),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// An output arg, same syntax as [`OpDefBuilder::input`].
    pub fn output(mut self, spec: &str) -> Self {
        match Self::parse_arg(spec) {
            Ok(a) => self.def.outputs.push(a),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// An attr: `T: type`, `T: {float, double} = DT_FLOAT`, `N: int >= 1`,
    /// `padding: {'SAME', 'VALID'}`, `strides: list(int)`, `keep_dims: bool = false`.
    pub fn attr(mut self, spec: &str) -> Self {
        match parse_attr(spec) {
            Ok(a) => self.def.attrs.push(a),
            Err(e) => self.errors.push(format!("attr '{spec}': {e}")),
        }
        self
    }

    pub fn stateful(mut self) -> Self {
        self.def.is_stateful = true;
        self
    }
    pub fn commutative(mut self) -> Self {
        self.def.is_commutative = true;
        self
    }
    pub fn aggregate(mut self) -> Self {
        self.def.is_aggregate = true;
        self
    }
    pub fn allows_uninitialized_input(mut self) -> Self {
        self.def.allows_uninitialized_input = true;
        self
    }
    pub fn shape_fn(mut self, f: ShapeFn) -> Self {
        self.def.shape_fn = f;
        self
    }

    /// Checks the declaration: attrs referenced by args exist with the right type and
    /// names are unique. An error here is a bug in the op's declaration.
    pub fn finish(self) -> Result<OpDef> {
        let mut errors = self.errors;
        let mut def = self.def;
        // Args may be declared before their attrs: a `T` naming a list(type) attr is a list.
        let list_attrs: Vec<String> = def
            .attrs
            .iter()
            .filter(|a| a.ty == "list(type)")
            .map(|a| a.name.clone())
            .collect();
        for arg in def.inputs.iter_mut().chain(def.outputs.iter_mut()) {
            if let ArgType::Attr(t) = &arg.ty {
                if list_attrs.contains(t) {
                    arg.ty = ArgType::List(t.clone());
                }
            }
        }
        let attr_ty = |n: &str| def.attr(n).map(|a| a.ty.as_str());
        for arg in def.inputs.iter().chain(&def.outputs) {
            let (name, want) = match &arg.ty {
                ArgType::Attr(t) => (t, "type"),
                ArgType::List(l) => (l, "list(type)"),
                ArgType::Fixed(_) => (&arg.name, ""),
            };
            if !want.is_empty() && attr_ty(name) != Some(want) {
                errors.push(format!("arg '{}' needs attr '{name}: {want}'", arg.name));
            }
            if let Some(n) = &arg.number_attr {
                if attr_ty(n) != Some("int") {
                    errors.push(format!("arg '{}' needs attr '{n}: int'", arg.name));
                }
            }
        }
        let mut names: Vec<&str> = def.attrs.iter().map(|a| a.name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            errors.push("duplicate attr names".into());
        }
        for a in &def.attrs {
            if let Some(d) = &a.default {
                if let Err(e) = check_attr(&def.name, a, d) {
                    errors.push(format!("default of '{}': {}", a.name, e.message));
                }
            }
        }
        if errors.is_empty() {
            Ok(def)
        } else {
            Err(Error::internal(format!(
                "bad definition of op {}: {}",
                def.name,
                errors.join("; ")
            )))
        }
    }

    fn parse_arg(spec: &str) -> std::result::Result<ArgDef, String> {
        let (name, ty) = spec
            .split_once(':')
            .ok_or_else(|| format!("arg '{spec}' must be 'name: type'"))?;
        let mut ty = ty.trim();
        let mut is_ref = false;
        if let Some(inner) = ty.strip_prefix("Ref(").and_then(|t| t.strip_suffix(')')) {
            is_ref = true;
            ty = inner.trim();
        }
        let (number_attr, ty) = match ty.split_once('*') {
            Some((n, t)) => (Some(n.trim().to_string()), t.trim()),
            None => (None, ty),
        };
        let ty = match ty.parse::<DType>() {
            Ok(d)
                if ty
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) =>
            {
                ArgType::Fixed(d)
            }
            _ => ArgType::Attr(ty.to_string()),
        };
        Ok(ArgDef {
            name: name.trim().to_string(),
            ty,
            number_attr,
            is_ref,
        })
    }
}

fn parse_attr(spec: &str) -> std::result::Result<AttrDef, String> {
    let (name, rest) = spec.split_once(':').ok_or("must be 'name: type'")?;
    // The default follows an '=' that is not part of '>='.
    let eq = rest
        .char_indices()
        .find(|&(i, c)| c == '=' && !rest[..i].ends_with('>'));
    let (ty_part, default) = match eq {
        Some((i, _)) => (rest[..i].trim(), Some(rest[i + 1..].trim())),
        None => (rest.trim(), None),
    };
    let (ty_part, minimum) = match ty_part.split_once(">=") {
        Some((t, m)) => (
            t.trim(),
            Some(m.trim().parse::<i64>().map_err(|e| e.to_string())?),
        ),
        None => (ty_part, None),
    };
    let (ty, allowed) =
        if let Some(set) = ty_part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let items: Vec<&str> = set.split(',').map(str::trim).collect();
            if items.iter().all(|i| i.starts_with('\'')) {
                let strings = items
                    .iter()
                    .map(|i| i.trim_matches('\'').to_string())
                    .collect();
                ("string".to_string(), Some(Allowed::Strings(strings)))
            } else {
                let types = items
                    .iter()
                    .map(|i| i.parse::<DType>().map_err(|e| e.message))
                    .collect::<std::result::Result<_, _>>()?;
                ("type".to_string(), Some(Allowed::Types(types)))
            }
        } else if let Some(set) = ty_part
            .strip_prefix("list({")
            .and_then(|s| s.strip_suffix("})"))
        {
            let types = set
                .split(',')
                .map(|i| i.trim().parse::<DType>().map_err(|e| e.message))
                .collect::<std::result::Result<_, _>>()?;
            ("list(type)".to_string(), Some(Allowed::Types(types)))
        } else {
            (ty_part.to_string(), None)
        };
    let default = default.map(|d| parse_default(&ty, d)).transpose()?;
    Ok(AttrDef {
        name: name.trim().to_string(),
        ty,
        default,
        allowed,
        minimum,
    })
}

fn parse_default(ty: &str, text: &str) -> std::result::Result<AttrValue, String> {
    let list_items = || -> Vec<&str> {
        let inner = text.trim_start_matches('[').trim_end_matches(']').trim();
        if inner.is_empty() {
            vec![]
        } else {
            inner.split(',').map(str::trim).collect()
        }
    };
    let bad = |e: &dyn std::fmt::Display| format!("default '{text}' for {ty}: {e}");
    Ok(match ty {
        "int" => AttrValue::Int(text.parse().map_err(|e| bad(&e))?),
        "float" => AttrValue::Float(text.parse().map_err(|e| bad(&e))?),
        "bool" => AttrValue::Bool(text.parse().map_err(|e| bad(&e))?),
        "string" => AttrValue::String(
            text.trim_matches('"')
                .trim_matches('\'')
                .as_bytes()
                .to_vec(),
        ),
        "type" => AttrValue::Type(text.parse().map_err(|e: Error| bad(&e.message))?),
        "shape" => AttrValue::Shape(crate::Shape::parse(text).map_err(|e| bad(&e.message))?),
        "list(int)" => AttrValue::IntList(
            list_items()
                .iter()
                .map(|i| i.parse().map_err(|e| bad(&e)))
                .collect::<std::result::Result<_, _>>()?,
        ),
        "list(float)" => AttrValue::FloatList(
            list_items()
                .iter()
                .map(|i| i.parse().map_err(|e| bad(&e)))
                .collect::<std::result::Result<_, _>>()?,
        ),
        "list(string)" => AttrValue::StringList(
            list_items()
                .iter()
                .map(|i| i.trim_matches('"').trim_matches('\'').as_bytes().to_vec())
                .collect(),
        ),
        "list(type)" => AttrValue::TypeList(
            list_items()
                .iter()
                .map(|i| i.parse().map_err(|e: Error| bad(&e.message)))
                .collect::<std::result::Result<_, _>>()?,
        ),
        "list(shape)" if list_items().is_empty() => AttrValue::ShapeList(vec![]),
        _ => return Err(bad(&"unsupported default")),
    })
}

/// All known ops by name.
#[derive(Default, Clone)]
pub struct OpRegistry {
    ops: HashMap<String, Arc<OpDef>>,
}

impl OpRegistry {
    pub fn new() -> OpRegistry {
        OpRegistry::default()
    }

    /// Adds an op; registering a name twice is an error.
    pub fn register(&mut self, def: OpDefBuilder) -> Result<()> {
        let def = def.finish()?;
        if self.ops.contains_key(&def.name) {
            return Err(Error::new(
                crate::Code::AlreadyExists,
                format!("op {} is registered twice", def.name),
            ));
        }
        self.ops.insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<OpDef>> {
        self.ops.get(name)
    }

    /// The op, or Unimplemented saying Rill does not support it.
    pub fn lookup(&self, name: &str) -> Result<&Arc<OpDef>> {
        self.get(name).ok_or_else(|| {
            Error::unimplemented(format!("op '{name}' is not supported by Rill")).with_op(name)
        })
    }

    /// Names of all registered ops, sorted.
    pub fn op_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.ops.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl Error {
    /// Sets the op this error is about.
    pub fn with_op(mut self, op: &str) -> Self {
        self.op = Some(op.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmul() -> OpDef {
        OpDef::build("MatMul")
            .input("a: T")
            .input("b: T")
            .output("product: T")
            .attr("transpose_a: bool = false")
            .attr("transpose_b: bool = false")
            .attr("T: {bfloat16, half, float, double, int32, int64}")
            .finish()
            .unwrap()
    }

    #[test]
    fn parses_specs() {
        let d = matmul();
        assert_eq!(d.inputs[0].ty, ArgType::Attr("T".into()));
        assert_eq!(
            d.attr("transpose_a").unwrap().default,
            Some(AttrValue::Bool(false))
        );
        let concat = OpDef::build("ConcatV2")
            .input("values: N * T")
            .input("axis: Tidx")
            .output("output: T")
            .attr("N: int >= 2")
            .attr("T: type")
            .attr("Tidx: {int32, int64} = DT_INT32")
            .finish()
            .unwrap();
        assert_eq!(concat.inputs[0].number_attr.as_deref(), Some("N"));
        assert_eq!(concat.attr("N").unwrap().minimum, Some(2));
        let pad = OpDef::build("P")
            .attr("padding: {'SAME', 'VALID'}")
            .attr("s: list(int) = [1, 2]")
            .finish()
            .unwrap();
        assert_eq!(
            pad.attr("padding").unwrap().allowed,
            Some(Allowed::Strings(vec!["SAME".into(), "VALID".into()]))
        );
        assert_eq!(
            pad.attr("s").unwrap().default,
            Some(AttrValue::IntList(vec![1, 2]))
        );
    }

    #[test]
    fn bad_declarations_fail() {
        assert!(OpDef::build("X").input("a: T").finish().is_err());
        assert!(OpDef::build("X")
            .attr("T: type")
            .attr("T: type")
            .finish()
            .is_err());
        assert!(OpDef::build("X").attr("k: int = 1.5").finish().is_err());
    }

    #[test]
    fn attrs_are_completed_and_checked() {
        let d = matmul();
        let mut attrs = Attrs::new();
        d.infer_attrs_from_inputs(&mut attrs, &[vec![DType::F32], vec![DType::F32]])
            .unwrap();
        d.complete_attrs(&mut attrs).unwrap();
        assert_eq!(attrs["transpose_b"], AttrValue::Bool(false));
        assert_eq!(d.arg_types(&d.outputs, &attrs).unwrap(), vec![DType::F32]);
        attrs.insert("T".into(), AttrValue::Type(DType::Bool));
        assert!(d
            .complete_attrs(&mut attrs)
            .unwrap_err()
            .message
            .contains("does not accept bool"));
        attrs.insert("T".into(), AttrValue::Int(3));
        assert!(d
            .complete_attrs(&mut attrs)
            .unwrap_err()
            .message
            .contains("must be of type type"));
    }

    #[test]
    fn registry_lookup() {
        let mut r = OpRegistry::new();
        r.register(OpDef::build("NoOp")).unwrap();
        assert!(r.register(OpDef::build("NoOp")).is_err());
        let e = r.lookup("Frobnicate").unwrap_err();
        assert_eq!(e.code, crate::Code::Unimplemented);
        assert!(e.to_string().contains("Frobnicate"));
    }
}
