#!/usr/bin/env python3
"""Generates the TF2 function fixtures of `tests/fixtures/tf` (format: that folder's README).

Run locally (CI never needs TensorFlow):

    python3 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu numpy
    /work/tfvenv/bin/python tools/gen_function_fixtures.py

Each fixture is the graph of one `tf.function`'s concrete function, as TF2 exports it: the
arguments are `Placeholder`s, the results `Identity` nodes, and the calls, conditionals and
loops are functional ops (`PartitionedCall`, `StatefulPartitionedCall`, `StatelessIf`,
`StatelessWhile`, ...) whose bodies live in the GraphDef's `library`:

- `tf2_partitioned_call`: calls to other `tf.function`s, stateless (`PartitionedCall`) and
  stateful (`StatefulPartitionedCall`, the callee has a `CheckNumerics`), one of them
  nested (a function calling a function), with several outputs.
- `tf2_if`: `tf.cond` on fed predicates, one taking each branch; a branch with a constant
  and no use of the inputs; a cond on an int32 scalar.
- `tf2_while`: `tf.while_loop` with a fed int32 trip count and two loop variables.
- `tf2_nested`: a `tf.while_loop` whose body has a `tf.cond` and calls a function, inside a
  function called from the exported one.

Expected values are computed by calling the concrete function and checked against running
the exported GraphDef in a `tf.compat.v1.Session`. Deterministic (fixed seeds); each folder
is deleted and rewritten.
"""

import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "tf")


def graph_ops(gd):
    ops = {n.op for n in gd.node}
    for f in gd.library.function:
        ops |= {n.op for n in f.node_def}
    return sorted(ops)


def write_fixture(name, description, cf, feeds, rtol=1e-5, atol=1e-6):
    """Writes the fixture of concrete function `cf` run on `feeds` (arg name -> array)."""
    gd = cf.graph.as_graph_def()
    fn_names = {f.signature.name for f in gd.library.function}
    ops = [o for o in graph_ops(gd) if o not in fn_names]
    folder = os.path.join(ROOT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "graph.pb"), "wb") as f:
        f.write(gd.SerializeToString())
    with open(os.path.join(folder, "graph.pbtxt"), "w") as f:
        f.write(str(gd))
    with open(os.path.join(folder, "ops.txt"), "w") as f:
        f.write("".join(o + "\n" for o in ops))

    args = [feeds[t.name.split(":")[0]] for t in cf.inputs]
    expected = [np.asarray(v) for v in tf.nest.flatten(cf(*[tf.constant(a) for a in args]))]
    out_names = [t.name for t in cf.outputs]
    assert len(out_names) == len(expected)

    # The exported GraphDef must give the same values when TensorFlow runs it.
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as s:
            got = s.run(out_names, {t.name: a for t, a in zip(cf.inputs, args)})
    for e, v in zip(expected, got):
        np.testing.assert_allclose(v, e, rtol=1e-6, atol=1e-6)

    manifest = {
        "name": name,
        "description": description,
        "kind": "inference",
        "graph": "graph.pb",
        "feeds": {},
        "fetches": {},
        "rtol": rtol,
        "atol": atol,
    }
    for t, a in zip(cf.inputs, args):
        arg = t.name.split(":")[0]
        np.save(os.path.join(folder, arg + ".npy"), a)
        manifest["feeds"][t.name] = arg + ".npy"
    for tname, v in zip(out_names, expected):
        file = tname.replace(":", "_") + ".npy"
        np.save(os.path.join(folder, file), v)
        manifest["fetches"][tname] = file
    with open(os.path.join(folder, "fixture.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {name}: {', '.join(ops)}")


def partitioned_call():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((4, 3)).astype(np.float32)

    @tf.function
    def innermost(a):
        return tf.square(a) - 0.5

    @tf.function
    def dense(x, w):
        h = tf.nn.relu(tf.matmul(x, w))
        return h, tf.reduce_sum(x, axis=1)

    @tf.function
    def checked(h):
        # CheckNumerics is stateful, so calls of this function are StatefulPartitionedCall.
        h = tf.debugging.check_numerics(h, "h")
        return innermost(h) * 3.0

    @tf.function
    def model(x):
        h, s = dense(x, tf.constant(w))
        y = checked(h)
        return y + tf.expand_dims(s, 1), h, dense(x * 2.0, tf.constant(w))[1]

    cf = model.get_concrete_function(tf.TensorSpec([None, 4], tf.float32, name="x"))
    x = rng.standard_normal((5, 4)).astype(np.float32)
    write_fixture(
        "tf2_partitioned_call",
        "TF2 tf.function graph: x[?,4] -> PartitionedCall(dense: Relu(x@w), Sum(x,1); two "
        "outputs) -> StatefulPartitionedCall(checked: CheckNumerics, then a nested "
        "PartitionedCall of innermost: Square - 0.5, times 3) + expanded sum; a second call "
        "of dense on 2x. Bodies are in the GraphDef library.",
        cf,
        {"x": x},
    )


def if_cond():
    rng = np.random.default_rng(12)

    @tf.function
    def model(x, p, q, k):
        a = tf.cond(p, lambda: x * 2.0 + 1.0, lambda: x - 1.0)
        b = tf.cond(q, lambda: tf.reduce_sum(x, axis=0), lambda: tf.constant([7.0, 8.0, 9.0]))
        c = tf.cond(k > 2, lambda: (tf.tanh(x), k + 1), lambda: (x, k - 1))
        return a, b, c[0], c[1]

    cf = model.get_concrete_function(
        tf.TensorSpec([2, 3], tf.float32, name="x"),
        tf.TensorSpec([], tf.bool, name="p"),
        tf.TensorSpec([], tf.bool, name="q"),
        tf.TensorSpec([], tf.int32, name="k"),
    )
    feeds = {
        "x": rng.standard_normal((2, 3)).astype(np.float32),
        "p": np.array(True),
        "q": np.array(False),
        "k": np.array(5, dtype=np.int32),
    }
    write_fixture(
        "tf2_if",
        "TF2 tf.function graph with three tf.cond (StatelessIf): on p (true: x*2+1, "
        "false: x-1), on q (true: Sum(x,0), false: a Const not using the inputs; q is "
        "false), on k > 2 with two outputs (tanh(x), k+1 | x, k-1; k is 5).",
        cf,
        feeds,
    )


def while_loop():
    rng = np.random.default_rng(13)
    w = (rng.standard_normal((3, 3)) * 0.5).astype(np.float32)

    @tf.function
    def model(x, n):
        def body(i, h):
            return i + 1, tf.tanh(tf.matmul(h, tf.constant(w))) + 0.5

        i, h = tf.while_loop(lambda i, h: i < n, body, (tf.constant(0), x))
        return i, h

    cf = model.get_concrete_function(
        tf.TensorSpec([2, 3], tf.float32, name="x"), tf.TensorSpec([], tf.int32, name="n")
    )
    feeds = {
        "x": rng.standard_normal((2, 3)).astype(np.float32),
        "n": np.array(6, dtype=np.int32),
    }
    write_fixture(
        "tf2_while",
        "TF2 tf.function graph with a tf.while_loop (StatelessWhile): i from 0 while i < n "
        "(fed, 6), h = tanh(h @ w) + 0.5 with w a Const inside the body; fetches the final "
        "i (int32) and h[2,3].",
        cf,
        feeds,
        rtol=1e-4,
        atol=1e-5,
    )


def nested():
    rng = np.random.default_rng(14)

    @tf.function
    def step(h):
        return h * 0.5 + 1.0

    @tf.function
    def loop(x, n):
        def body(i, h, acc):
            h = tf.cond(
                tf.equal(i % 2, 0), lambda: step(h), lambda: tf.negative(h)
            )
            return i + 1, h, acc + tf.reduce_sum(h)

        return tf.while_loop(
            lambda i, h, acc: i < n, body, (tf.constant(0), x, tf.constant(0.0))
        )

    @tf.function
    def model(x, n):
        i, h, acc = loop(x, n)
        return h, acc

    cf = model.get_concrete_function(
        tf.TensorSpec([4], tf.float32, name="x"), tf.TensorSpec([], tf.int32, name="n")
    )
    feeds = {
        "x": rng.standard_normal(4).astype(np.float32),
        "n": np.array(5, dtype=np.int32),
    }
    write_fixture(
        "tf2_nested",
        "TF2 tf.function graph calling (PartitionedCall) a function whose tf.while_loop "
        "(StatelessWhile, n = 5 trips) has a tf.cond (StatelessIf) in its body, whose true "
        "branch calls another function (step: h*0.5+1; false branch negates h); fetches h[4] "
        "and acc, the running sum of h.",
        cf,
        feeds,
        rtol=1e-5,
        atol=1e-5,
    )


if __name__ == "__main__":
    partitioned_call()
    if_cond()
    while_loop()
    nested()
