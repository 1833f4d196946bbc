"""T1: a Transformer-encoder block with padding masks, graphmask against PyTorch.

Run from the repository root, with the machine's OpenBLAS overrides unset for this
command only (as for bench_lstm.py):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_transformer.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_transformer.py --check
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_transformer.py --profile

Workload T1 (float32, seeded data, right padding, lengths uniform in [10, T]):

    Embedding(10000, 128, mask_zero=True)
      -> x1 = LayerNormalization(x + Dropout(MultiHeadAttention(4 heads, key_dim 32,
                                                                dropout 0.1)(x, x)))
      -> x2 = LayerNormalization(x1 + Dropout(Dense(128)(Dropout(Dense(512, relu)(x1)))))
      -> GlobalAveragePooling1D (masked) -> Dense(5, softmax)
      sparse categorical crossentropy, Adam(1e-3), B=32, T=100, every dropout 0.1

that is ``nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512,
dropout=0.1, batch_first=True)`` (post-norm, ReLU, LayerNorm epsilon 1e-5), which is the
PyTorch peer, called with ``src_key_padding_mask``, followed by the masked mean over the
kept steps and ``nn.Linear`` logits into ``F.cross_entropy``. ``T1`` is one training step
(forward, backward, update), ``T1-predict`` the forward pass (``torch.no_grad`` and
``eval()`` for PyTorch: its inference fast path).

Method (bench_lstm.py's): each library runs in its own fresh process, the libraries
alternate for ``--rounds`` rounds, each keeps its best median of ``--steps`` timed steps
after warm-up, and every ratio is graphmask / PyTorch of this same run.

``--single-thread`` runs both libraries on one thread (numba, PyTorch's intra-op pool,
BLAS): on a shared machine whose other load leaves a process less than its cores, a
multithreaded run measures mostly how each thread pool copes with descheduled workers.

``--check`` first puts graphmask's initial weights into the PyTorch model and compares
the losses of one batch (dropout off), so both provably compute the same function.
``--profile [train|predict]`` times graphmask's step per op over the plan's nodes.
``--softmax`` times ``prim.masked_softmax`` on T1's scores and masks against the composed
``where`` / ``softmax`` / ``where`` it replaces.
``--fuse``/``--no-fuse`` compile graphmask with the elementwise fusion pass
(``passes/fusion.py``) on or off, to compare the two in one session.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import VOCAB, batch, machine, median_time  # noqa: E402

D_MODEL, HEADS, FF, CLASSES, DROP = 128, 4, 512, 5, 0.1


def labels(b):
    return np.random.default_rng(1).integers(0, CLASSES, size=b).astype(np.int32)


# ------------------------------------------------------------------------ graphmask
def gm_model(t, dropout=DROP):
    import graphmask as gm

    gm.clear_session()
    gm.set_random_seed(0)
    ids = gm.Input(shape=(t,), dtype="int32")
    x = gm.Embedding(VOCAB, D_MODEL, mask_zero=True)(ids)
    a = gm.MultiHeadAttention(HEADS, D_MODEL // HEADS, dropout=dropout)(x, x)
    x1 = gm.LayerNormalization(epsilon=1e-5)(gm.Add()([x, gm.Dropout(dropout)(a)]))
    f = gm.Dropout(dropout)(gm.Dense(FF, activation="relu")(x1))
    f = gm.Dropout(dropout)(gm.Dense(D_MODEL)(f))
    x2 = gm.LayerNormalization(epsilon=1e-5)(gm.Add()([x1, f]))
    out = gm.Dense(CLASSES, activation="softmax")(gm.GlobalAveragePooling1D()(x2))
    m = gm.Model(ids, out)
    m.compile(optimizer=gm.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return m


def gm_case(kind, b, t, steps):
    ids, _ = batch(b, t, None)
    m = gm_model(t)
    if kind == "T1-predict":
        return {"graphmask": median_time(lambda: m.predict_on_batch(ids), steps)}
    y = labels(b)
    return {"graphmask": median_time(lambda: m.train_on_batch(ids, y), steps)}


# ------------------------------------------------------------------------ PyTorch
def torch_model(dropout=DROP):
    from torch import nn

    class T1(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, D_MODEL)
            self.block = nn.TransformerEncoderLayer(D_MODEL, HEADS, FF, dropout,
                                                    batch_first=True)
            self.head = nn.Linear(D_MODEL, CLASSES)

        def forward(self, ids):
            pad = ids == 0
            h = self.block(self.emb(ids), src_key_padding_mask=pad)
            keep = (~pad).unsqueeze(-1).to(h.dtype)
            pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
            return self.head(pooled)  # logits

    return T1()


def torch_load(model, w):
    """graphmask's weights (Keras order) into the PyTorch model."""
    import torch
    (emb, qk, qb, kk, kb, vk, vb, ok, ob, g1, b1, d1k, d1b, d2k, d2b, g2, b2, hk, hb) = w
    d = D_MODEL

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))
    with torch.no_grad():
        model.emb.weight.copy_(t(emb))
        att = model.block.self_attn
        att.in_proj_weight.copy_(t(np.concatenate([k.reshape(d, d).T for k in (qk, kk, vk)])))
        att.in_proj_bias.copy_(t(np.concatenate([b.reshape(d) for b in (qb, kb, vb)])))
        att.out_proj.weight.copy_(t(ok.reshape(d, d).T))
        att.out_proj.bias.copy_(t(ob))
        model.block.norm1.weight.copy_(t(g1))
        model.block.norm1.bias.copy_(t(b1))
        model.block.linear1.weight.copy_(t(d1k.T))
        model.block.linear1.bias.copy_(t(d1b))
        model.block.linear2.weight.copy_(t(d2k.T))
        model.block.linear2.bias.copy_(t(d2b))
        model.block.norm2.weight.copy_(t(g2))
        model.block.norm2.bias.copy_(t(b2))
        model.head.weight.copy_(t(hk.T))
        model.head.bias.copy_(t(hb))


def torch_cases(kind, b, t, steps):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("T1_THREADS", 0)) or os.cpu_count() or 1)
    ids_np, _ = batch(b, t, None)
    ids = torch.from_numpy(ids_np.astype(np.int64))
    y = torch.from_numpy(labels(b).astype(np.int64))
    model = torch_model()
    if kind == "T1-predict":
        model.eval()

        def step():
            with torch.no_grad():
                torch.softmax(model(ids), dim=-1)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(ids), y).backward()
            opt.step()
    return {"torch": median_time(step, steps)}


# ------------------------------------------------------------------------ --check
def check(b, t):
    """The loss of one batch with graphmask's initial weights (dropout off), both ways."""
    import torch
    import torch.nn.functional as F

    ids, _ = batch(b, t, None)
    y = labels(b)
    m = gm_model(t, dropout=0.0)
    ours = float(m.evaluate(ids, y, batch_size=b, verbose=0))
    model = torch_model(dropout=0.0)
    torch_load(model, m.get_weights())
    model.eval()
    with torch.no_grad():
        theirs = float(F.cross_entropy(model(torch.from_numpy(ids.astype(np.int64))),
                                       torch.from_numpy(y.astype(np.int64))))
    return {"graphmask": ours, "torch": theirs}


# ------------------------------------------------------------------------ --profile
def profile(kind, b, t, steps):
    """Per-op medians of graphmask's T1 ``kind`` ("train" or "predict") step (a VJP
    under the op it differentiates; einsums by subscripts)."""
    from bench_w3 import _describe, _Timed

    ids, _ = batch(b, t, None)
    y = labels(b)
    m = gm_model(t)

    def step():
        if kind == "train":
            m.train_on_batch(ids, y)
        else:
            m.predict_on_batch(ids)
    for _ in range(5):
        step()
    plan = m._plan(kind)
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
    by_op: dict = defaultdict(lambda: [0.0, 0])
    for (_, _, _, what), times in acc.items():
        by_op[what][0] += float(np.median(times))
        by_op[what][1] += 1
    total = float(np.median(totals))
    print(f"T1 {kind} step (B={b}, T={t}): median {total * 1e3:.2f} ms; op calls "
          f"{sum(v[0] for v in by_op.values()) * 1e3:.2f} ms")
    for what, (sec, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        print(f"{what:<48}{n:>4}{sec * 1e3:>9.3f} ms{sec / total:>8.1%}")


# ------------------------------------------------------------------------ --softmax
def softmax_bench(b, t, reps=30):
    """``prim.masked_softmax`` on T1's scores (B, 4, T, T) and T1's masks, beside the
    composed form it replaces (``where`` -> ``prim.softmax`` -> ``where``, Keras's
    masked Softmax) and beside ``prim.softmax`` without a mask; milliseconds, best of
    ``reps``."""
    from graphmask.ops import get_op

    ids, lengths = batch(b, t, None)
    keep = (ids != 0)[:, None, :, None] & (ids != 0)[:, None, None, :]
    x = np.random.default_rng(0).standard_normal((b, HEADS, t, t)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    ms, sm, where = (get_op(n) for n in ("prim.masked_softmax", "prim.softmax", "prim.where"))

    def best(fn):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1e3

    fill = np.float32(-1e9)
    zero = np.float32(0)

    def composed():
        z = where.forward({}, {"condition": keep, "x": x, "y": fill})[0]
        y = sm.forward({}, {"x": z})[0]
        return where.forward({}, {"condition": keep, "x": y, "y": zero})[0]

    y = ms.forward({}, {"x": x, "keep": keep})[0]
    np.testing.assert_allclose(y, composed(), rtol=1e-5, atol=1e-7)
    kept = keep.mean() * 100
    print(f"scores {x.shape}, {kept:.0f}% of (query, key) pairs kept (lengths "
          f"{lengths.min()}-{lengths.max()})")
    rows = {
        "prim.masked_softmax forward": lambda: ms.forward({}, {"x": x, "keep": keep}),
        "where + prim.softmax + where": composed,
        "prim.softmax (no mask)": lambda: sm.forward({}, {"x": x}),
        "prim.masked_softmax vjp": lambda: ms.vjp({}, {"x": x, "keep": keep}, [y], [g],
                                                 ["x"]),
    }
    for name, fn in rows.items():
        print(f"{name:<32}{best(fn):8.2f} ms")


# ------------------------------------------------------------------------ driver
def worker(lib, kind, b, t, steps, single=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib,
           json.dumps([kind, b, t, steps])]
    env = dict(os.environ)
    if single:  # one thread in every library (numba, torch's pool, BLAS)
        env.update(T1_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = {"graphmask": gm_case, "torch": torch_cases}


def run_case(kind, b, t, steps, rounds, single=False):
    best: dict[str, float] = {}
    libs = ["graphmask", "torch"]
    for r in range(rounds):
        for lib in (libs if r % 2 == 0 else libs[::-1]):
            for name, sec in worker(lib, kind, b, t, steps, single).items():
                best[name] = min(sec, best.get(name, float("inf")))
    ratio = best["graphmask"] / best["torch"]
    kind += ", 1 thread" if single else ""
    print(f"{kind:<22} graphmask {best['graphmask'] * 1e3:7.2f} ms  torch "
          f"{best['torch'] * 1e3:7.2f} ms  ratio {ratio:.2f}", flush=True)
    return {"case": kind, "graphmask_ms": best["graphmask"] * 1e3,
            "torch_ms": best["torch"] * 1e3, "ratio": ratio}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=100)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--single-thread", action="store_true",
                    help="every library on one thread (a fair test on a loaded machine)")
    ap.add_argument("--profile", nargs="?", const="train", choices=("train", "predict"),
                    help="only time graphmask's train (default) or predict step per op")
    ap.add_argument("--softmax", action="store_true",
                    help="only time prim.masked_softmax on T1's scores against the "
                         "composed where/softmax/where")
    fuse = ap.add_mutually_exclusive_group()
    fuse.add_argument("--fuse", dest="fuse", action="store_const", const="1",
                      help="graphmask with the elementwise fusion pass on (the default is "
                           "graphmask.passes.fusion.DEFAULT)")
    fuse.add_argument("--no-fuse", dest="fuse", action="store_const", const="0",
                      help="graphmask with the elementwise fusion pass off")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fuse is not None:  # read when graphmask is imported, here and by the workers
        os.environ["GRAPHMASK_FUSION"] = args.fuse
    if args.worker:
        kind, b, t, steps = json.loads(args.worker[1])
        print(json.dumps(CASES[args.worker[0]](kind, b, t, steps)))
        return
    b, t = args.batch, args.time
    if args.profile:
        profile(args.profile, b, t, args.steps)
        return
    if args.softmax:
        softmax_bench(b, t)
        return
    print(json.dumps(machine(), indent=1))
    if args.check:
        print("loss with graphmask's initial weights (dropout off): " + "  ".join(
            f"{k} {v:.6f}" for k, v in check(b, t).items()), flush=True)
    rows = [run_case(kind, b, t, args.steps, args.rounds, args.single_thread)
            for kind in ("T1", "T1-predict")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
