//! Tests of the fusion passes: each rewrite happens (op counts, names, attrs), is skipped
//! where a rule forbids it, and leaves every fetched value as it was (run before and after
//! on random feeds); and TensorFlow's CNN fixture gets its layers fused.

use rill_graph::{AttrValue, DType, Graph, Output, Pass, PassContext, PassManager, Tensor};
use rill_ops::Builder;

use super::{fusion_passes, FoldBatchNorm, FuseContraction};
use crate::testing::{assert_same_results, random_tensor};

/// Runs `passes` as one group on a copy of `graph` for the step feeding `fed` (with
/// random values of the given dims) and fetching `fetches`; checks the results agree
/// within `tol` and returns the optimised graph.
pub(super) fn optimise(
    graph: &Graph,
    passes: Vec<Box<dyn Pass>>,
    fed: &[(&str, &[usize])],
    fetches: &[&str],
    tol: f64,
) -> Graph {
    let out = |n: &&str| graph.output_named(n).unwrap();
    let fed_outs: Vec<Output> = fed.iter().map(|(n, _)| out(n)).collect();
    let fetch_outs: Vec<Output> = fetches.iter().map(out).collect();
    let mut cx = PassContext::for_step(graph, &fed_outs, &fetch_outs, &[]);
    let mut after = graph.clone();
    PassManager::new()
        .dump_to(None)
        .group("test", passes)
        .run(&mut after, &mut cx)
        .unwrap();
    after.validate().unwrap();
    let feeds: Vec<(&str, Tensor)> = fed
        .iter()
        .enumerate()
        .map(|(i, (n, dims))| {
            let dtype = graph.dtype(out(n));
            (*n, random_tensor(dtype, dims, 7 + i as u64).unwrap())
        })
        .collect();
    assert_same_results(graph, &after, &feeds, fetches, tol);
    after
}

pub(super) fn count(graph: &Graph, op: &str) -> usize {
    graph.nodes().filter(|(_, n)| n.op_name() == op).count()
}

pub(super) fn op_of(graph: &Graph, name: &str) -> String {
    graph
        .node(graph.node_named(name).unwrap())
        .op_name()
        .to_string()
}

pub(super) fn strings(graph: &Graph, node: &str, attr: &str) -> Vec<String> {
    let n = graph.node(graph.node_named(node).unwrap());
    let list = n.attr(attr).and_then(AttrValue::as_string_list).unwrap();
    list.iter()
        .map(|s| String::from_utf8_lossy(s).into())
        .collect()
}

pub(super) fn constant(b: &Builder, name: &str, dtype: DType, dims: &[usize], seed: u64) -> Output {
    b.constant_named(name, random_tensor(dtype, dims, seed).unwrap())
        .unwrap()
}

pub(super) fn named(b: &Builder, o: Output) -> String {
    b.graph().node(o.node).name.clone()
}

const ACTIVATIONS: [&str; 6] = ["Relu", "Relu6", "Elu", "LeakyRelu", "Tanh", "Sigmoid"];

#[test]
fn matmul_bias_activation_becomes_fused_matmul() {
    for dtype in [DType::F32, DType::F64] {
        for act in ACTIVATIONS {
            let b = Builder::new();
            let x = b.placeholder("x", dtype, [-1i64, 20]).unwrap();
            let w = constant(&b, "w", dtype, &[20, 32], 1);
            let bias = constant(&b, "bias", dtype, &[32], 2);
            let h = b.bias_add(b.matmul(x, w).unwrap(), bias).unwrap();
            let y = match act {
                "LeakyRelu" => b.leaky_relu(h, 0.3).unwrap(),
                _ => b.unary(act, h).unwrap(),
            };
            let y = named(&b, y);
            let g = b.into_graph();
            let passes: Vec<Box<dyn Pass>> = vec![Box::new(FuseContraction)];
            let after = optimise(&g, passes, &[("x", &[8, 20])], &[&y], 1e-5);
            assert_eq!(op_of(&after, &y), "_FusedMatMul", "{act}");
            assert_eq!(strings(&after, &y, "fused_ops"), ["BiasAdd", act]);
            assert_eq!(after.len(), g.len() - 2);
            if act == "LeakyRelu" {
                let n = after.node(after.node_named(&y).unwrap());
                assert_eq!(n.attr("leakyrelu_alpha"), Some(&AttrValue::Float(0.3)));
            }
        }
    }
}

/// `Conv2D` (NHWC or NCHW) + `BiasAdd` (+ `AddV2` of a fed tensor) (+ `act`).
fn conv_graph(format: &str, add: Option<bool>, act: Option<&str>) -> (Graph, String) {
    let b = Builder::new();
    let (x_dims, out_dims) = if format == "NHWC" {
        ([2i64, 9, 7, 3], [2i64, 5, 4, 6])
    } else {
        ([2, 3, 9, 7], [2, 6, 5, 4])
    };
    let x = b.placeholder("x", DType::F32, x_dims).unwrap();
    let f = constant(&b, "f", DType::F32, &[3, 3, 3, 6], 3);
    let strides = if format == "NHWC" {
        [1i64, 2, 2, 1]
    } else {
        [1, 1, 2, 2]
    };
    let conv = b
        .op("Conv2D")
        .input(x)
        .input(f)
        .attr("strides", strides.to_vec())
        .attr("padding", "SAME")
        .attr("data_format", format)
        .build_output()
        .unwrap();
    let bias = constant(&b, "bias", DType::F32, &[6], 4);
    let mut y = b.bias_add_with_format(conv, bias, format).unwrap();
    if let Some(side_first) = add {
        let side = b.placeholder("side", DType::F32, out_dims).unwrap();
        y = if side_first {
            b.binary("AddV2", side, y).unwrap()
        } else {
            b.binary("Add", y, side).unwrap()
        };
    }
    if let Some(act) = act {
        y = b.unary(act, y).unwrap();
    }
    let name = named(&b, y);
    (b.into_graph(), name)
}

#[test]
fn conv_bias_add_activation_becomes_fused_conv() {
    for format in ["NHWC", "NCHW"] {
        for add in [None, Some(false), Some(true)] {
            for act in [None, Some("Relu"), Some("Elu"), Some("Sigmoid")] {
                let (g, y) = conv_graph(format, add, act);
                let (x, side) = if format == "NHWC" {
                    ([2, 9, 7, 3], [2, 5, 4, 6])
                } else {
                    ([2, 3, 9, 7], [2, 6, 5, 4])
                };
                let mut fed: Vec<(&str, &[usize])> = vec![("x", &x)];
                if add.is_some() {
                    fed.push(("side", &side));
                }
                let passes: Vec<Box<dyn Pass>> = vec![Box::new(FuseContraction)];
                let after = optimise(&g, passes, &fed, &[&y], 1e-5);
                assert_eq!(
                    op_of(&after, &y),
                    "_FusedConv2D",
                    "{format} {add:?} {act:?}"
                );
                let mut want = vec!["BiasAdd"];
                want.extend(add.map(|_| "Add"));
                want.extend(act);
                assert_eq!(strings(&after, &y, "fused_ops"), want);
                assert_eq!(count(&after, "Conv2D") + count(&after, "BiasAdd"), 0);
            }
        }
    }
}

#[test]
fn contraction_rules_stop_fusion() {
    // A fetched intermediate stays: BiasAdd fetched, so only MatMul + BiasAdd fuse.
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [4i64, 5]).unwrap();
    let w = constant(&b, "w", DType::F32, &[5, 3], 1);
    let h = b.bias_add(
        b.matmul(x, w).unwrap(),
        constant(&b, "c", DType::F32, &[3], 2),
    );
    let h = h.unwrap();
    let y = b.relu(h).unwrap();
    let (h, y) = (named(&b, h), named(&b, y));
    let g = b.into_graph();
    let pass = || -> Vec<Box<dyn Pass>> { vec![Box::new(FuseContraction)] };
    let after = optimise(&g, pass(), &[("x", &[4, 5])], &[&h, &y], 1e-5);
    assert_eq!(op_of(&after, &h), "_FusedMatMul");
    assert_eq!(op_of(&after, &y), "Relu");
    // A product read twice is not absorbed.
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [4i64, 5]).unwrap();
    let p = b
        .matmul(x, constant(&b, "w", DType::F32, &[5, 3], 1))
        .unwrap();
    let y = b
        .bias_add(p, constant(&b, "c", DType::F32, &[3], 2))
        .unwrap();
    let z = b.binary("Mul", p, y).unwrap();
    let z = named(&b, z);
    let after = optimise(&b.into_graph(), pass(), &[("x", &[4, 5])], &[&z], 1e-5);
    assert_eq!(count(&after, "_FusedMatMul"), 0);
    // An Add that broadcasts is not fused, nor is a fed product.
    let b = Builder::new();
    let x = b.placeholder("x", DType::F32, [4i64, 5]).unwrap();
    let p = b
        .matmul(x, constant(&b, "w", DType::F32, &[5, 3], 1))
        .unwrap();
    let y = b
        .bias_add(p, constant(&b, "c", DType::F32, &[3], 2))
        .unwrap();
    let z = b
        .binary("AddV2", y, constant(&b, "row", DType::F32, &[3], 3))
        .unwrap();
    let (p, y, z) = (named(&b, p), named(&b, y), named(&b, z));
    let g = b.into_graph();
    let after = optimise(&g, pass(), &[("x", &[4, 5])], &[&z], 1e-5);
    assert_eq!(
        (op_of(&after, &y), op_of(&after, &z)),
        ("_FusedMatMul".into(), "AddV2".into())
    );
    let after = optimise(&g, pass(), &[("x", &[4, 5]), (&p, &[4, 3])], &[&z], 1e-5);
    assert_eq!(count(&after, "_FusedMatMul"), 0);
}

/// `Conv2D` or `DepthwiseConv2dNative` of a fed `x` by a constant filter, then a
/// `FusedBatchNormV3` with constant statistics (the variance a `Const` or, when not
/// `const_var`, an `Abs` of one); returns the graph and the names of `y` and `batch_mean`.
fn batch_norm_graph(
    op: &str,
    format: &str,
    training: bool,
    const_var: bool,
) -> (Graph, [String; 2]) {
    let b = Builder::new();
    let nchw = format == "NCHW";
    let x = b
        .placeholder(
            "x",
            DType::F32,
            if nchw { [2i64, 4, 6, 5] } else { [2, 6, 5, 4] },
        )
        .unwrap();
    let (filter, channels) = if op == "Conv2D" {
        ([3, 2, 4, 6], 6)
    } else {
        ([3, 2, 4, 2], 8)
    };
    let f = constant(&b, "filter", DType::F32, &filter, 1);
    let conv = b
        .op(op)
        .input(x)
        .input(f)
        .attr("strides", vec![1i64, 1, 1, 1])
        .attr("padding", "SAME")
        .attr("data_format", format)
        .build_output()
        .unwrap();
    let stat = |name: &str, seed| constant(&b, name, DType::F32, &[channels], seed);
    let var = if const_var {
        let v = random_tensor(DType::F32, &[channels], 5).unwrap();
        let v: Vec<f32> = v
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.abs() + 0.1)
            .collect();
        b.constant_named("variance", Tensor::vector(v)).unwrap()
    } else {
        b.unary("Abs", stat("var_raw", 5)).unwrap()
    };
    let bn = b
        .op("FusedBatchNormV3")
        .name("bn")
        .input(conv)
        .input(stat("scale", 2))
        .input(stat("offset", 3))
        .input(stat("mean", 4))
        .input(var)
        .attr("epsilon", 0.001f32)
        .attr("is_training", training)
        .attr("data_format", format)
        .build_outputs()
        .unwrap();
    let names = [b.graph().tensor_name(bn[0]), b.graph().tensor_name(bn[1])];
    (b.into_graph(), names)
}

#[test]
fn batch_norm_folds_into_the_convolution() {
    let fold = || -> Vec<Box<dyn Pass>> { vec![Box::new(FoldBatchNorm)] };
    let folded = |g: &Graph| count(g, "FusedBatchNormV3") == 0;
    for (op, format) in [
        ("Conv2D", "NHWC"),
        ("Conv2D", "NCHW"),
        ("DepthwiseConv2dNative", "NHWC"),
    ] {
        let x: &[usize] = if format == "NCHW" {
            &[2, 4, 6, 5]
        } else {
            &[2, 6, 5, 4]
        };
        let (g, [y, mean]) = batch_norm_graph(op, format, false, true);
        let after = optimise(&g, fold(), &[("x", x)], &[&y], 1e-5);
        assert!(folded(&after), "{op} {format}");
        assert_eq!(op_of(&after, "bn"), "BiasAdd");
        assert_eq!(count(&after, op), 1);
        // Fetching batch_mean keeps the batch norm.
        assert!(!folded(&optimise(
            &g,
            fold(),
            &[("x", x)],
            &[&y, &mean],
            1e-5
        )));
        // With the contraction pass too, a Conv2D ends up fused with the folded bias.
        if op == "Conv2D" {
            let after = optimise(&g, fusion_passes(), &[("x", x)], &[&y], 1e-5);
            assert_eq!(op_of(&after, "bn"), "_FusedConv2D");
        }
    }
    // Statistics that are not constants, or training mode, keep the batch norm.
    let x: &[usize] = &[2, 6, 5, 4];
    let (g, [y, _]) = batch_norm_graph("Conv2D", "NHWC", false, false);
    assert!(!folded(&optimise(&g, fold(), &[("x", x)], &[&y], 1e-5)));
    let (g, [y, _]) = batch_norm_graph("Conv2D", "NHWC", true, true);
    assert!(!folded(&optimise(&g, fold(), &[("x", x)], &[&y], 1e-5)));
}
