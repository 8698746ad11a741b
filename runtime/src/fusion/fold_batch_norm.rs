//! [`FoldBatchNorm`]: an inference batch norm (`FusedBatchNorm`, `V2`, `V3` with
//! `is_training = false`) of a `Conv2D` or `DepthwiseConv2dNative` whose filter, scale,
//! offset, mean and variance are constants becomes the same convolution with a folded
//! constant filter, followed by a `BiasAdd` of a constant bias:
//! `filter' = filter * s` per output channel and `bias = offset - mean * s`, with
//! `s = scale / sqrt(variance + epsilon)` (the batch norm kernel's formula, in f64).
//!
//! The chain is a declared [`Pattern`]; the rules beyond it: f32 throughout; the batch
//! norm's `data_format` (NHWC or NCHW) is the convolution's; the statistics have one value
//! per output channel; only output 0 of the batch norm is read, fetched or fed.
//!
//! Invariants: the new `BiasAdd` takes the batch norm's name, the new convolution the old
//! one's; constants of the original graph are left for pruning; one note per fold.

use rill_graph::{AttrValue, Attrs, DType, Graph, NodeId, NodeSpec, Pass, PassContext, Result};
use rill_graph::{DeviceSpec, Output, Tensor};

use super::pattern::{replace, Arg, Consumers, Match, Matcher, Pattern};

const CONV: Pattern = Pattern {
    name: "conv",
    ops: &["Conv2D", "DepthwiseConv2dNative"],
    args: &[Arg::Any("input"), Arg::Const("filter")],
};
const BATCH_NORM: Pattern = Pattern {
    name: "batch_norm",
    ops: &["FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"],
    args: &[
        Arg::Node(&CONV),
        Arg::Const("scale"),
        Arg::Const("offset"),
        Arg::Const("mean"),
        Arg::Const("variance"),
    ],
};

/// Folds inference batch norms into the convolutions before them.
pub struct FoldBatchNorm;

/// The folded filter and bias of a match, or `None` when a rule forbids the fold.
fn fold(
    graph: &Graph,
    cx: &PassContext,
    consumers: &Consumers,
    m: &Match,
) -> Option<(Tensor, Tensor)> {
    let (bn_id, conv_id) = (m.node("batch_norm"), m.node("conv"));
    let (bn, conv) = (graph.node(bn_id), graph.node(conv_id));
    if bn.attr("is_training").and_then(|v| v.as_bool()) != Some(false) {
        return None;
    }
    let format = |id: NodeId| {
        let n = graph.node(id);
        n.attr("data_format")
            .and_then(|v| v.as_str())
            .unwrap_or("NHWC")
            .to_string()
    };
    if !matches!(format(bn_id).as_str(), "NHWC" | "NCHW") || format(bn_id) != format(conv_id) {
        return None;
    }
    let only_y = consumers.readers(bn_id).all(|r| {
        graph
            .node(r)
            .inputs
            .iter()
            .all(|o| o.node != bn_id || o.index == 0)
    });
    let extra_kept = cx.fetches.iter().any(|(n, i)| *n == bn.name && *i > 0);
    if !only_y || extra_kept || graph.dtype(conv_id.output(0)) != DType::F32 {
        return None;
    }
    let filter = m.constant("filter");
    let stats: Vec<Vec<f64>> = ["scale", "offset", "mean", "variance"]
        .iter()
        .map(|k| f32s(m.constant(k)))
        .collect::<Option<_>>()?;
    let w = filter.as_slice::<f32>().ok()?;
    let fd = filter.dims();
    let channels = match conv.op_name() {
        "Conv2D" if fd.len() == 4 => fd[3],
        "DepthwiseConv2dNative" if fd.len() == 4 => fd[2] * fd[3],
        _ => return None,
    };
    if channels == 0 || stats.iter().any(|v| v.len() != channels) {
        return None;
    }
    let eps = bn
        .attr("epsilon")
        .and_then(|v| v.as_float())
        .unwrap_or(1e-4) as f64;
    let (scale, offset, mean, var) = (&stats[0], &stats[1], &stats[2], &stats[3]);
    let s: Vec<f64> = (0..channels)
        .map(|c| 1.0 / (var[c] + eps).sqrt() * scale[c])
        .collect();
    // HWIO (depthwise: HW, in, multiplier): the output channel is the flat index modulo
    // the channel count.
    let folded: Vec<f32> = w
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 * s[i % channels]) as f32)
        .collect();
    let bias: Vec<f32> = (0..channels)
        .map(|c| (offset[c] - mean[c] * s[c]) as f32)
        .collect();
    Some((Tensor::new(fd, folded).ok()?, Tensor::vector(bias)))
}

fn f32s(t: &Tensor) -> Option<Vec<f64>> {
    Some(
        t.as_slice::<f32>()
            .ok()?
            .iter()
            .map(|&x| x as f64)
            .collect(),
    )
}

fn constant(g: &mut Graph, base: &str, value: Tensor, device: &DeviceSpec) -> Result<Output> {
    let name = g.unique_name(base);
    let dtype = value.dtype();
    let attrs: Attrs = [
        ("value".to_string(), AttrValue::Tensor(value)),
        ("dtype".to_string(), AttrValue::Type(dtype)),
    ]
    .into();
    let id = g.add_node(NodeSpec {
        name,
        op: "Const".into(),
        attrs,
        device: device.clone(),
        ..Default::default()
    })?;
    Ok(id.output(0))
}

impl Pass for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold_batch_norm"
    }

    fn run(&self, graph: &mut Graph, cx: &mut PassContext) -> Result<bool> {
        let mut changed = false;
        let mut consumers = Consumers::of(graph);
        for root in graph.topo_order()?.into_iter().rev() {
            if !graph
                .get(root)
                .is_some_and(|n| BATCH_NORM.ops.contains(&n.op_name()))
            {
                continue;
            }
            let found = Matcher::new(graph, cx, &consumers)
                .at(&BATCH_NORM, root)
                .and_then(|m| fold(graph, cx, &consumers, &m).map(|f| (m, f)));
            let Some((m, (filter, bias))) = found else {
                continue;
            };
            let conv = graph.node(m.node("conv")).clone();
            let bn = graph.node(root).clone();
            let build = |g: &mut Graph, name: &str| -> Result<NodeId> {
                let f = constant(
                    g,
                    &format!("{}/folded_filter", conv.name),
                    filter.clone(),
                    &conv.requested_device,
                )?;
                let conv_id = g.add_node(NodeSpec {
                    name: g.unique_name(&conv.name),
                    op: conv.op_name().to_string(),
                    input_groups: vec![vec![m.input("input")], vec![f]],
                    attrs: conv.attrs.clone(),
                    device: conv.requested_device.clone(),
                    ..Default::default()
                })?;
                let b = constant(
                    g,
                    &format!("{}/folded_bias", bn.name),
                    bias.clone(),
                    &bn.requested_device,
                )?;
                let format = bn
                    .attr("data_format")
                    .cloned()
                    .unwrap_or_else(|| "NHWC".into());
                g.add_node(NodeSpec {
                    name: name.to_string(),
                    op: "BiasAdd".into(),
                    input_groups: vec![vec![conv_id.output(0)], vec![b]],
                    attrs: [
                        ("T".to_string(), AttrValue::Type(DType::F32)),
                        ("data_format".to_string(), format),
                    ]
                    .into(),
                    device: bn.requested_device.clone(),
                    ..Default::default()
                })
            };
            if replace(graph, &m, &build)?.is_some() {
                cx.note(format!(
                    "{} '{}' folded into {} '{}' + BiasAdd",
                    bn.op_name(),
                    bn.name,
                    conv.op_name(),
                    conv.name
                ));
                changed = true;
                consumers = Consumers::of(graph);
            }
        }
        Ok(changed)
    }
}
