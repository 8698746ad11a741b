//! GraphDef import and export: binary `.pb` and text `.pbtxt`, in TensorFlow's wire format.
//!
//! Import resolves `node:index` and `^node` inputs by name (in any order in the file),
//! checks every op is registered or is a function of the GraphDef's library (a direct
//! call, typed by the function's signature; Unimplemented naming op and node otherwise),
//! decodes
//! attrs, fills defaults and runs dtype checks and shape inference in topological order.
//! Malformed bytes or text are InvalidArgument; nothing here panics on input.
//!
//! Invariant: `import(export(g))` equals `g`: same names, ops, inputs, attrs and devices.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::attr::{AttrValue, Attrs};
use crate::device::DeviceSpec;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeExtras, NodeId, Output};
use crate::op_def::{OpDef, OpRegistry};
use crate::validate::{is_back_edge, topo_sort};
use rill_proto::{GraphDef, Message, NodeDef};

/// A parsed NodeDef input.
enum InputRef<'a> {
    Data(&'a str, usize),
    Control(&'a str),
}

fn parse_input(text: &str) -> Result<InputRef<'_>> {
    if let Some(name) = text.strip_prefix('^') {
        return Ok(InputRef::Control(name));
    }
    let (name, index) = crate::graph::parse_tensor_name(text)?;
    Ok(InputRef::Data(name, index))
}

impl Graph {
    /// Imports a decoded GraphDef.
    pub fn from_graph_def(def: &GraphDef, registry: Arc<OpRegistry>) -> Result<Graph> {
        let mut graph = Graph::new(registry);
        graph.versions = def.versions.clone().unwrap_or_default();
        graph.library = def.library.clone().unwrap_or_default();
        graph.debug_info = def.debug_info.clone();

        // A node's op is a function of the library (a direct call, as TensorFlow looks the
        // library up first) or a registered op.
        let functions: HashMap<&str, &rill_proto::OpDef> = graph
            .library
            .function
            .iter()
            .filter_map(|f| f.signature.as_ref())
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut ops: HashMap<&str, Arc<OpDef>> = HashMap::new();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(def.node.len());
        for (i, n) in def.node.iter().enumerate() {
            if !crate::graph::is_valid_node_name(&n.name) {
                return Err(Error::invalid_argument(format!(
                    "'{}' is not a valid node name",
                    n.name
                ))
                .at_node(&n.name, &n.op));
            }
            if index.insert(&n.name, i).is_some() {
                return Err(
                    Error::invalid_argument(format!("duplicate node name '{}'", n.name))
                        .at_node(&n.name, &n.op),
                );
            }
            if !ops.contains_key(n.op.as_str()) {
                let op = match functions.get(n.op.as_str()) {
                    Some(sig) => OpDef::from_proto(sig).map(Arc::new),
                    None => graph.registry().lookup(&n.op).cloned(),
                }
                .map_err(|e| e.at_node(&n.name, &n.op))?;
                ops.insert(&n.op, op);
            }
        }

        // Inputs by position in the file, then a topological order over them.
        let mut data: Vec<Vec<(usize, usize)>> = Vec::with_capacity(def.node.len());
        let mut control: Vec<Vec<usize>> = Vec::with_capacity(def.node.len());
        for n in &def.node {
            let (mut d, mut c) = (vec![], vec![]);
            for text in &n.input {
                let at = |e: Error| e.at_node(&n.name, &n.op);
                let resolve = |name: &str| {
                    index.get(name).copied().ok_or_else(|| {
                        at(Error::invalid_argument(format!(
                            "input '{text}' of node '{}' refers to a node that does not exist",
                            n.name
                        )))
                    })
                };
                match parse_input(text).map_err(at)? {
                    InputRef::Data(name, i) if c.is_empty() => d.push((resolve(name)?, i)),
                    InputRef::Data(..) => {
                        return Err(at(Error::invalid_argument(format!(
                            "data input '{text}' comes after a control input"
                        ))))
                    }
                    InputRef::Control(name) => c.push(resolve(name)?),
                }
            }
            data.push(d);
            control.push(c);
        }
        let order = topo_sort(def.node.len(), |i| {
            data[i]
                .iter()
                .map(|&(s, _)| s)
                .chain(control[i].iter().copied())
                .filter(|&s| !is_back_edge(&def.node[s].op, &def.node[i].op))
                .collect()
        })
        .map_err(|i| {
            let n = &def.node[i];
            Error::invalid_argument(format!("the graph has a cycle through node '{}'", n.name))
                .at_node(&n.name, &n.op)
        })?;

        // Node ids follow file order; nodes are created in topological order.
        graph.nodes = vec![None; def.node.len()];
        let id = |i: usize| NodeId::from_index(i);
        for i in order {
            let n = &def.node[i];
            let inputs: Vec<Output> = data[i].iter().map(|&(s, k)| id(s).output(k)).collect();
            let controls = control[i].iter().map(|&s| id(s)).collect();
            let op = ops[n.op.as_str()].clone();
            graph
                .import_node(n, op, inputs, controls, id(i))
                .map_err(|e| e.at_node(&n.name, &n.op))?;
        }
        graph.names = index
            .into_iter()
            .map(|(k, v)| (k.to_string(), id(v)))
            .collect();
        graph.validate()?;
        Ok(graph)
    }

    fn import_node(
        &mut self,
        n: &NodeDef,
        op: Arc<OpDef>,
        inputs: Vec<Output>,
        controls: Vec<NodeId>,
        id: NodeId,
    ) -> Result<()> {
        let mut attrs = Attrs::new();
        for (key, value) in &n.attr {
            let expected = op.attr(key).map(|a| a.ty.as_str());
            let v = AttrValue::from_proto(value, expected)
                .map_err(|e| Error::new(e.code, format!("attr '{key}': {}", e.message)))?;
            attrs.insert(key.clone(), v);
        }
        for &o in &inputs {
            if let Some(src) = self.get(o.node) {
                if o.index >= src.num_outputs() {
                    return Err(Error::invalid_argument(format!(
                        "input '{}:{}' does not exist: '{}' has {} outputs",
                        src.name,
                        o.index,
                        src.name,
                        src.num_outputs()
                    )));
                }
            }
        }
        // Type attrs a writer left out are taken from the inputs, when the grouping is known.
        if let Ok(lengths) = op.arg_lengths(&op.inputs, &attrs).or_else(|e| {
            if op.inputs.len() == 1 {
                Ok(vec![inputs.len()])
            } else {
                Err(e)
            }
        }) {
            if lengths.iter().sum::<usize>() == inputs.len() {
                let mut groups = Vec::with_capacity(lengths.len());
                let mut at = 0;
                for len in lengths {
                    let g = inputs[at..at + len]
                        .iter()
                        .filter_map(|o| self.get(o.node).map(|s| s.output_types[o.index]))
                        .collect();
                    groups.push(g);
                    at += len;
                }
                op.infer_attrs_from_inputs(&mut attrs, &groups)?;
            }
        }
        let device = DeviceSpec::parse(&n.device)?;
        let mut node = self.make_node(n.name.clone(), op, inputs, controls, attrs, device)?;
        node.extras = NodeExtras {
            experimental_type: n.experimental_type.clone(),
            debug_info: n.experimental_debug_info.clone(),
        };
        self.nodes[id.index()] = Some(node);
        self.check_input_types(id)?;
        self.infer_node(id)
    }

    /// Imports binary GraphDef bytes; malformed or truncated bytes are InvalidArgument.
    pub fn from_binary(bytes: &[u8], registry: Arc<OpRegistry>) -> Result<Graph> {
        let def = GraphDef::decode(bytes)
            .map_err(|e| Error::invalid_argument(format!("not a valid binary GraphDef: {e}")))?;
        Graph::from_graph_def(&def, registry)
    }

    /// Imports a text-format GraphDef.
    pub fn from_text(text: &str, registry: Arc<OpRegistry>) -> Result<Graph> {
        let def: GraphDef = rill_proto::text_format::parse("GraphDef", text)
            .map_err(|e| Error::invalid_argument(format!("not a valid text GraphDef: {e}")))?;
        Graph::from_graph_def(&def, registry)
    }

    /// Loads `.pbtxt` (or `.txt`) as text and anything else as binary.
    pub fn load(path: impl AsRef<Path>, registry: Arc<OpRegistry>) -> Result<Graph> {
        let def = read_graph_def(path.as_ref())?;
        Graph::from_graph_def(&def, registry)
    }

    /// Exports as a GraphDef (nodes in id order).
    pub fn to_graph_def(&self) -> GraphDef {
        let node = self
            .nodes()
            .map(|(_, n)| {
                let mut input: Vec<String> = n
                    .inputs
                    .iter()
                    .map(|o| match (self.get(o.node), o.index) {
                        (Some(src), 0) => src.name.clone(),
                        (Some(src), i) => format!("{}:{i}", src.name),
                        (None, _) => String::new(),
                    })
                    .collect();
                input.extend(
                    n.control_inputs
                        .iter()
                        .filter_map(|c| self.get(*c))
                        .map(|c| format!("^{}", c.name)),
                );
                NodeDef {
                    name: n.name.clone(),
                    op: n.op_name().to_string(),
                    input,
                    device: n.requested_device.to_string(),
                    attr: n
                        .attrs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_proto()))
                        .collect(),
                    experimental_debug_info: n.extras.debug_info.clone(),
                    experimental_type: n.extras.experimental_type.clone(),
                }
            })
            .collect();
        let library = (self.library != Default::default()).then(|| self.library.clone());
        GraphDef {
            node,
            versions: Some(self.versions.clone()),
            library,
            debug_info: self.debug_info.clone(),
            ..Default::default()
        }
    }

    pub fn to_binary(&self) -> Vec<u8> {
        self.to_graph_def().encode_to_vec()
    }

    pub fn to_text(&self) -> Result<String> {
        rill_proto::text_format::print("GraphDef", &self.to_graph_def())
            .map_err(|e| Error::internal(e.to_string()))
    }

    /// Writes `.pbtxt` (or `.txt`) as text and anything else as binary.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_graph_def(path.as_ref(), &self.to_graph_def())
    }
}

fn is_text_path(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pbtxt" | "txt" | "pbtext")
    )
}

/// Reads a GraphDef file without importing it (text by extension, else binary).
pub fn read_graph_def(path: &Path) -> Result<GraphDef> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::not_found(format!("cannot read {}: {e}", path.display())))?;
    if is_text_path(path) {
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::invalid_argument(format!("{} is not UTF-8 text", path.display()))
        })?;
        rill_proto::text_format::parse("GraphDef", text).map_err(|e| {
            Error::invalid_argument(format!(
                "{} is not a valid text GraphDef: {e}",
                path.display()
            ))
        })
    } else {
        GraphDef::decode(bytes.as_slice()).map_err(|e| {
            Error::invalid_argument(format!(
                "{} is not a valid binary GraphDef: {e}",
                path.display()
            ))
        })
    }
}

/// Writes a GraphDef file (text by extension, else binary).
pub fn write_graph_def(path: &Path, def: &GraphDef) -> Result<()> {
    let bytes = if is_text_path(path) {
        rill_proto::text_format::print("GraphDef", def)
            .map_err(|e| Error::internal(e.to_string()))?
            .into_bytes()
    } else {
        def.encode_to_vec()
    };
    std::fs::write(path, bytes).map_err(|e| {
        Error::new(
            crate::Code::PermissionDenied,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}
