"""Writes tests/fixtures/collectives/: a TF1 graph of collective ops as TensorFlow builds it
(CollectiveReduce, CollectiveGather, CollectiveBcastSend/Recv on three CPU devices, with no
Rill attrs), its inputs and the outputs TensorFlow computes for it.

Run locally with tensorflow-cpu in a virtual environment (CI never needs TensorFlow):
    python tools/gen_collective_fixture.py [OUT_DIR]
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/collectives"
os.makedirs(out, exist_ok=True)
n = 3
rng = np.random.default_rng(7)
xs = [rng.standard_normal((2, 5)).astype(np.float32) for _ in range(n)]
ids = [np.array([r, 10 * r + 1], dtype=np.int64) for r in range(n)]
source = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5

g = tf.Graph()
feeds, fetches = {}, []
with g.as_default():
    for r in range(n):
        with tf1.device(f"/device:CPU:{r}"):
            x = tf1.placeholder(tf.float32, [2, 5], name=f"x{r}")
            feeds[f"x{r}:0"] = xs[r]
            mean = tf.raw_ops.CollectiveReduce(
                input=x, group_size=n, group_key=1, instance_key=1, merge_op="Add",
                final_op="Div", subdiv_offsets=[0], name=f"mean{r}")
            biggest = tf.raw_ops.CollectiveReduce(
                input=x, group_size=n, group_key=1, instance_key=2, merge_op="Max",
                final_op="Id", subdiv_offsets=[0], name=f"max{r}")
            gathered = tf.raw_ops.CollectiveGather(
                input=tf.constant(ids[r]), group_size=n, group_key=1, instance_key=3,
                shape=[2], name=f"gather{r}")
            if r == 1:
                got = tf.raw_ops.CollectiveBcastSend(
                    input=tf.constant(source), group_size=n, group_key=1, instance_key=4,
                    shape=[2, 3], name=f"bcast{r}")
            else:
                got = tf.raw_ops.CollectiveBcastRecv(
                    T=tf.float32, group_size=n, group_key=1, instance_key=4, shape=[2, 3],
                    name=f"bcast{r}")
            fetches += [mean, biggest, gathered, got]

config = tf1.ConfigProto(device_count={"CPU": n})
options = tf1.RunOptions()
options.experimental.collective_graph_key = 1
with tf1.Session(graph=g, config=config) as sess:
    values = sess.run(fetches, feed_dict={f"x{r}:0": xs[r] for r in range(n)}, options=options)

expected = {}
for t, v in zip(fetches, values):
    name = t.name
    file = name.replace(":", "_") + ".npy"
    np.save(os.path.join(out, file), v)
    expected[name] = file
for name, v in feeds.items():
    np.save(os.path.join(out, name.replace(":", "_") + ".npy"), v)
graph_def = g.as_graph_def()
with open(os.path.join(out, "graph.pb"), "wb") as f:
    f.write(graph_def.SerializeToString())
with open(os.path.join(out, "graph.pbtxt"), "w") as f:
    f.write(str(graph_def))
manifest = {
    "name": "collectives",
    "description": "CollectiveReduce (Add/Div and Max/Id), CollectiveGather and a broadcast "
    "from rank 1, one member per CPU device, as TensorFlow writes them",
    "cpu_devices": n,
    "tensorflow": tf.__version__,
    "feeds": {k: k.replace(":", "_") + ".npy" for k in feeds},
    "fetches": expected,
}
with open(os.path.join(out, "fixture.json"), "w") as f:
    json.dump(manifest, f, indent=2)
print("wrote", out, "with TensorFlow", tf.__version__)
