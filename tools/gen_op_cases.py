#!/usr/bin/env python3
"""Generates Rill's per-op test cases from TensorFlow.

Run locally (CI never needs TensorFlow):

    python3 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu numpy
    /work/tfvenv/bin/python tools/gen_op_cases.py            # op cases + loop fixtures
    /work/tfvenv/bin/python tools/gen_op_cases.py ops        # only tests/fixtures/ops
    /work/tfvenv/bin/python tools/gen_op_cases.py loops      # only the TF1 loop fixtures

For every case it builds a tiny `tf.compat.v1` graph (placeholders for the inputs, the
op under test with TensorFlow's real op name and attrs), runs it in a
`tf.compat.v1.Session` and writes `tests/fixtures/ops/<case>/` with `graph.pb`, the
inputs and expected outputs as `.npy` and `case.json` (format:
`tests/fixtures/ops/README.md`). Cases TensorFlow itself cannot run on CPU are skipped
(and printed). Error cases record TensorFlow's error class (e.g. `InvalidArgument`).

The loop part writes `tests/fixtures/tf/{while_matrix_counter,while_nested,cond_in_while}`
(TF1 control flow: Switch/Merge/Enter/Exit/NextIteration/LoopCond) in the format of
`tests/fixtures/tf/README.md`.

Deterministic: every case draws from its own RNG seeded with the case name. Re-runnable:
each case folder is deleted and rewritten (`tests/fixtures/ops` is rebuilt entirely,
except `README.md` and `known_failures.txt`).
"""

import json
import os
import shutil
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
raw = tf.raw_ops

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OPS_DIR = os.path.join(ROOT, "tests", "fixtures", "ops")
TF_DIR = os.path.join(ROOT, "tests", "fixtures", "tf")
KEEP = {"README.md", "known_failures.txt"}

BF16 = tf.bfloat16.as_numpy_dtype

# dtype name -> (tf dtype, default rtol, default atol)
DT = {
    "f32": (tf.float32, 1e-5, 1e-6),
    "f64": (tf.float64, 1e-10, 1e-12),
    "f16": (tf.float16, 2e-3, 2e-3),
    "bf16": (tf.bfloat16, 2e-2, 2e-2),
    "i32": (tf.int32, 0, 0),
    "i64": (tf.int64, 0, 0),
    "u8": (tf.uint8, 0, 0),
    "bool": (tf.bool, 0, 0),
}


def np_dtype(dt):
    return DT[dt][0].as_numpy_dtype


class Ctx:
    """What a case builder gets: an RNG and helpers to make inputs."""

    def __init__(self, name):
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.inputs = []  # (placeholder name, np array)
        self.n = 0

    def arr(self, shape, dt="f32", lo=-2.0, hi=2.0):
        if dt == "bool":
            return self.rng.random(shape) < 0.5
        if dt in ("i32", "i64", "u8"):
            return self.rng.integers(int(lo), int(hi) + 1, size=shape).astype(np_dtype(dt))
        a = self.rng.uniform(lo, hi, size=shape)
        return a.astype(np.float32).astype(np_dtype(dt))

    def ph(self, value, dt=None, name=None, dyn=False):
        """A placeholder fed with `value` (converted to dtype `dt`); `dyn`: unknown shape."""
        if dt is not None:
            value = np.asarray(value).astype(np_dtype(dt))
        value = np.asarray(value)
        if name is None:
            name = "x" if self.n == 0 else "x%d" % self.n
        self.n += 1
        p = tf1.placeholder(tf.as_dtype(value.dtype), shape=None if dyn else value.shape, name=name)
        self.inputs.append((name, value))
        return p


def tf_dtype_name(dtype):
    return tf.as_dtype(dtype).name


def save_npy(path, value):
    value = np.asarray(value)
    if value.dtype == BF16:
        value = value.astype(np.float32)
    np.save(path, value, allow_pickle=False)


CASES = []


def case(name, fn, rtol=None, atol=None, dt="f32", expect_error=None):
    CASES.append((name, fn, rtol, atol, dt, expect_error))


def run_case(name, fn, rtol, atol, dt, expect_error):
    g = tf.Graph()
    ctx = Ctx(name)
    with g.as_default():
        try:
            outs = fn(ctx)
        except Exception as e:  # noqa: BLE001 (a broken case definition or a TF shape error)
            print("BUILD ERROR %s: %s" % (name, e))
            return False
        if isinstance(outs, (tf.Tensor, tf.Operation)):
            outs = [outs]
        outs = [o for o in outs]
        if not outs or not all(isinstance(o, tf.Tensor) for o in outs):
            raise ValueError("case %s must return tensors" % name)
    feed = {g.get_tensor_by_name(n + ":0"): v for n, v in ctx.inputs}
    err = None
    with tf1.Session(graph=g) as s:
        try:
            vals = s.run(outs, feed_dict=feed)
        except tf.errors.OpError as e:
            err = e
    if expect_error is not None:
        if err is None:
            raise ValueError("%s: expected %s but TF succeeded" % (name, expect_error))
        got = type(err).__name__.replace("Error", "")
        if got != expect_error:
            raise ValueError("%s: expected %s, TF raised %s: %s" % (name, expect_error, got, err))
        vals = None
    elif err is not None:
        print("SKIP %s: TensorFlow cannot run it: %s" % (name, str(err).splitlines()[0]))
        return False
    d = os.path.join(OPS_DIR, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "graph.pb"), "wb") as f:
        f.write(g.as_graph_def().SerializeToString())
    feeds, fetches, dtypes = {}, {}, {}
    for n, v in ctx.inputs:
        feeds[n + ":0"] = n + ".npy"
        dtypes[n + ":0"] = tf_dtype_name(v.dtype)
        save_npy(os.path.join(d, n + ".npy"), v)
    for i, o in enumerate(outs):
        fname = "out%d.npy" % i
        fetches[o.name] = fname
        dtypes[o.name] = o.dtype.name
        if vals is not None:
            save_npy(os.path.join(d, fname), vals[i])
    op_types = sorted(
        {n.op for n in g.as_graph_def().node} - {"Placeholder", "Const"}
    ) or ["Const"]
    base = DT.get(dt, DT["f32"])
    manifest = {
        "op": outs[0].op.type if outs[0].op.type not in ("Identity",) or len(op_types) == 1
        else op_types[0],
        "ops": op_types,
        "feeds": feeds,
        "fetches": fetches,
        "dtypes": dtypes,
        "rtol": base[1] if rtol is None else rtol,
        "atol": base[2] if atol is None else atol,
        "expect_error": expect_error,
    }
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return True


# ----------------------------------------------------------------------------------------
# Case definitions.


def C(v, dt=None):
    return tf.constant(v if dt is None else np.asarray(v, dtype=np_dtype(dt)))


# --- unary math -------------------------------------------------------------------------
POS = dict(lo=0.1, hi=3.0)
UNARY = {
    # op: (domain, dtypes)
    "Abs": ({}, ["f32", "f64", "f16", "bf16", "i32", "i64"]),
    "Neg": ({}, ["f32", "f64", "f16", "bf16", "i32", "i64"]),
    "Sign": ({}, ["f32", "f64", "i32", "i64", "f16"]),
    "Reciprocal": (POS, ["f32", "f64", "f16", "bf16"]),
    "Square": ({}, ["f32", "f64", "f16", "bf16", "i32", "i64"]),
    "Sqrt": (POS, ["f32", "f64", "f16", "bf16"]),
    "Rsqrt": (POS, ["f32", "f64", "f16", "bf16"]),
    "Exp": ({}, ["f32", "f64", "f16", "bf16"]),
    "Expm1": ({}, ["f32", "f64", "f16"]),
    "Log": (POS, ["f32", "f64", "f16", "bf16"]),
    "Log1p": (dict(lo=-0.9, hi=3.0), ["f32", "f64", "f16"]),
    "Sin": ({}, ["f32", "f64", "f16"]),
    "Cos": ({}, ["f32", "f64", "f16"]),
    "Tanh": ({}, ["f32", "f64", "f16", "bf16"]),
    "Sigmoid": ({}, ["f32", "f64", "f16", "bf16"]),
    "Floor": ({}, ["f32", "f64", "f16", "bf16"]),
    "Ceil": ({}, ["f32", "f64", "f16", "bf16"]),
    "Erf": ({}, ["f32", "f64", "f16"]),
    "Erfc": ({}, ["f32", "f64", "f16"]),
}


def mk_unary(op, dt, dom):
    def f(c):
        kw = dict(dom)
        if dt in ("i32", "i64"):
            kw = dict(lo=-9, hi=9)
        x = c.ph(c.arr([2, 3, 4], dt, **kw))
        return getattr(raw, op)(x=x)

    return f


for op, (dom, dts) in UNARY.items():
    for dt in dts:
        case("%s_%s" % (op.lower(), dt), mk_unary(op, dt, dom), dt=dt)

case("abs_scalar_f32", lambda c: raw.Abs(x=c.ph(np.float32(-3.5))))
case("exp_empty_f32", lambda c: raw.Exp(x=c.ph(np.zeros([0, 3], np.float32))))
case("neg_empty_i32", lambda c: raw.Neg(x=c.ph(np.zeros([2, 0], np.int32))))
case("sign_special_f32",
     lambda c: raw.Sign(x=c.ph(np.array([-0.0, 0.0, -2, 3, np.inf, -np.inf], np.float32))))
for dt in ["f32", "f64", "f16"]:
    case("round_halves_%s" % dt, lambda c, dt=dt: raw.Round(
        x=c.ph(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.3, -0.7, 3.49], dtype=np_dtype(dt)))),
        dt=dt)
# No integer Round case: TF 2.21's CPU kernel returns zeros for int32 Round (a TF bug).
for dt in ["f32", "f64", "f16"]:
    case("isnan_%s" % dt, lambda c, dt=dt: raw.IsNan(
        x=c.ph(np.array([0, np.nan, np.inf, -np.inf, -1.5], dtype=np_dtype(dt)))))
    case("isfinite_%s" % dt, lambda c, dt=dt: raw.IsFinite(
        x=c.ph(np.array([0, np.nan, np.inf, -np.inf, -1.5], dtype=np_dtype(dt)))))
case("log_zero_neg_f32", lambda c: raw.Log(x=c.ph(np.array([0.0, -1.0, 1.0], np.float32))))
case("sqrt_neg_f32", lambda c: raw.Sqrt(x=c.ph(np.array([-1.0, 0.0, 4.0], np.float32))))
case("reciprocal_zero_f32", lambda c: raw.Reciprocal(x=c.ph(np.array([0.0, -0.0, 2.0], np.float32))))
case("exp_large_f32", lambda c: raw.Exp(x=c.ph(np.array([-200.0, 100.0, 88.0], np.float32))))
case("sigmoid_large_f32", lambda c: raw.Sigmoid(
    x=c.ph(np.array([-100.0, -20.0, 0.0, 20.0, 100.0], np.float32))))
case("tanh_large_f32", lambda c: raw.Tanh(x=c.ph(np.array([-30.0, -9.0, 0.0, 9.0, 30.0], np.float32))))

# --- binary math ------------------------------------------------------------------------
BINARY = {
    "Add": ["f32", "f64", "f16", "bf16", "i32", "i64", "u8"],
    "AddV2": ["f32", "f64", "f16", "bf16", "i32", "i64", "u8"],
    "Sub": ["f32", "f64", "f16", "bf16", "i32", "i64"],
    "Mul": ["f32", "f64", "f16", "bf16", "i32", "i64", "u8"],
    "Div": ["f32", "f64", "f16", "i32", "i64"],
    "RealDiv": ["f32", "f64", "f16", "bf16"],
    "DivNoNan": ["f32", "f64", "f16"],
    "FloorDiv": ["f32", "f64", "i32", "i64"],
    "FloorMod": ["f32", "f64", "i32", "i64"],
    "Mod": ["f32", "i32", "i64"],
    "Pow": ["f32", "f64", "f16", "i32", "i64"],
    "SquaredDifference": ["f32", "f64", "f16", "i32", "i64"],
    "Maximum": ["f32", "f64", "f16", "bf16", "i32", "i64", "u8"],
    "Minimum": ["f32", "f64", "f16", "bf16", "i32", "i64", "u8"],
}
NONZERO_RHS = {"Div", "RealDiv", "FloorDiv", "FloorMod", "Mod"}


def rhs_values(c, op, shape, dt):
    if op == "Pow":
        if dt in ("i32", "i64"):
            return c.arr(shape, dt, 0, 4)
        return c.arr(shape, dt, -2, 2)
    if op in NONZERO_RHS or op == "DivNoNan":
        if dt in ("i32", "i64"):
            v = c.arr(shape, dt, 1, 5)
            s = np.where(c.rng.random(shape) < 0.5, -1, 1).astype(v.dtype)
            v = v * s
        elif dt == "u8":
            v = c.arr(shape, dt, 1, 9)
        else:
            v = c.arr(shape, dt, 0.5, 3.0)
            v = (v * np.where(c.rng.random(shape) < 0.5, -1, 1)).astype(v.dtype)
        if op == "DivNoNan":
            v.flat[0] = 0
        return v
    return c.arr(shape, dt, *((0, 9) if dt == "u8" else (-9, 9) if dt in ("i32", "i64") else (-2, 2)))


def lhs_values(c, op, shape, dt):
    if op == "Pow" and dt not in ("i32", "i64"):
        return c.arr(shape, dt, 0.2, 2.5)
    if op == "Pow":
        return c.arr(shape, dt, -4, 4)
    if dt == "u8":
        return c.arr(shape, dt, 0, 20 if op in ("Mul",) else 120)
    if dt in ("i32", "i64"):
        return c.arr(shape, dt, -20, 20)
    return c.arr(shape, dt, -3, 3)


def mk_binary(op, dt, sa, sb):
    def f(c):
        a = c.ph(lhs_values(c, op, sa, dt))
        b = c.ph(rhs_values(c, op, sb, dt))
        return getattr(raw, op)(x=a, y=b)

    return f


for op, dts in BINARY.items():
    for dt in dts:
        case("%s_%s" % (op.lower(), dt), mk_binary(op, dt, [2, 3, 4], [2, 3, 4]), dt=dt)
    case("%s_bcast_f32" % op.lower(), mk_binary(op, "f32", [2, 1, 4], [3, 1]))
for op in ["AddV2", "Mul", "Sub", "Maximum", "RealDiv"]:
    case("%s_scalar_f32" % op.lower(), mk_binary(op, "f32", [], [2, 3]))
    case("%s_empty_f32" % op.lower(), mk_binary(op, "f32", [0, 3], [3]))
case("addv2_bcast_i64", mk_binary("AddV2", "i64", [4, 1], [1, 5]), dt="i64")
case("addv2_scalar_scalar_i32", mk_binary("AddV2", "i32", [], []))
case("addv2_bcast_rank4_f32", mk_binary("AddV2", "f32", [2, 1, 3, 1], [4, 1, 2]))

INT_NEG_A = np.array([-7, 7, -7, 7, -6, 6, 0, -1], np.int32)
INT_NEG_B = np.array([2, 2, -2, -2, 3, -3, 5, 4], np.int32)
for op in ["FloorDiv", "FloorMod", "Mod", "Div", "TruncateDiv", "TruncateMod"]:
    for dt in ["i32", "i64"]:
        case("%s_negative_%s" % (op.lower(), dt),
             lambda c, op=op, dt=dt: getattr(raw, op)(x=c.ph(INT_NEG_A, dt), y=c.ph(INT_NEG_B, dt)))
    if op in ("FloorDiv", "FloorMod", "Mod", "TruncateMod"):
        case("%s_negative_f32" % op.lower(),
             lambda c, op=op: getattr(raw, op)(x=c.ph(INT_NEG_A * 1.25, "f32"), y=c.ph(INT_NEG_B, "f32")))
case("floordiv_by_zero_i32",
     lambda c: raw.FloorDiv(x=c.ph(np.array([1, 2], np.int32)), y=c.ph(np.array([1, 0], np.int32))),
     expect_error="InvalidArgument")
case("floormod_by_zero_i32",
     lambda c: raw.FloorMod(x=c.ph(np.array([1, 2], np.int32)), y=c.ph(np.array([1, 0], np.int32))),
     expect_error="InvalidArgument")
case("div_by_zero_f32", lambda c: raw.RealDiv(x=c.ph(np.array([1.0, -1.0, 0.0], np.float32)),
                                              y=c.ph(np.zeros(3, np.float32))))
case("divnonan_zero_f32", lambda c: raw.DivNoNan(x=c.ph(np.array([1.0, -1.0, 0.0, 3.0], np.float32)),
                                                 y=c.ph(np.array([0.0, 0.0, 0.0, 2.0], np.float32))))
case("pow_special_f32", lambda c: raw.Pow(x=c.ph(np.array([0.0, 0.0, -2.0, -8.0, 4.0, 1.0], np.float32)),
                                          y=c.ph(np.array([0.0, -1.0, 3.0, 1 / 3, 0.5, np.inf], np.float32))))
case("maximum_nan_f32", lambda c: raw.Maximum(x=c.ph(np.array([np.nan, 1.0, 2.0], np.float32)),
                                              y=c.ph(np.array([0.0, np.nan, 1.0], np.float32))))
case("minimum_nan_f32", lambda c: raw.Minimum(x=c.ph(np.array([np.nan, 1.0, 2.0], np.float32)),
                                              y=c.ph(np.array([0.0, np.nan, 1.0], np.float32))))
case("add_u8_wrap", lambda c: raw.Add(x=c.ph(np.array([200, 255, 3], np.uint8)),
                                      y=c.ph(np.array([100, 1, 4], np.uint8))))
case("mul_i32_wrap", lambda c: raw.Mul(x=c.ph(np.array([2 ** 30, -(2 ** 31), 7], np.int32)),
                                       y=c.ph(np.array([4, -1, 3], np.int32))))

for dt in ["f32", "i32", "f16"]:
    case("addn_3_%s" % dt, lambda c, dt=dt: raw.AddN(
        inputs=[c.ph(c.arr([2, 3], dt, -5, 5)) for _ in range(3)]), dt=dt)
case("addn_1_f32", lambda c: raw.AddN(inputs=[c.ph(c.arr([4]))]))
case("addn_scalar_i64", lambda c: raw.AddN(inputs=[c.ph(np.int64(3)), c.ph(np.int64(-9))]))

# --- comparisons and logic --------------------------------------------------------------
CMP = ["Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual"]
for op in CMP:
    for dt in ["f32", "i32", "i64", "f16"]:
        def f(c, op=op, dt=dt):
            a = c.arr([3, 4], dt, -2, 2)
            a = np.round(a) if dt.startswith("f") else a
            b = c.arr([4], dt, -2, 2)
            b = np.round(b) if dt.startswith("f") else b
            return getattr(raw, op)(x=c.ph(a), y=c.ph(b))
        case("%s_%s" % (op.lower(), dt), f)
for op in ["Equal", "NotEqual"]:
    case("%s_bool" % op.lower(), lambda c, op=op: getattr(raw, op)(x=c.ph(c.arr([5], "bool")),
                                                                   y=c.ph(c.arr([5], "bool"))))
case("equal_nan_f32", lambda c: raw.Equal(x=c.ph(np.array([np.nan, 1.0], np.float32)),
                                          y=c.ph(np.array([np.nan, 1.0], np.float32))))
case("less_scalar_f32", lambda c: raw.Less(x=c.ph(c.arr([2, 3])), y=c.ph(np.float32(0.25))))
case("logicaland", lambda c: raw.LogicalAnd(x=c.ph(c.arr([2, 3], "bool")), y=c.ph(c.arr([3], "bool"))))
case("logicalor", lambda c: raw.LogicalOr(x=c.ph(c.arr([2, 3], "bool")), y=c.ph(c.arr([2, 1], "bool"))))
case("logicalnot", lambda c: raw.LogicalNot(x=c.ph(c.arr([2, 3], "bool"))))
case("logicalnot_empty", lambda c: raw.LogicalNot(x=c.ph(np.zeros([0], bool))))

for dt in ["f32", "i32", "bool"]:
    case("select_same_%s" % dt, lambda c, dt=dt: raw.Select(
        condition=c.ph(c.arr([2, 3], "bool")), x=c.ph(c.arr([2, 3], dt)), y=c.ph(c.arr([2, 3], dt))))
case("select_vector_cond_f32", lambda c: raw.Select(
    condition=c.ph(np.array([True, False, True])), x=c.ph(c.arr([3, 2])), y=c.ph(c.arr([3, 2]))))
case("select_scalar_cond_f32", lambda c: raw.Select(
    condition=c.ph(np.array(False)), x=c.ph(c.arr([3, 2])), y=c.ph(c.arr([3, 2]))))
case("selectv2_bcast_f32", lambda c: raw.SelectV2(
    condition=c.ph(c.arr([3, 1], "bool")), t=c.ph(c.arr([1, 4])), e=c.ph(np.float32(-1.0))))
case("selectv2_bcast_i64", lambda c: raw.SelectV2(
    condition=c.ph(c.arr([4], "bool")), t=c.ph(c.arr([2, 4], "i64", -5, 5)), e=c.ph(c.arr([2, 1], "i64", -5, 5))))

# --- reductions -------------------------------------------------------------------------
RED = ["Sum", "Mean", "Max", "Min", "Prod"]


def mk_red(op, dt, shape, axes, keep, axis_dt="i32", lo=-2, hi=2):
    def f(c):
        x = c.ph(c.arr(shape, dt, lo, hi))
        return getattr(raw, op)(input=x, axis=C(axes, axis_dt), keep_dims=keep)

    return f


for op in RED:
    lo, hi = (0.5, 1.5) if op == "Prod" else (-2, 2)
    case("%s_axis1_f32" % op.lower(), mk_red(op, "f32", [2, 3, 4], [1], False, lo=lo, hi=hi))
    case("%s_neg_axis_keep_f32" % op.lower(), mk_red(op, "f32", [2, 3, 4], [-1], True, lo=lo, hi=hi))
    case("%s_multi_axes_f32" % op.lower(), mk_red(op, "f32", [2, 3, 4], [0, -1], False, lo=lo, hi=hi))
    case("%s_all_axes_keep_f32" % op.lower(), mk_red(op, "f32", [2, 3, 4], [0, 1, 2], True, lo=lo, hi=hi))
    case("%s_empty_axes_f32" % op.lower(), mk_red(op, "f32", [2, 3], [], False, lo=lo, hi=hi))
    case("%s_int64_axes_f32" % op.lower(), mk_red(op, "f32", [2, 3, 4], [1, 2], False, "i64", lo, hi))
    case("%s_scalar_axis_f32" % op.lower(), mk_red(op, "f32", [3, 4], 0, False, lo=lo, hi=hi))
    case("%s_i32" % op.lower(), mk_red(op, "i32", [3, 4], [1], False, lo=-3, hi=3), dt="i32")
    case("%s_i64" % op.lower(), mk_red(op, "i64", [3, 4], [0], True, lo=-3, hi=3), dt="i64")
    case("%s_f16" % op.lower(), mk_red(op, "f16", [3, 4], [1], False, lo=lo, hi=hi), dt="f16")
    case("%s_f64" % op.lower(), mk_red(op, "f64", [3, 4], [-2], False, lo=lo, hi=hi), dt="f64")
    case("%s_empty_input_f32" % op.lower(), mk_red(op, "f32", [0, 3], [0], False))
case("sum_bf16", mk_red("Sum", "bf16", [3, 4], [1], False), dt="bf16")
case("mean_i32_truncates", lambda c: raw.Mean(
    input=c.ph(np.array([[1, 2], [-3, -4], [5, 7]], np.int32)), axis=C([1]), keep_dims=False))
case("sum_scalar_input_f32", lambda c: raw.Sum(input=c.ph(np.float32(2.5)), axis=C([], "i32"), keep_dims=False))
for op in ["All", "Any"]:
    case("%s_axis1" % op.lower(), lambda c, op=op: getattr(raw, op)(
        input=c.ph(c.arr([3, 4], "bool")), axis=C([1]), keep_dims=False))
    case("%s_neg_axis_keep" % op.lower(), lambda c, op=op: getattr(raw, op)(
        input=c.ph(c.arr([2, 3, 4], "bool")), axis=C([-1, 0], "i64"), keep_dims=True))
    case("%s_empty_input" % op.lower(), lambda c, op=op: getattr(raw, op)(
        input=c.ph(np.zeros([0, 2], bool)), axis=C([0]), keep_dims=False))

for op in ["ArgMax", "ArgMin"]:
    for dt in ["f32", "i32", "f64"]:
        case("%s_axis0_%s" % (op.lower(), dt), lambda c, op=op, dt=dt: getattr(raw, op)(
            input=c.ph(c.arr([4, 3], dt, -9, 9)), dimension=C(0)))
    case("%s_neg_axis_i32out" % op.lower(), lambda c, op=op: getattr(raw, op)(
        input=c.ph(c.arr([2, 3, 4])), dimension=C(-1), output_type=tf.int32))
    case("%s_ties" % op.lower(), lambda c, op=op: getattr(raw, op)(
        input=c.ph(np.array([[1, 3, 3, 1], [2, 2, 2, 2]], np.float32)), dimension=C(np.int64(1))))
    case("%s_f16" % op.lower(), lambda c, op=op: getattr(raw, op)(
        input=c.ph(c.arr([3, 5], "f16")), dimension=C(1)))

for ex in [False, True]:
    for rev in [False, True]:
        case("cumsum_ex%d_rev%d_f32" % (ex, rev), lambda c, ex=ex, rev=rev: raw.Cumsum(
            x=c.ph(c.arr([3, 4])), axis=C(1), exclusive=ex, reverse=rev))
case("cumsum_neg_axis_i32", lambda c: raw.Cumsum(x=c.ph(c.arr([2, 3, 2], "i32", -5, 5)), axis=C(-2)))
case("cumsum_axis0_i64axis_f64", lambda c: raw.Cumsum(x=c.ph(c.arr([4, 2], "f64")), axis=C(np.int64(0)),
                                                      exclusive=True), dt="f64")
case("cumsum_empty_f32", lambda c: raw.Cumsum(x=c.ph(np.zeros([0, 2], np.float32)), axis=C(0)))

case("range_i32", lambda c: raw.Range(start=c.ph(np.int32(2)), limit=c.ph(np.int32(11)), delta=c.ph(np.int32(3))))
case("range_neg_delta_i32", lambda c: raw.Range(start=c.ph(np.int32(5)), limit=c.ph(np.int32(-3)),
                                                delta=c.ph(np.int32(-2))))
case("range_empty_i32", lambda c: raw.Range(start=c.ph(np.int32(5)), limit=c.ph(np.int32(5)),
                                            delta=c.ph(np.int32(1))))
case("range_f32", lambda c: raw.Range(start=c.ph(np.float32(0.5)), limit=c.ph(np.float32(2.0)),
                                      delta=c.ph(np.float32(0.25))))
case("range_i64", lambda c: raw.Range(start=c.ph(np.int64(-3)), limit=c.ph(np.int64(4)), delta=c.ph(np.int64(2))))
case("range_const_i32", lambda c: raw.Range(start=C(0), limit=C(6), delta=C(1)) * c.ph(np.int32(2)))
case("range_zero_delta", lambda c: raw.Range(start=c.ph(np.int32(0)), limit=c.ph(np.int32(4)),
                                             delta=c.ph(np.int32(0))), expect_error="InvalidArgument")

case("clipbyvalue_scalar_f32", lambda c: raw.ClipByValue(
    t=c.ph(c.arr([3, 4])), clip_value_min=c.ph(np.float32(-0.5)), clip_value_max=c.ph(np.float32(0.75))))
case("clipbyvalue_tensor_f32", lambda c: raw.ClipByValue(
    t=c.ph(c.arr([2, 3])), clip_value_min=c.ph(c.arr([2, 3], lo=-2, hi=-0.5)),
    clip_value_max=c.ph(c.arr([2, 3], lo=0.5, hi=2))))
case("clipbyvalue_i32", lambda c: raw.ClipByValue(
    t=c.ph(c.arr([6], "i32", -9, 9)), clip_value_min=c.ph(np.int32(-3)), clip_value_max=c.ph(np.int32(4))))

# --- matmul -----------------------------------------------------------------------------
for ta in [False, True]:
    for tb in [False, True]:
        def f(c, ta=ta, tb=tb):
            a = c.arr([4, 3] if ta else [3, 4])
            b = c.arr([5, 4] if tb else [4, 5])
            return raw.MatMul(a=c.ph(a), b=c.ph(b), transpose_a=ta, transpose_b=tb)
        case("matmul_ta%d_tb%d_f32" % (ta, tb), f, rtol=1e-5, atol=1e-5)
for dt in ["f64", "i32", "f16", "bf16", "i64"]:
    case("matmul_%s" % dt, lambda c, dt=dt: raw.MatMul(a=c.ph(c.arr([3, 4], dt, -3, 3)),
                                                      b=c.ph(c.arr([4, 2], dt, -3, 3))), dt=dt,
         rtol={"f16": 5e-3, "bf16": 3e-2}.get(dt), atol={"f16": 1e-2, "bf16": 1e-1}.get(dt))
case("matmul_empty_k_f32", lambda c: raw.MatMul(a=c.ph(np.zeros([2, 0], np.float32)),
                                                b=c.ph(np.zeros([0, 3], np.float32))))
case("batchmatmul_f32", lambda c: raw.BatchMatMul(x=c.ph(c.arr([2, 3, 4])), y=c.ph(c.arr([2, 4, 5]))),
     atol=1e-5)
case("batchmatmul_adj_f32", lambda c: raw.BatchMatMul(x=c.ph(c.arr([2, 4, 3])), y=c.ph(c.arr([2, 5, 4])),
                                                      adj_x=True, adj_y=True), atol=1e-5)
case("batchmatmulv2_bcast_f32", lambda c: raw.BatchMatMulV2(x=c.ph(c.arr([2, 1, 3, 4])),
                                                            y=c.ph(c.arr([3, 4, 2]))), atol=1e-5)
case("batchmatmulv2_rank2_rhs_f32", lambda c: raw.BatchMatMulV2(x=c.ph(c.arr([2, 3, 4])),
                                                                y=c.ph(c.arr([4, 2]))), atol=1e-5)
case("batchmatmulv2_i32", lambda c: raw.BatchMatMulV2(x=c.ph(c.arr([2, 2, 3], "i32", -3, 3)),
                                                      y=c.ph(c.arr([1, 3, 2], "i32", -3, 3))))
case("batchmatmulv3_f32", lambda c: raw.BatchMatMulV3(x=c.ph(c.arr([3, 2, 4])), y=c.ph(c.arr([1, 5, 4])),
                                                      Tout=tf.float32, adj_y=True), atol=1e-5)
case("batchmatmulv3_u8_to_i32", lambda c: raw.BatchMatMulV3(
    x=c.ph(c.arr([2, 2, 3], "u8", 0, 20)), y=c.ph(c.arr([2, 3, 2], "u8", 0, 20)), Tout=tf.int32))

# --- nn ---------------------------------------------------------------------------------
NN_TOL = dict(rtol=1e-4, atol=1e-5)


def conv_case(name, xs, fs, strides, padding, dil=(1, 1, 1, 1), fmt="NHWC", explicit=None, dt="f32"):
    def f(c):
        x = c.ph(c.arr(xs, dt))
        w = c.ph(c.arr(fs, dt))
        kw = {}
        if explicit is not None:
            kw["explicit_paddings"] = explicit
        return raw.Conv2D(input=x, filter=w, strides=strides, padding=padding, dilations=list(dil),
                          data_format=fmt, **kw)

    tol = NN_TOL if dt == "f32" else dict(rtol=1e-2, atol=1e-2) if dt == "f16" else dict(rtol=1e-9, atol=1e-9)
    case(name, f, dt=dt, **tol)


conv_case("conv2d_same_f32", [2, 5, 6, 3], [3, 3, 3, 4], [1, 1, 1, 1], "SAME")
conv_case("conv2d_valid_f32", [1, 6, 5, 2], [2, 3, 2, 3], [1, 1, 1, 1], "VALID")
conv_case("conv2d_same_stride2_f32", [1, 7, 6, 2], [3, 3, 2, 2], [1, 2, 2, 1], "SAME")
conv_case("conv2d_valid_stride_f32", [2, 7, 7, 1], [3, 2, 1, 2], [1, 2, 3, 1], "VALID")
conv_case("conv2d_explicit_f32", [1, 5, 5, 2], [3, 3, 2, 2], [1, 1, 1, 1], "EXPLICIT",
          explicit=[0, 0, 1, 2, 0, 1, 0, 0])
conv_case("conv2d_dilated_f32", [1, 7, 8, 2], [3, 3, 2, 3], [1, 1, 1, 1], "SAME", dil=(1, 2, 2, 1))
conv_case("conv2d_dilated_valid_f32", [1, 7, 8, 2], [2, 3, 2, 1], [1, 1, 1, 1], "VALID", dil=(1, 3, 2, 1))
conv_case("conv2d_nchw_f32", [1, 2, 5, 5], [3, 3, 2, 2], [1, 1, 1, 1], "SAME", fmt="NCHW")
conv_case("conv2d_1x1_f32", [2, 3, 3, 4], [1, 1, 4, 5], [1, 1, 1, 1], "VALID")
conv_case("conv2d_f64", [1, 4, 4, 2], [2, 2, 2, 2], [1, 1, 1, 1], "SAME", dt="f64")
conv_case("conv2d_f16", [1, 4, 4, 2], [2, 2, 2, 2], [1, 1, 1, 1], "SAME", dt="f16")

case("depthwise_same_f32", lambda c: raw.DepthwiseConv2dNative(
    input=c.ph(c.arr([1, 5, 5, 3])), filter=c.ph(c.arr([3, 3, 3, 2])), strides=[1, 1, 1, 1],
    padding="SAME"), **NN_TOL)
case("depthwise_valid_stride2_f32", lambda c: raw.DepthwiseConv2dNative(
    input=c.ph(c.arr([2, 6, 7, 2])), filter=c.ph(c.arr([2, 3, 2, 1])), strides=[1, 2, 2, 1],
    padding="VALID"), **NN_TOL)
case("depthwise_dilated_f32", lambda c: raw.DepthwiseConv2dNative(
    input=c.ph(c.arr([1, 7, 7, 2])), filter=c.ph(c.arr([3, 3, 2, 1])), strides=[1, 1, 1, 1],
    padding="SAME", dilations=[1, 2, 2, 1]), **NN_TOL)
case("conv2dbackpropinput_same_f32", lambda c: raw.Conv2DBackpropInput(
    input_sizes=C([1, 5, 5, 2]), filter=c.ph(c.arr([3, 3, 2, 3])), out_backprop=c.ph(c.arr([1, 3, 3, 3])),
    strides=[1, 2, 2, 1], padding="SAME"), **NN_TOL)
case("conv2dbackpropinput_valid_f32", lambda c: raw.Conv2DBackpropInput(
    input_sizes=C([2, 6, 5, 1]), filter=c.ph(c.arr([2, 2, 1, 2])), out_backprop=c.ph(c.arr([2, 5, 4, 2])),
    strides=[1, 1, 1, 1], padding="VALID"), **NN_TOL)
case("conv2dbackpropfilter_same_f32", lambda c: raw.Conv2DBackpropFilter(
    input=c.ph(c.arr([1, 5, 5, 2])), filter_sizes=C([3, 3, 2, 3]), out_backprop=c.ph(c.arr([1, 3, 3, 3])),
    strides=[1, 2, 2, 1], padding="SAME"), **NN_TOL)
case("conv2dbackpropfilter_valid_f32", lambda c: raw.Conv2DBackpropFilter(
    input=c.ph(c.arr([2, 6, 5, 1])), filter_sizes=C([2, 2, 1, 2]), out_backprop=c.ph(c.arr([2, 5, 4, 2])),
    strides=[1, 1, 1, 1], padding="VALID"), **NN_TOL)

def pool_op(pool, x, **kw):
    return getattr(raw, pool)(**{("value" if pool == "AvgPool" else "input"): x}, **kw)


for pool in ["MaxPool", "AvgPool"]:
    for pad in ["SAME", "VALID"]:
        case("%s_%s_f32" % (pool.lower(), pad.lower()), lambda c, pool=pool, pad=pad: pool_op(
            pool, c.ph(c.arr([2, 5, 6, 3])), ksize=[1, 3, 2, 1], strides=[1, 2, 2, 1], padding=pad), **NN_TOL)
    case("%s_f16" % pool.lower(), lambda c, pool=pool: pool_op(
        pool, c.ph(c.arr([1, 4, 4, 2], "f16")), ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID"),
        dt="f16")
case("maxpool_i32", lambda c: raw.MaxPool(input=c.ph(c.arr([1, 4, 4, 1], "i32", -9, 9)), ksize=[1, 2, 2, 1],
                                          strides=[1, 1, 1, 1], padding="SAME"))
case("maxpoolv2_f32", lambda c: raw.MaxPoolV2(input=c.ph(c.arr([1, 5, 5, 2])), ksize=C([1, 2, 3, 1]),
                                              strides=C([1, 2, 1, 1]), padding="SAME"))


def fbn(version, training, dt="f32", fmt="NHWC"):
    def f(c):
        xs = [2, 3, 4, 3] if fmt == "NHWC" else [2, 3, 3, 4]
        x = c.ph(c.arr(xs, dt))
        ch = 3
        scale = c.ph(c.arr([ch], "f32", 0.5, 1.5))
        offset = c.ph(c.arr([ch], "f32", -0.5, 0.5))
        if training:
            mean = C(np.zeros(0, np.float32))
            var = C(np.zeros(0, np.float32))
        else:
            mean = c.ph(c.arr([ch], "f32", -0.5, 0.5))
            var = c.ph(c.arr([ch], "f32", 0.5, 2.0))
        op = {1: raw.FusedBatchNorm, 2: raw.FusedBatchNormV2, 3: raw.FusedBatchNormV3}[version]
        outs = op(x=x, scale=scale, offset=offset, mean=mean, variance=var, epsilon=0.001,
                  is_training=training, data_format=fmt)
        # In inference mode TF leaves the reserve spaces unspecified (uninitialised memory).
        return list(outs) if training else list(outs)[:3]

    return f


for v in [1, 2, 3]:
    for tr in [False, True]:
        case("fusedbatchnorm%s_%s_f32" % ("" if v == 1 else "v%d" % v, "train" if tr else "infer"),
             fbn(v, tr), **NN_TOL)
case("fusedbatchnormv3_train_f16", fbn(3, True, "f16"), dt="f16", rtol=1e-2, atol=1e-2)
case("fusedbatchnormv3_infer_nchw_f32", fbn(3, False, fmt="NCHW"), **NN_TOL)

case("lrn_f32", lambda c: raw.LRN(input=c.ph(c.arr([1, 2, 3, 7])), depth_radius=2, bias=1.0, alpha=0.5,
                                  beta=0.75), **NN_TOL)
case("lrn_defaults_f32", lambda c: raw.LRN(input=c.ph(c.arr([2, 2, 2, 4]))), **NN_TOL)
for op in ["Softmax", "LogSoftmax"]:
    case("%s_2d_f32" % op.lower(), lambda c, op=op: getattr(raw, op)(logits=c.ph(c.arr([3, 5], lo=-5, hi=5))),
         **NN_TOL)
    case("%s_3d_f32" % op.lower(), lambda c, op=op: getattr(raw, op)(logits=c.ph(c.arr([2, 2, 4]))), **NN_TOL)
    case("%s_large_f32" % op.lower(), lambda c, op=op: getattr(raw, op)(
        logits=c.ph(np.array([[1000.0, 0.0, -1000.0], [50, 50, 50]], np.float32))), **NN_TOL)
    case("%s_f16" % op.lower(), lambda c, op=op: getattr(raw, op)(logits=c.ph(c.arr([2, 5], "f16"))), dt="f16")
    case("%s_f64" % op.lower(), lambda c, op=op: getattr(raw, op)(logits=c.ph(c.arr([2, 5], "f64"))), dt="f64")
ACT = {
    "Relu": ["f32", "f64", "f16", "bf16", "i32", "i64"],
    "Relu6": ["f32", "f64", "f16", "i32"],
    "Elu": ["f32", "f64", "f16"],
    "Selu": ["f32", "f64", "f16"],
    "Softplus": ["f32", "f64", "f16"],
    "Softsign": ["f32", "f64", "f16"],
}
for op, dts in ACT.items():
    for dt in dts:
        case("%s_%s" % (op.lower(), dt), lambda c, op=op, dt=dt: getattr(raw, op)(
            features=c.ph(c.arr([3, 5], dt, -8, 8))), dt=dt,
             **({} if dt != "f32" else NN_TOL))
case("softplus_large_f32", lambda c: raw.Softplus(
    features=c.ph(np.array([-100.0, -20.0, 0.0, 20.0, 100.0], np.float32))), **NN_TOL)
for dt in ["f32", "f64", "f16"]:
    case("leakyrelu_%s" % dt, lambda c, dt=dt: raw.LeakyRelu(features=c.ph(c.arr([4, 3], dt)), alpha=0.1),
         dt=dt)
case("leakyrelu_default_alpha_f32", lambda c: raw.LeakyRelu(features=c.ph(c.arr([6]))))
for fmt in ["NHWC", "NCHW"]:
    for dt in ["f32", "f16", "i32"]:
        case("biasadd_%s_%s" % (fmt.lower(), dt), lambda c, fmt=fmt, dt=dt: raw.BiasAdd(
            value=c.ph(c.arr([2, 3, 2, 4] if fmt == "NHWC" else [2, 4, 3, 2], dt, -5, 5)),
            bias=c.ph(c.arr([4], dt, -5, 5)), data_format=fmt), dt=dt)
case("biasadd_2d_f32", lambda c: raw.BiasAdd(value=c.ph(c.arr([3, 5])), bias=c.ph(c.arr([5]))))
case("biasaddv1_f32", lambda c: raw.BiasAddV1(value=c.ph(c.arr([3, 5])), bias=c.ph(c.arr([5]))))
for dt in ["f32", "f64", "f16"]:
    case("l2loss_%s" % dt, lambda c, dt=dt: raw.L2Loss(t=c.ph(c.arr([3, 4], dt))), dt=dt)
case("l2loss_empty_f32", lambda c: raw.L2Loss(t=c.ph(np.zeros([0, 2], np.float32))))
for tdt in ["i32", "i64"]:
    case("intopkv2_%s" % tdt, lambda c, tdt=tdt: raw.InTopKV2(
        predictions=c.ph(c.arr([4, 5])), targets=c.ph(np.array([0, 4, 2, 1]), tdt),
        k=c.ph(np.array(2), tdt)))
case("intopkv2_ties", lambda c: raw.InTopKV2(
    predictions=c.ph(np.array([[1, 2, 2, 0], [3, 3, 3, 3]], np.float32)), targets=c.ph(np.array([1, 3], np.int32)),
    k=c.ph(np.int32(1))))
case("intopkv2_nonfinite", lambda c: raw.InTopKV2(
    predictions=c.ph(np.array([[np.nan, 1, 2], [0, np.inf, 1]], np.float32)),
    targets=c.ph(np.array([0, 1], np.int32)), k=c.ph(np.int32(2))))
case("intopkv2_out_of_range_target", lambda c: raw.InTopKV2(
    predictions=c.ph(c.arr([2, 3])), targets=c.ph(np.array([0, 5], np.int32)), k=c.ph(np.int32(1))))
for dt in ["f32", "i32", "f64", "f16"]:
    case("topkv2_%s" % dt, lambda c, dt=dt: list(raw.TopKV2(input=c.ph(c.arr([3, 6], dt, -9, 9)),
                                                           k=C(3), sorted=True)), dt=dt)
case("topkv2_ties_f32", lambda c: list(raw.TopKV2(
    input=c.ph(np.array([[1, 3, 3, 2, 3], [0, 0, 0, 0, 0]], np.float32)), k=C(4))))
case("topkv2_k0_f32", lambda c: list(raw.TopKV2(input=c.ph(c.arr([2, 4])), k=C(0))))
case("topkv2_1d_i64k_f32", lambda c: list(raw.TopKV2(input=c.ph(c.arr([7])), k=C(np.int64(7)))))
case("topkv2_k_too_large", lambda c: list(raw.TopKV2(input=c.ph(c.arr([2, 3])), k=c.ph(np.int32(4)))),
     expect_error="InvalidArgument")

# --- losses -----------------------------------------------------------------------------
for dt in ["f32", "f64", "f16"]:
    def f(c, dt=dt):
        logits = c.arr([4, 5], dt)
        lab = c.rng.random([4, 5])
        lab = (lab / lab.sum(1, keepdims=True)).astype(np_dtype(dt))
        return list(raw.SoftmaxCrossEntropyWithLogits(features=c.ph(logits), labels=c.ph(lab)))
    case("softmaxxent_%s" % dt, f, dt=dt, **({} if dt != "f32" else NN_TOL))
case("softmaxxent_bcast_f32", lambda c: list(raw.SoftmaxCrossEntropyWithLogits(
    features=c.ph(c.arr([3, 4])), labels=c.ph(np.array([[0, 1, 0, 0]], np.float32)))), **NN_TOL)
for ldt in ["i32", "i64"]:
    case("sparsesoftmaxxent_%s_f32" % ldt, lambda c, ldt=ldt: list(raw.SparseSoftmaxCrossEntropyWithLogits(
        features=c.ph(c.arr([4, 5], lo=-4, hi=4)), labels=c.ph(np.array([0, 4, 2, 2]), ldt))), **NN_TOL)
case("sparsesoftmaxxent_f64", lambda c: list(raw.SparseSoftmaxCrossEntropyWithLogits(
    features=c.ph(c.arr([3, 4], "f64")), labels=c.ph(np.array([3, 0, 1], np.int64)))), dt="f64")
case("sparsesoftmaxxent_bad_label", lambda c: list(raw.SparseSoftmaxCrossEntropyWithLogits(
    features=c.ph(c.arr([2, 3])), labels=c.ph(np.array([0, 3], np.int32)))), expect_error="InvalidArgument")

# --- array ------------------------------------------------------------------------------
for dt in ["f32", "i32", "bool", "i64", "f16", "u8"]:
    case("identity_%s" % dt, lambda c, dt=dt: raw.Identity(input=c.ph(c.arr([2, 3], dt, 0, 9))), dt=dt)
case("identity_scalar_f32", lambda c: raw.Identity(input=c.ph(np.float32(1.5))))
case("identity_empty_f32", lambda c: raw.Identity(input=c.ph(np.zeros([3, 0, 2], np.float32))))
case("identityn_mixed", lambda c: list(raw.IdentityN(
    input=[c.ph(c.arr([2])), c.ph(c.arr([3], "i64", 0, 9)), c.ph(c.arr([], "bool"))])))
case("stopgradient_f32", lambda c: raw.StopGradient(input=c.ph(c.arr([3]))))
case("preventgradient_f32", lambda c: raw.PreventGradient(input=c.ph(c.arr([3])), message="no"))
case("snapshot_f32", lambda c: raw.Snapshot(input=c.ph(c.arr([2, 2]))))
case("snapshot_i32", lambda c: raw.Snapshot(input=c.ph(c.arr([4], "i32", -5, 5))))

case("reshape_minus1_f32", lambda c: raw.Reshape(tensor=c.ph(c.arr([2, 3, 4])), shape=C([4, -1])))
case("reshape_i64shape_i32", lambda c: raw.Reshape(tensor=c.ph(c.arr([6], "i32", 0, 9)),
                                                   shape=C([3, 1, 2], "i64")))
case("reshape_to_scalar_f32", lambda c: raw.Reshape(tensor=c.ph(c.arr([1, 1])), shape=C([], "i32")))
case("reshape_scalar_to_1_f32", lambda c: raw.Reshape(tensor=c.ph(np.float32(3)), shape=C([1, -1])))
case("reshape_empty_f32", lambda c: raw.Reshape(tensor=c.ph(np.zeros([0, 4], np.float32)), shape=C([2, 0, -1])))
case("reshape_fed_shape_f32", lambda c: raw.Reshape(tensor=c.ph(c.arr([2, 6])), shape=c.ph(np.array([3, -1], np.int32))))
case("reshape_bad_size_f32", lambda c: raw.Reshape(tensor=c.ph(c.arr([2, 3])), shape=c.ph(np.array([4, -1], np.int32))),
     expect_error="InvalidArgument")
case("squeeze_all_f32", lambda c: raw.Squeeze(input=c.ph(c.arr([1, 3, 1, 2]))))
case("squeeze_axes_f32", lambda c: raw.Squeeze(input=c.ph(c.arr([1, 3, 1, 2])), axis=[0]))
case("squeeze_neg_axis_i32", lambda c: raw.Squeeze(input=c.ph(c.arr([1, 3, 1, 2], "i32")), axis=[-2]))
case("squeeze_to_scalar_f32", lambda c: raw.Squeeze(input=c.ph(c.arr([1, 1]))))
case("expanddims_0_f32", lambda c: raw.ExpandDims(input=c.ph(c.arr([2, 3])), axis=C(0)))
case("expanddims_neg1_f32", lambda c: raw.ExpandDims(input=c.ph(c.arr([2, 3])), axis=C(-1)))
case("expanddims_i64axis_bool", lambda c: raw.ExpandDims(input=c.ph(c.arr([2, 3], "bool")), axis=C(np.int64(1))))
case("expanddims_scalar_f32", lambda c: raw.ExpandDims(input=c.ph(np.float32(2)), axis=C(-1)))
case("expanddims_vec_axis_f32", lambda c: raw.ExpandDims(input=c.ph(c.arr([3])), axis=C([1])))
case("transpose_f32", lambda c: raw.Transpose(x=c.ph(c.arr([2, 3, 4])), perm=C([2, 0, 1])))
case("transpose_i64perm_i32", lambda c: raw.Transpose(x=c.ph(c.arr([2, 3], "i32", 0, 9)), perm=C([1, 0], "i64")))
case("transpose_4d_f16", lambda c: raw.Transpose(x=c.ph(c.arr([2, 1, 3, 2], "f16")), perm=C([0, 3, 1, 2])), dt="f16")
case("transpose_empty_f32", lambda c: raw.Transpose(x=c.ph(np.zeros([0, 3], np.float32)), perm=C([1, 0])))
case("transpose_scalar_f32", lambda c: raw.Transpose(x=c.ph(np.float32(4)), perm=C([], "i32")))
case("transpose_fed_perm_f32", lambda c: raw.Transpose(x=c.ph(c.arr([2, 3, 4])),
                                                       perm=c.ph(np.array([1, 2, 0], np.int32))))
case("concatv2_axis0_f32", lambda c: raw.ConcatV2(values=[c.ph(c.arr([2, 3])), c.ph(c.arr([1, 3]))], axis=C(0)))
case("concatv2_neg_axis_i32", lambda c: raw.ConcatV2(
    values=[c.ph(c.arr([2, 1], "i32", 0, 9)), c.ph(c.arr([2, 3], "i32", 0, 9)), c.ph(c.arr([2, 2], "i32", 0, 9))],
    axis=C(-1)))
case("concatv2_empty_input_f32", lambda c: raw.ConcatV2(
    values=[c.ph(np.zeros([2, 0], np.float32)), c.ph(c.arr([2, 2]))], axis=C(1)))
case("concatv2_i64axis_bool", lambda c: raw.ConcatV2(
    values=[c.ph(c.arr([1, 2], "bool")), c.ph(c.arr([2, 2], "bool"))], axis=C(np.int64(0))))
case("concatv2_scalars_to_vec_f32", lambda c: raw.ConcatV2(
    values=[c.ph(c.arr([1])), c.ph(c.arr([2]))], axis=C(0)))
case("concat_legacy_f32", lambda c: raw.Concat(concat_dim=C(1), values=[c.ph(c.arr([2, 1])), c.ph(c.arr([2, 2]))]))
case("split_axis1_f32", lambda c: list(raw.Split(axis=C(1), value=c.ph(c.arr([2, 6])), num_split=3)))
case("split_neg_axis_i32", lambda c: list(raw.Split(axis=C(-1), value=c.ph(c.arr([2, 2, 4], "i32")), num_split=2)))
case("split_one_f32", lambda c: list(raw.Split(axis=C(0), value=c.ph(c.arr([2, 2])), num_split=1)))
case("splitv_f32", lambda c: list(raw.SplitV(value=c.ph(c.arr([2, 7])), size_splits=C([1, 4, 2]),
                                             axis=C(1), num_split=3)))
case("splitv_minus1_i64_f32", lambda c: list(raw.SplitV(value=c.ph(c.arr([6, 2])), size_splits=C([2, -1, 1], "i64"),
                                                        axis=C(-2), num_split=3)))
case("splitv_zero_size_f32", lambda c: list(raw.SplitV(value=c.ph(c.arr([4])), size_splits=C([0, 4]),
                                                       axis=C(0), num_split=2)))
case("pack_axis0_f32", lambda c: raw.Pack(values=[c.ph(c.arr([3])) for _ in range(3)]))
case("pack_neg_axis_i32", lambda c: raw.Pack(values=[c.ph(c.arr([2, 3], "i32")) for _ in range(2)], axis=-1))
case("pack_scalars_i64", lambda c: raw.Pack(values=[c.ph(np.int64(i)) for i in range(4)]))
case("pack_axis1_bool", lambda c: raw.Pack(values=[c.ph(c.arr([2, 2], "bool")) for _ in range(3)], axis=1))
case("unpack_axis0_f32", lambda c: list(raw.Unpack(value=c.ph(c.arr([3, 2])), num=3)))
case("unpack_neg_axis_i32", lambda c: list(raw.Unpack(value=c.ph(c.arr([2, 3, 2], "i32")), num=2, axis=-1)))
case("unpack_axis1_f32", lambda c: list(raw.Unpack(value=c.ph(c.arr([2, 3])), num=3, axis=1)))
case("slice_f32", lambda c: raw.Slice(input=c.ph(c.arr([3, 4, 5])), begin=C([1, 0, 2]), size=C([2, -1, 2])))
case("slice_i64_i32", lambda c: raw.Slice(input=c.ph(c.arr([4, 4], "i32")), begin=C([1, 1], "i64"),
                                         size=C([2, 3], "i64")))
case("slice_empty_f32", lambda c: raw.Slice(input=c.ph(c.arr([3, 4])), begin=C([1, 1]), size=C([0, 2])))
case("slice_fed_begin_f32", lambda c: raw.Slice(input=c.ph(c.arr([4, 3])), begin=c.ph(np.array([2, 1], np.int32)),
                                               size=C([-1, 2])))
case("slice_out_of_bounds_f32", lambda c: raw.Slice(input=c.ph(c.arr([3, 3])),
                                                   begin=c.ph(np.array([2, 0], np.int32)), size=C([2, 1])),
     expect_error="InvalidArgument")


def ss(name, shape, begin, end, strides, dt="f32", **masks):
    case(name, lambda c: raw.StridedSlice(input=c.ph(c.arr(shape, dt, -9, 9)), begin=C(begin), end=C(end),
                                          strides=C(strides), **masks))


ss("stridedslice_basic_f32", [5, 6], [1, 0], [4, 6], [1, 2])
ss("stridedslice_neg_stride_f32", [6], [-1], [0], [-1])
ss("stridedslice_neg_stride_full_f32", [6], [0], [0], [-1], begin_mask=1, end_mask=1)
ss("stridedslice_begin_end_mask_i32", [4, 5], [2, 3], [0, 0], [1, 1], dt="i32", begin_mask=1, end_mask=2)
ss("stridedslice_shrink_f32", [3, 4, 2], [1, 0, 0], [2, 4, 2], [1, 1, 1], shrink_axis_mask=1)
ss("stridedslice_shrink_neg_f32", [3, 4], [0, -1], [0, 0], [1, 1], begin_mask=1, end_mask=1, shrink_axis_mask=2)
ss("stridedslice_ellipsis_f32", [2, 3, 4], [0, 1], [0, 3], [1, 1], ellipsis_mask=1)
ss("stridedslice_new_axis_f32", [3, 4], [0, 0, 1], [0, 0, 3], [1, 1, 1], new_axis_mask=1, begin_mask=2, end_mask=2)
ss("stridedslice_ellipsis_newaxis_f32", [2, 3], [0, 0], [0, 0], [1, 1], ellipsis_mask=1, new_axis_mask=2)
ss("stridedslice_clamp_f32", [5], [-10], [10], [2])
ss("stridedslice_empty_result_f32", [5], [3], [1], [1])
ss("stridedslice_scalar_shrink_i64", [4], [2], [3], [1], dt="i64", shrink_axis_mask=1)
case("stridedslice_i64_indices_f32", lambda c: raw.StridedSlice(
    input=c.ph(c.arr([4, 4])), begin=C([3, 0], "i64"), end=C([0, 4], "i64"), strides=C([-1, 3], "i64")))
case("stridedslice_fed_begin_f32", lambda c: raw.StridedSlice(
    input=c.ph(c.arr([5, 3])), begin=c.ph(np.array([1, 0], np.int32)), end=C([4, 3]), strides=C([2, 1])))

case("gather_legacy_f32", lambda c: raw.Gather(params=c.ph(c.arr([5, 3])), indices=c.ph(np.array([[4, 0], [2, 2]], np.int32))))
case("gatherv2_axis0_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([5, 3])), indices=c.ph(np.array([4, 0, 1], np.int32)),
                                                  axis=C(0)))
case("gatherv2_axis1_i64idx_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([2, 5, 3])),
                                                         indices=c.ph(np.array([[4, 0], [1, 1]], np.int64)), axis=C(1)))
case("gatherv2_neg_axis_i32", lambda c: raw.GatherV2(params=c.ph(c.arr([3, 4], "i32")),
                                                     indices=c.ph(np.array([3, 0], np.int32)), axis=C(-1)))
case("gatherv2_i64axis_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([3, 4])),
                                                    indices=c.ph(np.array([2], np.int64)), axis=C(np.int64(0))))
case("gatherv2_scalar_index_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([4, 3])),
                                                         indices=c.ph(np.int32(2)), axis=C(0)))
case("gatherv2_batch_dims1_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([2, 5, 3])),
                                                        indices=c.ph(np.array([[0, 4], [3, 3]], np.int32)),
                                                        axis=C(1), batch_dims=1))
case("gatherv2_batch_dims_neg_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([2, 4])),
                                                           indices=c.ph(np.array([[3, 0, 1], [2, 2, 0]], np.int64)),
                                                           axis=C(-1), batch_dims=-1))
case("gatherv2_empty_indices_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([4, 3])),
                                                          indices=c.ph(np.zeros([0], np.int32)), axis=C(0)))
case("gatherv2_bool", lambda c: raw.GatherV2(params=c.ph(c.arr([5], "bool")),
                                             indices=c.ph(np.array([1, 1, 4], np.int32)), axis=C(0)))
case("gatherv2_out_of_range", lambda c: raw.GatherV2(params=c.ph(c.arr([3, 2])),
                                                     indices=c.ph(np.array([0, 3], np.int32)), axis=C(0)),
     expect_error="InvalidArgument")
case("gatherv2_negative_index", lambda c: raw.GatherV2(params=c.ph(c.arr([3, 2])),
                                                       indices=c.ph(np.array([-1], np.int64)), axis=C(0)),
     expect_error="InvalidArgument")
case("gatherv2_out_of_range_i64", lambda c: raw.GatherV2(params=c.ph(c.arr([2, 3])),
                                                         indices=c.ph(np.array([[0, 5]], np.int64)), axis=C(1)),
     expect_error="InvalidArgument")
case("gathernd_full_f32", lambda c: raw.GatherNd(params=c.ph(c.arr([3, 4])),
                                                 indices=c.ph(np.array([[0, 1], [2, 3], [1, 0]], np.int32))))
case("gathernd_slices_i64_f32", lambda c: raw.GatherNd(params=c.ph(c.arr([3, 4, 2])),
                                                       indices=c.ph(np.array([[[2]], [[0]]], np.int64))))
case("gathernd_i32params", lambda c: raw.GatherNd(params=c.ph(c.arr([2, 2, 3], "i32")),
                                                  indices=c.ph(np.array([[1, 0], [0, 1]], np.int32))))
case("gathernd_out_of_range", lambda c: raw.GatherNd(params=c.ph(c.arr([2, 2])),
                                                     indices=c.ph(np.array([[0, 2]], np.int32))),
     expect_error="InvalidArgument")
case("scatternd_f32", lambda c: raw.ScatterNd(indices=c.ph(np.array([[0], [2], [0]], np.int32)),
                                              updates=c.ph(c.arr([3, 4])), shape=C([4, 4])))
case("scatternd_elements_i64_i32", lambda c: raw.ScatterNd(indices=c.ph(np.array([[0, 1], [2, 2]], np.int64)),
                                                           updates=c.ph(np.array([5, -3], np.int32)),
                                                           shape=C([3, 3], "i64")))
case("scatternd_out_of_range", lambda c: raw.ScatterNd(indices=c.ph(np.array([[4]], np.int32)),
                                                       updates=c.ph(c.arr([1, 2])), shape=C([3, 2])),
     expect_error="InvalidArgument")
case("onehot_f32", lambda c: raw.OneHot(indices=c.ph(np.array([0, 2, -1, 1], np.int32)), depth=C(3),
                                        on_value=C(np.float32(1.0)), off_value=C(np.float32(0.0))))
case("onehot_axis0_i64", lambda c: raw.OneHot(indices=c.ph(np.array([[1, 3], [0, 5]], np.int64)), depth=C(4),
                                              on_value=C(np.int32(7)), off_value=C(np.int32(-1)), axis=0))
case("onehot_fed_values_f32", lambda c: raw.OneHot(indices=c.ph(np.array([1, 0], np.int32)), depth=c.ph(np.int32(3)),
                                                   on_value=c.ph(np.float32(2.5)), off_value=c.ph(np.float32(-0.5)),
                                                   axis=-1))
case("onehot_scalar_bool", lambda c: raw.OneHot(indices=c.ph(np.int32(2)), depth=C(4),
                                                on_value=C(True), off_value=C(False)))
case("tile_f32", lambda c: raw.Tile(input=c.ph(c.arr([2, 3])), multiples=C([2, 1])))
case("tile_i64mult_i32", lambda c: raw.Tile(input=c.ph(c.arr([1, 2, 2], "i32")), multiples=C([3, 1, 2], "i64")))
case("tile_zero_f32", lambda c: raw.Tile(input=c.ph(c.arr([2])), multiples=C([0])))
case("tile_bool", lambda c: raw.Tile(input=c.ph(c.arr([2, 1], "bool")), multiples=C([1, 3])))
case("pad_f32", lambda c: raw.Pad(input=c.ph(c.arr([2, 3])), paddings=C([[1, 0], [2, 1]])))
case("pad_i64_i32", lambda c: raw.Pad(input=c.ph(c.arr([2, 2], "i32")), paddings=C([[0, 1], [1, 1]], "i64")))
case("pad_scalar_f32", lambda c: raw.Pad(input=c.ph(np.float32(1)), paddings=C(np.zeros([0, 2], np.int32))))
case("padv2_f32", lambda c: raw.PadV2(input=c.ph(c.arr([2, 2])), paddings=C([[1, 1], [0, 2]]),
                                      constant_values=C(np.float32(-7))))
case("padv2_fed_value_i32", lambda c: raw.PadV2(input=c.ph(c.arr([3], "i32")), paddings=C([[2, 1]]),
                                                constant_values=c.ph(np.int32(9))))
for mode in ["REFLECT", "SYMMETRIC"]:
    case("mirrorpad_%s_f32" % mode.lower(), lambda c, mode=mode: raw.MirrorPad(
        input=c.ph(c.arr([3, 4])), paddings=C([[1, 2], [2, 1]]), mode=mode))
    case("mirrorpad_%s_i32_i64pad" % mode.lower(), lambda c, mode=mode: raw.MirrorPad(
        input=c.ph(c.arr([1, 3, 3, 1], "i32")), paddings=C([[0, 0], [1, 1], [2, 0], [0, 0]], "i64"), mode=mode))
case("fill_f32", lambda c: raw.Fill(dims=C([2, 3]), value=c.ph(np.float32(1.5))))
case("fill_i64dims_i32", lambda c: raw.Fill(dims=C([3], "i64"), value=c.ph(np.int32(-4))))
case("fill_fed_dims_bool", lambda c: raw.Fill(dims=c.ph(np.array([2, 0, 2], np.int32)), value=C(True)))
case("fill_scalar_f32", lambda c: raw.Fill(dims=C([], "i32"), value=c.ph(np.float32(2))))
for dt in ["f32", "i32", "bool", "f16"]:
    case("zeroslike_%s" % dt, lambda c, dt=dt: raw.ZerosLike(x=c.ph(c.arr([2, 3], dt))))
    case("oneslike_%s" % dt, lambda c, dt=dt: raw.OnesLike(x=c.ph(c.arr([3, 1], dt))))
case("zeroslike_empty_f32", lambda c: raw.ZerosLike(x=c.ph(np.zeros([0, 2], np.float32))))
case("shape_f32", lambda c: raw.Shape(input=c.ph(c.arr([2, 3, 4]))))
case("shape_i64out", lambda c: raw.Shape(input=c.ph(c.arr([2, 0], "i32")), out_type=tf.int64))
case("shape_scalar", lambda c: raw.Shape(input=c.ph(np.float32(1))))
case("shapen", lambda c: list(raw.ShapeN(input=[c.ph(c.arr([2, 3])), c.ph(c.arr([4])), c.ph(np.float32(1))])))
case("shapen_i64", lambda c: list(raw.ShapeN(input=[c.ph(c.arr([1, 2], "i32")), c.ph(c.arr([5], "i32"))],
                                             out_type=tf.int64)))
case("size_f32", lambda c: raw.Size(input=c.ph(c.arr([2, 3, 4]))))
case("size_empty_i64out", lambda c: raw.Size(input=c.ph(np.zeros([3, 0], np.float32)), out_type=tf.int64))
case("rank_f32", lambda c: raw.Rank(input=c.ph(c.arr([2, 3, 4]))))
case("rank_scalar_bool", lambda c: raw.Rank(input=c.ph(np.array(True))))

CASTS = [
    ("f32", "i32", np.array([-2.7, -0.5, 0.0, 0.9, 3.99, 123456.7], np.float32)),
    ("f32", "i64", np.array([-2.7, -0.5, 0.0, 0.9, 3.99, 1e10], np.float32)),
    ("f32", "bool", np.array([0.0, -0.0, 0.1, -3, np.nan, np.inf], np.float32)),
    ("bool", "f32", np.array([True, False, True])),
    ("bool", "i32", np.array([True, False, True])),
    ("i32", "bool", np.array([0, -1, 2, 0], np.int32)),
    ("i64", "i32", np.array([2 ** 31, -(2 ** 31) - 1, 2 ** 40 + 5, -7], np.int64)),
    ("i32", "u8", np.array([-1, 256, 300, 7], np.int32)),
    ("u8", "i32", np.array([0, 128, 255], np.uint8)),
    ("i32", "f32", np.array([16777217, -3, 0], np.int32)),
    ("i64", "f64", np.array([2 ** 53 + 1, -5], np.int64)),
    ("f64", "f32", np.array([1e-50, 1.0000001, 3.4e39, -2.5], np.float64)),
    ("f32", "f64", np.array([0.1, -3.5], np.float32)),
    ("f32", "f16", np.array([0.1, 65504, 70000, 1e-8, -2.5], np.float32)),
    ("f16", "f32", np.array([0.1, 65504, -2.5], np.float16)),
    ("f32", "bf16", np.array([0.1, 1.00390625, 3e38, -2.5], np.float32)),
    ("bf16", "f32", np.array([0.1, 1.5, -2.5], np.float32)),
    ("i32", "i64", np.array([-2 ** 31, 5], np.int32)),
    ("f16", "i32", np.array([-2.5, 7.9], np.float16)),
    ("f32", "u8", np.array([0.0, 1.5, 200.9], np.float32)),
    ("i32", "f16", np.array([1, -2049, 3000], np.int32)),
]
for src, dst, vals in CASTS:
    case("cast_%s_to_%s" % (src, dst), lambda c, src=src, dst=dst, vals=vals: raw.Cast(
        x=c.ph(vals.astype(np_dtype(src)) if src == "bf16" else vals), DstT=DT[dst][0]), dt=dst)
case("cast_truncate_flag_f32_to_i32", lambda c: raw.Cast(x=c.ph(np.array([-1.5, 2.5], np.float32)),
                                                         DstT=tf.int32, Truncate=True))
case("cast_empty_f32_to_i32", lambda c: raw.Cast(x=c.ph(np.zeros([0, 2], np.float32)), DstT=tf.int32))
case("where_bool_2d", lambda c: raw.Where(condition=c.ph(np.array([[True, False], [False, True], [True, True]]))))
case("where_f32_3d", lambda c: raw.Where(condition=c.ph(np.array([[[0, 1.5], [0, 0]], [[-2, 0], [0, 0.1]]], np.float32))))
case("where_i32_1d", lambda c: raw.Where(condition=c.ph(np.array([0, 3, 0, -1], np.int32))))
case("where_none_true", lambda c: raw.Where(condition=c.ph(np.zeros([2, 3], bool))))
case("where_scalar", lambda c: raw.Where(condition=c.ph(np.array(True))))
case("reversev2_f32", lambda c: raw.ReverseV2(tensor=c.ph(c.arr([2, 3, 4])), axis=C([-1])))
case("reversev2_multi_i64axis_i32", lambda c: raw.ReverseV2(tensor=c.ph(c.arr([2, 3, 2], "i32")), axis=C([0, 2], "i64")))
case("reversev2_empty_axes_f32", lambda c: raw.ReverseV2(tensor=c.ph(c.arr([3])), axis=C([], "i32")))
case("reversev2_bool", lambda c: raw.ReverseV2(tensor=c.ph(c.arr([4], "bool")), axis=C([0])))
case("broadcastto_f32", lambda c: raw.BroadcastTo(input=c.ph(c.arr([3, 1])), shape=C([2, 3, 4])))
case("broadcastto_i64shape_i32", lambda c: raw.BroadcastTo(input=c.ph(c.arr([1], "i32")), shape=C([2, 2], "i64")))
case("broadcastto_scalar_bool", lambda c: raw.BroadcastTo(input=c.ph(np.array(True)), shape=C([3])))
case("broadcastto_fed_shape_f32", lambda c: raw.BroadcastTo(input=c.ph(c.arr([2])), shape=c.ph(np.array([3, 2], np.int32))))
case("broadcastargs_i32", lambda c: raw.BroadcastArgs(s0=c.ph(np.array([2, 1, 3], np.int32)),
                                                      s1=c.ph(np.array([4, 1], np.int32))))
case("broadcastargs_i64", lambda c: raw.BroadcastArgs(s0=c.ph(np.array([5], np.int64)),
                                                      s1=c.ph(np.array([], np.int64))))
case("broadcastargs_incompatible", lambda c: raw.BroadcastArgs(s0=c.ph(np.array([2, 3], np.int32)),
                                                               s1=c.ph(np.array([4], np.int32))),
     expect_error="InvalidArgument")
case("checknumerics_ok_f32", lambda c: raw.CheckNumerics(tensor=c.ph(c.arr([3])), message="bad"))
case("checknumerics_nan_f32", lambda c: raw.CheckNumerics(tensor=c.ph(np.array([1.0, np.nan], np.float32)),
                                                          message="bad"), expect_error="InvalidArgument")
case("checknumerics_inf_f64", lambda c: raw.CheckNumerics(tensor=c.ph(np.array([np.inf], np.float64)),
                                                          message="bad"), expect_error="InvalidArgument")
case("placeholderwithdefault_default_f32", lambda c: raw.PlaceholderWithDefault(
    input=C(np.array([1.0, 2.0], np.float32)), shape=[2]) * c.ph(np.float32(3)))
case("placeholderwithdefault_fed_f32", lambda c: raw.PlaceholderWithDefault(
    input=C(np.array([[1.0, 2.0]], np.float32)), shape=[None, 2], name="x")
     if not c.inputs.append(("x", np.array([[5.0, 6.0], [7.0, 8.0]], np.float32))) else None)


# --- more edge cases and errors ---------------------------------------------------------
def i32(v):
    return np.array(v, np.int32)


def e(name, fn):
    case(name, fn, expect_error="InvalidArgument")


e("sum_duplicate_axes", lambda c: raw.Sum(input=c.ph(c.arr([2, 3])), axis=c.ph(i32([0, -2]))))
e("sum_axis_out_of_range", lambda c: raw.Sum(input=c.ph(c.arr([2, 3])), axis=c.ph(i32([2]))))
e("max_axis_out_of_range_neg", lambda c: raw.Max(input=c.ph(c.arr([2, 3])), axis=c.ph(i32([-3]))))
case("sum_fed_axes_f32", lambda c: raw.Sum(input=c.ph(c.arr([2, 3, 4])), axis=c.ph(i32([2, 0])), keep_dims=True))
case("mean_fed_axes_i64_f32", lambda c: raw.Mean(input=c.ph(c.arr([2, 3, 4])), axis=c.ph(np.array([-1], np.int64))))
case("max_empty_input_i64", lambda c: raw.Max(input=c.ph(np.zeros([0, 2], np.int64)), axis=C([0])))
case("min_empty_input_f16", lambda c: raw.Min(input=c.ph(np.zeros([2, 0], np.float16)), axis=C([1])), dt="f16")
case("prod_empty_input_i32", lambda c: raw.Prod(input=c.ph(np.zeros([0], np.int32)), axis=C([0])))
case("mean_i64_keep", lambda c: raw.Mean(input=c.ph(c.arr([2, 3], "i64", -9, 9)), axis=C([0]), keep_dims=True))
e("argmax_empty_axis", lambda c: raw.ArgMax(input=c.ph(np.zeros([0, 3], np.float32)), dimension=c.ph(np.int32(0))))
case("argmax_empty_other_axis", lambda c: raw.ArgMax(input=c.ph(np.zeros([0, 3], np.float32)), dimension=C(1)))
case("argmax_nan_f32", lambda c: raw.ArgMax(input=c.ph(np.array([[1, np.nan, 3], [np.nan, 0, 0]], np.float32)),
                                           dimension=C(1)))
e("transpose_bad_perm", lambda c: raw.Transpose(x=c.ph(c.arr([2, 3])), perm=c.ph(i32([0, 0]))))
e("transpose_perm_out_of_range", lambda c: raw.Transpose(x=c.ph(c.arr([2, 3])), perm=c.ph(i32([0, 2]))))
case("transpose_neg_perm_f32", lambda c: raw.Transpose(x=c.ph(c.arr([2, 3])), perm=c.ph(i32([-1, 0]))))
e("concatv2_shape_mismatch", lambda c: raw.ConcatV2(values=[c.ph(c.arr([2, 3])), c.ph(c.arr([3, 2]))],
                                                    axis=c.ph(np.int32(0))))
e("concatv2_axis_out_of_range", lambda c: raw.ConcatV2(values=[c.ph(c.arr([2, 3])), c.ph(c.arr([2, 3]))],
                                                       axis=c.ph(np.int32(2))))
case("concatv2_fed_axis_f32", lambda c: raw.ConcatV2(values=[c.ph(c.arr([2, 3])), c.ph(c.arr([2, 1]))],
                                                     axis=c.ph(np.int32(-1))))
case("concatv2_all_empty_f32", lambda c: raw.ConcatV2(values=[c.ph(np.zeros([0, 3], np.float32)),
                                                              c.ph(np.zeros([0, 3], np.float32))], axis=C(0)))
e("split_not_divisible", lambda c: list(raw.Split(axis=c.ph(np.int32(1)), value=c.ph(c.arr([2, 5])), num_split=2)))
e("splitv_bad_sizes", lambda c: list(raw.SplitV(value=c.ph(c.arr([5])), size_splits=c.ph(i32([2, 2])),
                                                axis=C(0), num_split=2)))
case("split_fed_axis_f32", lambda c: list(raw.Split(axis=c.ph(np.int32(0)), value=c.ph(c.arr([4, 2])), num_split=2)))
case("split_empty_f32", lambda c: list(raw.Split(axis=C(1), value=c.ph(np.zeros([0, 4], np.float32)), num_split=2)))
e("expanddims_axis_out_of_range", lambda c: raw.ExpandDims(input=c.ph(c.arr([2, 3])), axis=c.ph(np.int32(4))))
case("expanddims_fed_axis_f32", lambda c: raw.ExpandDims(input=c.ph(c.arr([2, 3])), axis=c.ph(np.int32(-2))))
case("expanddims_empty_f32", lambda c: raw.ExpandDims(input=c.ph(np.zeros([0, 2], np.float32)), axis=C(1)))
case("squeeze_empty_f32", lambda c: raw.Squeeze(input=c.ph(np.zeros([0, 1, 2], np.float32))))
e("tile_negative_multiple", lambda c: raw.Tile(input=c.ph(c.arr([2])), multiples=c.ph(i32([-1]))))
case("tile_fed_multiples_f32", lambda c: raw.Tile(input=c.ph(c.arr([2, 1])), multiples=c.ph(i32([2, 3]))))
case("tile_empty_input_f32", lambda c: raw.Tile(input=c.ph(np.zeros([0, 2], np.float32)), multiples=C([3, 2])))
e("onehot_negative_depth", lambda c: raw.OneHot(indices=c.ph(i32([0])), depth=c.ph(np.int32(-1)),
                                                on_value=C(np.float32(1)), off_value=C(np.float32(0))))
case("onehot_depth0_f32", lambda c: raw.OneHot(indices=c.ph(i32([0, 1])), depth=C(0),
                                               on_value=C(np.float32(1)), off_value=C(np.float32(0))))
case("onehot_i64_values_u8idx", lambda c: raw.OneHot(indices=c.ph(np.array([2, 0], np.uint8)), depth=C(3),
                                                     on_value=C(np.int64(5)), off_value=C(np.int64(0))))
e("reshape_two_minus1", lambda c: raw.Reshape(tensor=c.ph(c.arr([2, 3])), shape=c.ph(i32([-1, -1]))))
case("reshape_empty_infer_f32", lambda c: raw.Reshape(tensor=c.ph(np.zeros([0, 3], np.float32)), shape=c.ph(i32([0, -1]))))
e("select_shape_mismatch", lambda c: raw.Select(condition=c.ph(c.arr([2, 3], "bool"), dyn=True),
                                                x=c.ph(c.arr([3, 2])), y=c.ph(c.arr([3, 2]))))
e("add_incompatible_bcast", lambda c: raw.AddV2(x=c.ph(c.arr([2, 3]), dyn=True), y=c.ph(c.arr([2]), dyn=True)))
case("add_dynamic_shapes_f32", lambda c: raw.AddV2(x=c.ph(c.arr([2, 3]), dyn=True), y=c.ph(c.arr([3]), dyn=True)))
case("sum_dynamic_shape_f32", lambda c: raw.Sum(input=c.ph(c.arr([2, 3, 2]), dyn=True), axis=C([1])))
case("reshape_dynamic_shape_f32", lambda c: raw.Reshape(tensor=c.ph(c.arr([2, 3, 2]), dyn=True), shape=C([-1, 4])))
case("gatherv2_dynamic_shape_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([4, 3]), dyn=True),
                                                          indices=c.ph(i32([2, 1]), dyn=True), axis=C(1)))
case("concatv2_dynamic_shape_i32", lambda c: raw.ConcatV2(values=[c.ph(c.arr([2, 3], "i32"), dyn=True),
                                                                  c.ph(c.arr([2, 1], "i32"), dyn=True)], axis=C(-1)))
e("pow_negative_int_exponent", lambda c: raw.Pow(x=c.ph(i32([2, 3])), y=c.ph(i32([1, -1]))))
e("fill_negative_dims", lambda c: raw.Fill(dims=c.ph(i32([2, -1])), value=C(np.float32(0))))
e("reversev2_duplicate_axes", lambda c: raw.ReverseV2(tensor=c.ph(c.arr([2, 3])), axis=c.ph(i32([1, -1]))))
e("broadcastto_incompatible", lambda c: raw.BroadcastTo(input=c.ph(c.arr([3])), shape=c.ph(i32([2, 2]))))
e("stridedslice_zero_stride", lambda c: raw.StridedSlice(input=c.ph(c.arr([4])), begin=C([0]), end=C([2]),
                                                        strides=c.ph(i32([0]))))
e("stridedslice_shrink_out_of_range", lambda c: raw.StridedSlice(
    input=c.ph(c.arr([3])), begin=c.ph(i32([3])), end=C([4]), strides=C([1]), shrink_axis_mask=1))
e("gatherv2_axis_out_of_range", lambda c: raw.GatherV2(params=c.ph(c.arr([3, 2])), indices=c.ph(i32([0])),
                                                       axis=c.ph(np.int32(2))))
e("range_wrong_direction", lambda c: raw.Range(start=c.ph(np.int32(0)), limit=c.ph(np.int32(4)),
                                               delta=c.ph(np.int32(-1))))
e("slice_negative_size", lambda c: raw.Slice(input=c.ph(c.arr([3])), begin=C([0]), size=c.ph(i32([-2]))))
case("range_float_ceil_f32", lambda c: raw.Range(start=c.ph(np.float32(0)), limit=c.ph(np.float32(1)),
                                                 delta=c.ph(np.float32(0.3))))
case("range_neg_f64", lambda c: raw.Range(start=c.ph(np.float64(1)), limit=c.ph(np.float64(-1)),
                                          delta=c.ph(np.float64(-0.5))), dt="f64")
case("gatherv2_batch_dims1_axis2_f32", lambda c: raw.GatherV2(params=c.ph(c.arr([2, 3, 4])),
                                                              indices=c.ph(i32([[3, 0], [1, 1]])),
                                                              axis=C(2), batch_dims=1))
case("gathernd_empty_index_depth_f32", lambda c: raw.GatherNd(params=c.ph(c.arr([2, 2])),
                                                              indices=c.ph(np.zeros([3, 0], np.int32))))
case("gathernd_batched_i64", lambda c: raw.GatherNd(params=c.ph(c.arr([3, 2], "i64", 0, 9)),
                                                    indices=c.ph(np.array([[[0, 1]], [[2, 0]]], np.int64))))
case("scatternd_empty_updates_f32", lambda c: raw.ScatterNd(indices=c.ph(np.zeros([0, 1], np.int32)),
                                                            updates=c.ph(np.zeros([0, 2], np.float32)),
                                                            shape=C([3, 2])))
case("scatternd_fed_shape_f64", lambda c: raw.ScatterNd(indices=c.ph(np.array([[1, 1], [1, 1]], np.int64)),
                                                        updates=c.ph(c.arr([2], "f64")),
                                                        shape=c.ph(np.array([2, 3], np.int64))), dt="f64")
case("broadcastto_empty_f32", lambda c: raw.BroadcastTo(input=c.ph(c.arr([1, 2])), shape=C([0, 2])))
case("broadcastto_same_rank_f32", lambda c: raw.BroadcastTo(input=c.ph(c.arr([2, 1, 1])), shape=C([2, 2, 3])))
case("sub_u8_wrap", lambda c: raw.Sub(x=c.ph(np.array([1, 200], np.uint8)), y=c.ph(np.array([2, 100], np.uint8))))
case("abs_i32_min", lambda c: raw.Abs(x=c.ph(np.array([-(2 ** 31), -5], np.int32))))
case("neg_i64_min", lambda c: raw.Neg(x=c.ph(np.array([-(2 ** 63), 5], np.int64))))
case("sign_nan_f32", lambda c: raw.Sign(x=c.ph(np.array([np.nan, -1], np.float32))))
case("floormod_signed_zero_f32", lambda c: raw.FloorMod(x=c.ph(np.array([-4.0, 4.0, -0.0, 5.5], np.float32)),
                                                        y=c.ph(np.array([2.0, -2.0, 3.0, -2.0], np.float32))))
case("floordiv_f32_inf", lambda c: raw.FloorDiv(x=c.ph(np.array([1.0, -1.0, 0.0], np.float32)),
                                                y=c.ph(np.array([0.0, 0.0, 0.0], np.float32))))
case("maximum_bcast_i32", lambda c: raw.Maximum(x=c.ph(c.arr([3, 1], "i32")), y=c.ph(c.arr([4], "i32"))))
case("addn_empty_f32", lambda c: raw.AddN(inputs=[c.ph(np.zeros([0, 2], np.float32)) for _ in range(2)]))
case("cumsum_ex_rev_i64", lambda c: raw.Cumsum(x=c.ph(c.arr([5], "i64", -9, 9)), axis=C(0), exclusive=True,
                                               reverse=True))
case("cumsum_fed_axis_f32", lambda c: raw.Cumsum(x=c.ph(c.arr([2, 3])), axis=c.ph(np.int32(1))))
case("cumsum_f16", lambda c: raw.Cumsum(x=c.ph(c.arr([6], "f16")), axis=C(0)), dt="f16")
case("shapen_bool", lambda c: list(raw.ShapeN(input=[c.ph(c.arr([2], "bool")), c.ph(c.arr([0, 1], "bool"))])))
case("rank_i64_empty", lambda c: raw.Rank(input=c.ph(np.zeros([0, 2, 0], np.int64))))
case("cast_u8_to_bool", lambda c: raw.Cast(x=c.ph(np.array([0, 1, 255], np.uint8)), DstT=tf.bool))
case("cast_bool_to_i64", lambda c: raw.Cast(x=c.ph(np.array([True, False])), DstT=tf.int64))
case("cast_f16_to_f64", lambda c: raw.Cast(x=c.ph(np.array([0.1, -65504], np.float16)), DstT=tf.float64))
case("cast_same_f32", lambda c: raw.Cast(x=c.ph(c.arr([3])), DstT=tf.float32))
case("cast_neg_zero_f32_to_i32", lambda c: raw.Cast(x=c.ph(np.array([-0.0, -0.99], np.float32)), DstT=tf.int32))
case("where_i64_2d", lambda c: raw.Where(condition=c.ph(np.array([[0, 5], [-1, 0]], np.int64))))
case("where_empty", lambda c: raw.Where(condition=c.ph(np.zeros([0, 3], bool))))
case("selectv2_scalar_cond_i32", lambda c: raw.SelectV2(condition=c.ph(np.array(True)), t=c.ph(c.arr([2], "i32")),
                                                        e=c.ph(c.arr([3, 1], "i32"))))
case("clipbyvalue_bcast_f32", lambda c: raw.ClipByValue(t=c.ph(c.arr([2, 3])), clip_value_min=c.ph(np.float32(-1)),
                                                        clip_value_max=c.ph(np.float32(1))))
case("fill_f64_empty", lambda c: raw.Fill(dims=C([0]), value=c.ph(np.float64(2))), dt="f64")
case("squareddifference_bcast_i32", lambda c: raw.SquaredDifference(x=c.ph(c.arr([2, 3], "i32")),
                                                                    y=c.ph(c.arr([3], "i32"))))
case("pow_f32_neg_base_int_exp", lambda c: raw.Pow(x=c.ph(np.array([-2.0, -3.0, -2.0], np.float32)),
                                                   y=c.ph(np.array([2.0, 3.0, 0.5], np.float32))))
case("mod_f32_neg", lambda c: raw.Mod(x=c.ph(np.array([-5.5, 5.5, -5.5], np.float32)),
                                      y=c.ph(np.array([2.0, -2.0, -2.0], np.float32))))
case("stridedslice_all_masks_f32", lambda c: raw.StridedSlice(
    input=c.ph(c.arr([3, 4, 5])), begin=C([1, 0, 0, 4]), end=C([2, 0, 0, 0]), strides=C([1, 1, 1, -2]),
    begin_mask=0, end_mask=8, ellipsis_mask=2, new_axis_mask=4, shrink_axis_mask=1))
case("stridedslice_neg_begin_end_f32", lambda c: raw.StridedSlice(
    input=c.ph(c.arr([6, 3])), begin=C([-4, -1]), end=C([-1, -4]), strides=C([1, -1])))
case("slice_fed_size_i64", lambda c: raw.Slice(input=c.ph(c.arr([3, 4])), begin=C([0, 1], "i64"),
                                               size=c.ph(np.array([-1, 2], np.int64))))
case("pack_empty_f32", lambda c: raw.Pack(values=[c.ph(np.zeros([0], np.float32)) for _ in range(2)], axis=1))
case("unpack_i64_axis0_scalars", lambda c: list(raw.Unpack(value=c.ph(np.array([4, -5], np.int64)), num=2)))
case("identityn_single_f16", lambda c: list(raw.IdentityN(input=[c.ph(c.arr([2], "f16"))])))
case("zeroslike_i64_scalar", lambda c: raw.ZerosLike(x=c.ph(np.int64(5))))
case("oneslike_f64_empty", lambda c: raw.OnesLike(x=c.ph(np.zeros([2, 0], np.float64))))


def run_ops():
    os.makedirs(OPS_DIR, exist_ok=True)
    for entry in os.listdir(OPS_DIR):
        if entry not in KEEP:
            shutil.rmtree(os.path.join(OPS_DIR, entry), ignore_errors=True)
    names = set()
    written = 0
    for name, fn, rtol, atol, dt, err in CASES:
        assert name not in names, "duplicate case " + name
        names.add(name)
        try:
            ok = run_case(name, fn, rtol, atol, dt, err)
        except ValueError as e:
            print("BAD CASE %s" % e)
            ok = False
        written += ok
    print("wrote %d of %d cases to %s" % (written, len(CASES), os.path.normpath(OPS_DIR)))


# ----------------------------------------------------------------------------------------
# TF1 while-loop fixtures (tests/fixtures/tf).


def write_fixture(name, description, build, feeds_np, rtol=1e-4, atol=1e-5):
    """`build(dtype)` returns (placeholders dict name->tensor, fetches dict name->tensor).
    The float32 graph is saved; expected values come from the float64 graph."""
    tf1.disable_control_flow_v2()
    results = {}
    graphs = {}
    for dt in (tf.float64, tf.float32):
        g = tf.Graph()
        with g.as_default():
            phs, fetches = build(dt)
        feed = {}
        for k, v in feeds_np.items():
            t = phs[k]
            vv = v.astype(t.dtype.as_numpy_dtype)
            feed[t] = vv
        with tf1.Session(graph=g) as s:
            vals = s.run(fetches, feed_dict=feed)
        results[dt] = (phs, fetches, vals)
        graphs[dt] = g
    g = graphs[tf.float32]
    phs, fetches, vals32 = results[tf.float32]
    _, _, vals64 = results[tf.float64]
    d = os.path.join(TF_DIR, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    gd = g.as_graph_def()
    with open(os.path.join(d, "graph.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    with open(os.path.join(d, "graph.pbtxt"), "w") as f:
        f.write(str(gd))
    with open(os.path.join(d, "ops.txt"), "w") as f:
        f.write("\n".join(sorted({n.op for n in gd.node})) + "\n")
    man_feeds, man_fetches = {}, {}
    for k, t in phs.items():
        fname = k + ".npy"
        man_feeds[t.name] = fname
        np.save(os.path.join(d, fname), feeds_np[k].astype(t.dtype.as_numpy_dtype))
    for k, t in fetches.items():
        fname = k + ".npy"
        man_fetches[t.name] = fname
        v64 = np.asarray(vals64[k])
        v = v64.astype(np.float32) if v64.dtype == np.float64 else v64
        assert np.allclose(v, vals32[k], rtol=rtol, atol=atol), (name, k)
        np.save(os.path.join(d, fname), v)
    manifest = {
        "name": name,
        "description": description,
        "kind": "inference",
        "graph": "graph.pb",
        "feeds": man_feeds,
        "fetches": man_fetches,
        "rtol": rtol,
        "atol": atol,
    }
    with open(os.path.join(d, "fixture.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print("wrote %s (%s)" % (d, ", ".join(sorted({n.op for n in gd.node}))))


def build_matrix_counter(dt):
    rng = np.random.default_rng(11)
    w = (rng.standard_normal([4, 4]) * 0.5).astype(np.float32)
    n = tf1.placeholder(tf.int32, shape=[], name="n")
    x = tf1.placeholder(dt, shape=[None, 4], name="x")
    W = tf.constant(w.astype(dt.as_numpy_dtype), name="w")
    i0 = tf.constant(0, name="i0")
    h0 = tf.zeros_like(x, name="h0")

    def cond(i, h):
        return i < n

    def body(i, h):
        return i + 1, tf.tanh(tf.matmul(h, W) + x)

    i, h = tf1.while_loop(cond, body, [i0, h0], name="loop")
    return {"n": n, "x": x}, {"count": tf.identity(i, name="count"), "h": tf.identity(h, name="h")}


def build_nested(dt):
    rng = np.random.default_rng(12)
    w = (rng.standard_normal([3, 3]) * 0.4).astype(np.float32)
    n = tf1.placeholder(tf.int32, shape=[], name="n")
    x = tf1.placeholder(dt, shape=[2, 3], name="x")
    W = tf.constant(w.astype(dt.as_numpy_dtype), name="w")

    def outer_body(i, acc, total):
        # inner loop runs i+1 times: acc <- tanh(acc @ W) + x
        def inner_cond(j, a, t):
            return j <= i

        def inner_body(j, a, t):
            a2 = tf.tanh(tf.matmul(a, W)) + x
            return j + 1, a2, t + 1

        _, acc2, total2 = tf1.while_loop(inner_cond, inner_body, [tf.constant(0), acc, total],
                                         parallel_iterations=1, name="inner")
        return i + 1, acc2 * 0.5, total2

    i, acc, total = tf1.while_loop(lambda i, a, t: i < n, outer_body,
                                   [tf.constant(0), tf.zeros([2, 3], dt), tf.constant(0)], name="outer")
    return {"n": n, "x": x}, {"outer_count": tf.identity(i, name="outer_count"),
                              "acc": tf.identity(acc, name="acc"),
                              "inner_total": tf.identity(total, name="inner_total")}


def build_cond_in_while(dt):
    rng = np.random.default_rng(13)
    w = (rng.standard_normal([3, 3]) * 0.5).astype(np.float32)
    n = tf1.placeholder(tf.int32, shape=[], name="n")
    x = tf1.placeholder(dt, shape=[3], name="x")
    W = tf.constant(w.astype(dt.as_numpy_dtype), name="w")

    def body(i, h, s):
        h2 = tf.cond(tf.equal(tf.math.floormod(i, 2), 0),
                     lambda: tf.tanh(tf.linalg.matvec(W, h) + x),
                     lambda: h * 0.5 - 0.25,
                     name="parity")
        s2 = tf.cond(tf.reduce_sum(h2) > 0, lambda: s + 1, lambda: s, name="positive")
        return i + 1, h2, s2

    i, h, s = tf1.while_loop(lambda i, h, s: i < n, body,
                             [tf.constant(0), tf.ones([3], dt), tf.constant(0)],
                             parallel_iterations=1, name="loop")
    return {"n": n, "x": x}, {"count": tf.identity(i, name="count"), "h": tf.identity(h, name="h"),
                              "positives": tf.identity(s, name="positives")}


def run_loops():
    write_fixture(
        "while_matrix_counter",
        "TF1 while_loop (control flow v1: Enter/Merge/Switch/LoopCond/NextIteration/Exit): "
        "(i, h) -> (i+1, tanh(h @ w + x)) while i < n, from i=0, h=zeros_like(x). n (int32 "
        "scalar, 5) and x[?,4] (batch 3) are fed, w[4,4] is a Const. Fetches the counter and h.",
        build_matrix_counter,
        {"n": np.array(5, np.int32), "x": np.random.default_rng(1).uniform(-1, 1, [3, 4])})
    write_fixture(
        "while_nested",
        "Nested TF1 while_loops: outer i < n (n=3 fed); the inner loop (parallel_iterations=1) "
        "runs i+1 times acc <- tanh(acc @ w) + x and counts its iterations in a total carried "
        "through both loops; after the inner loop acc is halved. x[2,3] fed, w[3,3] Const. "
        "Fetches outer_count (3), acc and inner_total (6).",
        build_nested,
        {"n": np.array(3, np.int32), "x": np.random.default_rng(2).uniform(-1, 1, [2, 3])})
    write_fixture(
        "cond_in_while",
        "TF1 while_loop (parallel_iterations=1) with two tf.cond (v1 Switch/Merge) in the body: "
        "h <- tanh(w h + x) on even i, h*0.5-0.25 on odd i; s counts the steps where sum(h) > 0. "
        "n=6 and x[3] fed, w[3,3] Const. Fetches count, h and positives.",
        build_cond_in_while,
        {"n": np.array(6, np.int32), "x": np.random.default_rng(3).uniform(-1, 1, [3])})


if __name__ == "__main__":
    what = sys.argv[1:] or ["ops", "loops"]
    if "ops" in what:
        run_ops()
    if "loops" in what:
        run_loops()
