"""W3: a custom masked attention-pooling layer, graphmask against PyTorch and Keras 3 (JAX).

Run from the repository root, with the machine's OpenBLAS overrides unset for this
command only (as for bench_lstm.py):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_w3.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_w3.py --check
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_w3.py --profile
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_w3.py --profile predict
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_w3.py --primitives

Workload W3 (float32, seeded data, right padding, lengths uniform in [10, T]):

    Embedding(10000, 64, mask_zero=True) -> LSTM(128, return_sequences=True)
      -> AttentionPool (a custom layer written with graphmask.ops: a learned query vector
         from add_weight; scores = einsum("btd,d->bt"); masked softmax over time with
         where(mask, scores, -1e9); pooled = einsum("bt,btd->bd"))
      -> Dense(5, softmax), sparse categorical crossentropy, Adam(1e-3), B=32, T=100

``W3`` is one training step (forward, backward, update), ``W3-predict`` the forward
pass. The PyTorch peer is the same model written the way a PyTorch user would: logits
from ``nn.Linear`` into ``F.cross_entropy`` (the softmax folded into the loss), the
attention with ``masked_fill(~mask, -1e9)``, and ``nn.LSTM`` either over the padded
batch ("torch padded+mask": right padding cannot reach a kept position's output, and
the attention drops the padded ones) or over ``pack_padded_sequence`` ("torch packed").
The Keras 3 peer is the same custom layer written with ``keras.ops`` on JAX.

Method (bench_lstm.py's): each library runs in its own fresh process, the libraries
alternate for ``--rounds`` rounds, each keeps its best median of ``--steps`` timed steps
after warm-up, and every ratio is graphmask / the fastest peer of this same run.

``--single-thread`` runs every library on one thread (numba, PyTorch's intra-op pool,
XLA's Eigen pool, BLAS): on a shared machine whose other load leaves each process less
than its cores, multithreaded runs measure mostly how each library's thread pool copes
with descheduled workers, a one-thread run the work itself.

``--check`` first puts graphmask's initial weights into the PyTorch (and Keras) model and
compares the losses of one batch, so the peers provably compute the same function.
``--profile [train|predict]`` times graphmask's train (default) or predict step per node of
the plan and summed by op name (a VJP under the op it differentiates), then runs cProfile
over the same steps. ``--primitives`` times the attention layer's primitive ops alone
on W3's shapes, each beside the plain NumPy expression of the same result.
``--fuse``/``--no-fuse`` compile graphmask with the elementwise fusion pass
(``passes/fusion.py``) on or off, to compare the two in one session.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import EMB, VOCAB, batch, find_keras_python, machine, median_time  # noqa: E402

CLASSES = 5
NEG = -1e9  # the score of a padded step


def threads():
    """Threads for each library: 1 with ``--single-thread`` (the worker's environment
    says so), else the machine's cores."""
    return int(os.environ.get("W3_THREADS", 0)) or os.cpu_count() or 1


def thread_env(single):
    """Environment of a worker process; ``single``: one thread in every library."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    if single:
        env.update(W3_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   XLA_FLAGS=(env.get("XLA_FLAGS", "") +
                              " --xla_cpu_multi_thread_eigen=false").strip())
    return env


def labels(b):
    return np.random.default_rng(1).integers(0, CLASSES, size=b).astype(np.int32)


# ------------------------------------------------------------------------ graphmask
def gm_model(t, h):
    """The W3 model in graphmask, compiled; its AttentionPool is a user's custom layer."""
    import graphmask as gm
    from graphmask import ops

    class AttentionPool(gm.layers.Layer):
        """Softmax attention over the kept timesteps with one learned query vector."""

        def build(self, input_shape):
            self.query = self.add_weight(shape=(input_shape[-1],),
                                         initializer="glorot_uniform", name="query")

        def call(self, x, mask=None):
            scores = ops.einsum("btd,d->bt", x, self.query)
            scores = ops.where(mask, scores, NEG)
            weights = ops.softmax(scores, axis=-1)
            return ops.einsum("bt,btd->bd", weights, x)

        def compute_mask(self, inputs, previous_mask):
            return None

    gm.clear_session()
    gm.set_random_seed(0)
    x = gm.Input(shape=(t,), dtype="int32")
    e = gm.Embedding(VOCAB, EMB, mask_zero=True)(x)
    s = gm.LSTM(h, return_sequences=True)(e)
    out = gm.Dense(CLASSES, activation="softmax")(AttentionPool(name="attention")(s))
    m = gm.Model(x, out)
    m.compile(optimizer=gm.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return m


def gm_case(kind, b, t, h, padding, steps):
    ids, _ = batch(b, t, padding)
    m = gm_model(t, h)
    if kind == "W3-predict":
        return {"graphmask": median_time(lambda: m.predict_on_batch(ids), steps)}
    y = labels(b)
    return {"graphmask": median_time(lambda: m.train_on_batch(ids, y), steps)}


# ------------------------------------------------------------------------ PyTorch
def torch_model(h):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class W3(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, EMB)
            self.lstm = nn.LSTM(EMB, h, batch_first=True)
            bound = float(np.sqrt(6.0 / (h + 1)))  # glorot_uniform of a (h,) vector
            self.query = nn.Parameter(torch.empty(h).uniform_(-bound, bound))
            self.head = nn.Linear(h, CLASSES)

        def forward(self, ids, mask, lengths, packed):
            x = self.emb(ids)
            if packed:
                seq = pack_padded_sequence(x, lengths, batch_first=True,
                                           enforce_sorted=False)
                out, _ = pad_packed_sequence(self.lstm(seq)[0], batch_first=True,
                                             total_length=ids.shape[1])
            else:
                out, _ = self.lstm(x)
            scores = torch.einsum("btd,d->bt", out, self.query)
            weights = torch.softmax(scores.masked_fill(~mask, NEG), dim=-1)
            return self.head(torch.einsum("bt,btd->bd", weights, out))  # logits

    return W3()


def torch_load(model, weights):
    """Keras-ordered graphmask weights into the PyTorch model (gates i, f, c, o agree)."""
    import torch
    emb, kernel, recurrent, bias, query, dense_w, dense_b = weights
    with torch.no_grad():
        model.emb.weight.copy_(torch.from_numpy(emb))
        model.lstm.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        model.lstm.weight_hh_l0.copy_(torch.from_numpy(recurrent.T.copy()))
        model.lstm.bias_ih_l0.copy_(torch.from_numpy(bias))
        model.lstm.bias_hh_l0.zero_()
        model.query.copy_(torch.from_numpy(query))
        model.head.weight.copy_(torch.from_numpy(dense_w.T.copy()))
        model.head.bias.copy_(torch.from_numpy(dense_b))


def torch_setup(b, t, h, padding, weights=None):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(threads())
    ids_np, lengths_np = batch(b, t, padding)
    ids = torch.from_numpy(ids_np.astype(np.int64))
    model = torch_model(h)
    if weights is not None:
        torch_load(model, weights)
    y = torch.from_numpy(labels(b).astype(np.int64))
    return model, ids, ids != 0, torch.from_numpy(lengths_np), y


def torch_cases(kind, b, t, h, padding, steps):
    """{variant: seconds}: nn.LSTM over the padded batch, and over packed sequences."""
    import torch
    import torch.nn.functional as F

    model, ids, mask, lengths, y = torch_setup(b, t, h, padding)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    res = {}
    for variant, packed in (("torch padded+mask", False), ("torch packed", True)):
        if kind == "W3-predict":
            def step(packed=packed):
                with torch.no_grad():
                    torch.softmax(model(ids, mask, lengths, packed), dim=-1)
        else:
            def step(packed=packed):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(ids, mask, lengths, packed), y).backward()
                opt.step()
        res[variant] = median_time(step, steps)
    return res


# ------------------------------------------------------------------------ Keras 3 (JAX)
def keras_model(t, h):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras
    from keras import ops

    class AttentionPool(keras.layers.Layer):
        def build(self, input_shape):
            self.query = self.add_weight(shape=(input_shape[-1],),
                                         initializer="glorot_uniform", name="query")

        def call(self, x, mask=None):
            scores = ops.einsum("btd,d->bt", x, self.query)
            scores = ops.where(mask, scores, NEG)
            weights = ops.softmax(scores, axis=-1)
            return ops.einsum("bt,btd->bd", weights, x)

        def compute_mask(self, inputs, previous_mask):
            return None

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(t,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, EMB, mask_zero=True)(x)
    s = keras.layers.LSTM(h, return_sequences=True)(e)
    out = keras.layers.Dense(CLASSES, activation="softmax")(AttentionPool()(s))
    m = keras.Model(x, out)
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return m


def keras_cases(kind, b, t, h, padding, steps):
    ids, _ = batch(b, t, padding)
    m = keras_model(t, h)
    if kind == "W3-predict":
        return {"keras3-jax": median_time(lambda: m.predict_on_batch(ids), steps)}
    y = labels(b)
    return {"keras3-jax": median_time(lambda: m.train_on_batch(ids, y), steps)}


# ------------------------------------------------------------------------ --check
def check(b, t, h, keras_py):
    """Loss of one batch with graphmask's initial weights, in every library."""
    ids, _ = batch(b, t, None)
    y = labels(b)
    m = gm_model(t, h)
    weights = m.get_weights()
    res = {"graphmask": float(m.evaluate(ids, y, batch_size=b, verbose=0))}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w3.npz")
        np.savez(path, *weights)
        for lib, py in (("torch", sys.executable), ("keras", keras_py)):
            if py is None:
                continue
            out = subprocess.run([py, os.path.abspath(__file__), "--check-worker", lib,
                                  json.dumps([b, t, h, path])],
                                 capture_output=True, text=True, timeout=900,
                                 env=thread_env(False))
            if out.returncode != 0:
                raise RuntimeError(f"{lib} check failed:\n{out.stderr[-2000:]}")
            res.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return res


def check_worker(lib, params):
    b, t, h, path = params
    with np.load(path) as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    ids, _ = batch(b, t, None)
    if lib == "keras":
        m = keras_model(t, h)
        m.set_weights(weights)
        return {"keras3-jax": float(m.evaluate(ids, labels(b), batch_size=b, verbose=0))}
    import torch
    import torch.nn.functional as F
    model, tids, mask, lengths, y = torch_setup(b, t, h, None, weights)
    with torch.no_grad():
        return {f"torch {'packed' if packed else 'padded+mask'}":
                float(F.cross_entropy(model(tids, mask, lengths, packed), y))
                for packed in (False, True)}


# ------------------------------------------------------------------------ --profile
class _Timed:
    """Stands in for a plan step's op and adds the time of each forward call to ``acc``."""

    def __init__(self, op, key, acc):
        self._op, self._key, self._acc, self.name = op, key, acc, op.name

    def forward(self, attrs, inputs):
        t0 = time.perf_counter()
        out = self._op.forward(attrs, inputs)
        self._acc[self._key].append(time.perf_counter() - t0)
        return out

    def __getattr__(self, name):
        return getattr(self._op, name)


def _describe(st):
    """What a plan step computes: its op (the VJP's forward op) and an einsum's subscripts."""
    attrs = st.attrs
    if st.op.name == "vjp":
        name, attrs = f"vjp of {attrs.get('op')}", attrs.get("attrs", {}) or {}
    else:
        name = st.op.name
    sub = attrs.get("subscripts") if isinstance(attrs, dict) else None
    return name, f"{name} {sub}" if sub else name


def profile(kind, b, t, h, steps, top):
    """Per-node medians of graphmask's W3 ``kind`` ("train" or "predict") step, by node
    and summed by op, then cProfile over the same steps."""
    ids, _ = batch(b, t, None)
    y = labels(b)
    m = gm_model(t, h)
    if kind == "train":
        def step():
            m.train_on_batch(ids, y)
    else:
        def step():
            m.predict_on_batch(ids)
    for _ in range(5):
        step()
    plan = m._plan(kind)  # the cached plan the step runs
    acc: dict = defaultdict(list)
    originals = [st.op for st in plan.steps]
    for st in plan.steps:
        st.op = _Timed(st.op, (st.node, st.label, *_describe(st)), acc)
    totals = []
    try:
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            totals.append(time.perf_counter() - t0)
    finally:
        for st, op in zip(plan.steps, originals):
            st.op = op
    per_node = {key: float(np.median(times)) for key, times in acc.items()}
    by_op: dict = defaultdict(lambda: [0.0, 0])
    for (_, _, name, _), sec in per_node.items():
        by_op[name][0] += sec
        by_op[name][1] += 1
    total = float(np.median(totals))
    nodes = sum(per_node.values())
    print(f"W3 {kind} step (B={b}, T={t}, H={h}): median {total * 1e3:.2f} ms over {steps} "
          f"steps; the {len(plan.steps)} plan steps' op calls {nodes * 1e3:.2f} ms, the "
          f"rest (the model's API, the runtime loop{', the optimizer' * (kind == 'train')}) "
          f"{(total - nodes) * 1e3:.2f} ms")
    print(f"\n{'op':<40}{'nodes':>6}{'median ms':>11}{'share':>8}")
    for name, (sec, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:<40}{n:>6}{sec * 1e3:>11.3f}{sec / total:>8.1%}")
    print(f"\n{'node':>5}  {'layer':<18}{'op':<40}{'median ms':>10}")
    for (nid, label, _, what), sec in sorted(per_node.items(), key=lambda kv: -kv[1]):
        print(f"{nid:>5}  {label:<18}{what:<40}{sec * 1e3:>10.3f}")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    print(f"\ncProfile over {steps} {kind} steps, top {top} by own time:")
    print(buf.getvalue())


# ------------------------------------------------------------------------ --primitives
def _ms(fn, n=200):
    """Median milliseconds of ``n`` calls after 10 warm-up calls."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def primitives(b, t, h):
    """The attention layer's primitive ops alone on W3's shapes, each against the plain
    NumPy expression of the same result (checked equal first), BLAS on one thread as
    while a plan runs; then the fixed cost per call on tiny arrays."""
    import math

    from graphmask.ops import get_op
    from graphmask.runtime import single_threaded_blas

    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, h)).astype(np.float32)       # the LSTM output
    q = rng.standard_normal(h).astype(np.float32)               # the query
    mask = rng.random((b, t)) > 0.4
    neg = np.array(NEG, np.float32)
    g_bt = rng.standard_normal((b, t)).astype(np.float32)       # cotangents
    g_bd = rng.standard_normal((b, h)).astype(np.float32)
    ein, where, soft = get_op("prim.einsum"), get_op("prim.where"), get_op("prim.softmax")
    score, pool = {"subscripts": "btd,d->bt"}, {"subscripts": "bt,btd->bd"}
    s = ein.forward(score, {"x": x, "y": q})[0]
    w = soft.forward({"axis": -1}, {"x": where.forward(
        {}, {"condition": mask, "x": s, "y": neg})[0]})[0]
    o_score, o_pool = ein.forward(score, {"x": x, "y": q}), ein.forward(pool, {"x": w, "y": x})

    def vjp(attrs, ins, outs, g, port):
        return lambda: ein.vjp(attrs, ins, outs, [g], [port])[port]

    cases = [  # (what, graphmask call, NumPy call)
        ('einsum "btd,d->bt"', lambda: ein.forward(score, {"x": x, "y": q})[0],
         lambda: x @ q),
        ('einsum "bt,btd->bd"', lambda: ein.forward(pool, {"x": w, "y": x})[0],
         lambda: np.matmul(w[:, None, :], x)[:, 0]),
        ('vjp "btd,d->bt" into the LSTM output',
         vjp(score, {"x": x, "y": q}, o_score, g_bt, "x"), lambda: g_bt[:, :, None] * q),
        ('vjp "btd,d->bt" into the query',
         vjp(score, {"x": x, "y": q}, o_score, g_bt, "y"),
         lambda: g_bt.reshape(-1) @ x.reshape(-1, h)),
        ('vjp "bt,btd->bd" into the weights',
         vjp(pool, {"x": w, "y": x}, o_pool, g_bd, "x"),
         lambda: np.matmul(x, g_bd[:, :, None])[:, :, 0]),
        ('vjp "bt,btd->bd" into the LSTM output',
         vjp(pool, {"x": w, "y": x}, o_pool, g_bd, "y"),
         lambda: w[:, :, None] * g_bd[:, None, :]),
        ("where", lambda: where.forward({}, {"condition": mask, "x": s, "y": neg})[0],
         lambda: np.where(mask, s, neg)),
    ]
    print(f"attention primitives on W3's shapes (B={b}, T={t}, D={h}, float32), "
          f"median of 200 calls:")
    print(f"{'case':<42}{'graphmask ms':>13}{'NumPy ms':>10}")
    with single_threaded_blas():
        for what, ours, numpy_ in cases:
            np.testing.assert_allclose(ours(), numpy_(), rtol=2e-5, atol=2e-5)
            print(f"{what:<42}{_ms(ours):>13.3f}{_ms(numpy_):>10.3f}")
        inner = np.matmul(g_bd[:, :, None], w[:, None, :])
        print(f"{'  batched matmul (b,d,1) x (b,1,t) alone':<42}"
              f"{_ms(lambda: np.matmul(g_bd[:, :, None], w[:, None, :])):>13.3f}")
        print(f"{'  C-order copy of its (b,t,d) transpose':<42}"
              f"{_ms(lambda: np.array(inner.transpose(0, 2, 1), order='C')):>13.3f}")
        print(f"{'  np.array copy of a C-contiguous gradient':<42}"
              f"{_ms(lambda: np.array(x, order='C')):>13.3f}")
        tiny = np.ones((2, 3, 4), np.float32)
        tq, tg, tm = tiny[0, 0], np.ones((2, 3), np.float32), np.ones((2, 3), bool)
        t_out = ein.forward(score, {"x": tiny, "y": tq})
        fixed = [
            ("einsum forward", lambda: ein.forward(score, {"x": tiny, "y": tq})),
            ("einsum vjp (both operands)",
             lambda: ein.vjp(score, {"x": tiny, "y": tq}, t_out, [tg], ["x", "y"])),
            ("where forward", lambda: where.forward({}, {"condition": tm, "x": tg, "y": neg})),
            ("softmax forward", lambda: soft.forward({"axis": -1}, {"x": tg})),
        ]
        print("\nfixed cost per call on tiny arrays (us):")
        for what, fn in fixed:
            print(f"  {what:<40}{_ms(fn, 2000) * 1e3:>8.1f}")
    sizes, letters = {"b": b, "t": t, "d": h}, ["b", "t"]
    for what, fn in (
            ("np.prod of a 2-item list (contract)",
             lambda: int(np.prod([sizes[c] for c in letters], dtype=np.int64))),
            ("math.prod of the same", lambda: math.prod(sizes[c] for c in letters))):
        print(f"  {what:<40}{_ms(fn, 2000) * 1e3:>8.1f}")


# ------------------------------------------------------------------------ driver
def worker(python, lib, kind, b, t, h, padding, steps, single=False):
    """Measure one library in a fresh process (no other library's thread pools in it)."""
    cmd = [python, os.path.abspath(__file__), "--worker", lib,
           json.dumps([kind, b, t, h, padding, steps])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                         env=thread_env(single))
    if out.returncode != 0:
        if lib == "torch" and "No module named 'torch'" in out.stderr:
            return {}
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = {"graphmask": gm_case, "torch": torch_cases, "keras": keras_cases}


def run_case(label, kind, b, t, h, padding, steps, keras_py, rounds, single=False):
    """Alternate the libraries for ``rounds`` rounds; keep each one's best median."""
    best: dict[str, float] = {}
    libs = [("graphmask", sys.executable), ("torch", sys.executable)]
    if keras_py:
        libs.append(("keras", keras_py))
    for r in range(rounds):
        for lib, py in (libs if r % 2 == 0 else libs[::-1]):
            for name, sec in worker(py, lib, kind, b, t, h, padding, steps,
                                    single).items():
                best[name] = min(sec, best.get(name, float("inf")))
    ours = best.pop("graphmask")
    top = min(best, key=best.get) if best else None
    ratio = ours / best[top] if top else float("nan")
    row = {"case": label, "graphmask_ms": ours * 1e3,
           **{f"{p}_ms": v * 1e3 for p, v in best.items()}, "best_peer": top, "ratio": ratio}
    peers = "  ".join(f"{p} {v * 1e3:7.2f} ms" for p, v in best.items())
    print(f"{label:<24} graphmask {ours * 1e3:7.2f} ms  {peers}  ratio vs {top}: {ratio:.2f}",
          flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds per case; each library keeps its best median")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=100)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--keras-python", help="a Python with keras and jax installed")
    ap.add_argument("--single-thread", action="store_true",
                    help="every library on one thread (see the module docstring)")
    ap.add_argument("--check", action="store_true",
                    help="first compare the peers' losses on graphmask's weights")
    ap.add_argument("--profile", nargs="?", const="train", choices=("train", "predict"),
                    help="only profile graphmask's train (default) or predict step: per "
                         "node, per op, then cProfile")
    ap.add_argument("--primitives", action="store_true",
                    help="only time the attention layer's primitive ops on W3's shapes "
                         "against plain NumPy")
    ap.add_argument("--top", type=int, default=30, help="cProfile rows for --profile")
    fuse = ap.add_mutually_exclusive_group()
    fuse.add_argument("--fuse", dest="fuse", action="store_const", const="1",
                      help="graphmask with the elementwise fusion pass on (the default is "
                           "graphmask.passes.fusion.DEFAULT)")
    fuse.add_argument("--no-fuse", dest="fuse", action="store_const", const="0",
                      help="graphmask with the elementwise fusion pass off")
    ap.add_argument("--json", help="write all rows to this file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--check-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fuse is not None:  # read when graphmask is imported, here and by the workers
        os.environ["GRAPHMASK_FUSION"] = args.fuse
    if args.worker:
        kind, b, t, h, padding, steps = json.loads(args.worker[1])
        print(json.dumps(CASES[args.worker[0]](kind, b, t, h, padding, steps)))
        return
    if args.check_worker:
        print(json.dumps(check_worker(args.check_worker[0], json.loads(args.check_worker[1]))))
        return
    b, t, h = args.batch, args.time, args.units
    if args.profile:
        profile(args.profile, b, t, h, args.steps, args.top)
        return
    if args.primitives:
        primitives(b, t, h)
        return
    if os.environ.get("OPENBLAS_CORETYPE"):
        print("note: OPENBLAS_CORETYPE is set; run with `env -u OPENBLAS_CORETYPE -u "
              "OPENBLAS_L2_SIZE` to measure the BLAS at full speed", file=sys.stderr)
    keras_py = None if args.no_keras else find_keras_python(args.keras_python)
    print(json.dumps(machine(), indent=1))
    if args.check:
        losses = check(b, t, h, keras_py)
        print("loss with graphmask's initial weights: "
              + "  ".join(f"{k} {v:.6f}" for k, v in losses.items()), flush=True)
    suffix = ", 1 thread" if args.single_thread else ""
    rows = [run_case(kind + suffix, kind, b, t, h, None, args.steps, keras_py, args.rounds,
                     args.single_thread) for kind in ("W3", "W3-predict")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
