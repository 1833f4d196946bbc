"""Speed of ``RNN(cell)`` with a user-defined cell in graphmask against Keras 3 (torch
backend) and a hand-written PyTorch loop.

Run from the repository root:

    python benchmarks/bench_rnn_cells.py [--single-thread]

Workload: Embedding(1000, 32, mask_zero) -> RNN(cell, return_sequences=True) -> Dense(8),
mean squared error masked by the padding, Adam(1e-3), B=32, T=50, lengths uniform in
[10, 50] (right padded, seeded), float32. The cell is Keras's documented minimal cell,
``h = tanh(x W + h_prev U)`` (``--cell minimal``, 64 units), or an LSTM cell written as a
user would (``--cell lstm``: ``LSTMCell`` subclassed, so graphmask unrolls it like any
user cell). ``train``: one training step; ``predict``: the forward pass.

graphmask unrolls the cell over the 50 steps into one static graph; Keras runs its RNN
loop in Python over torch ops; the PyTorch peer is the same loop written by hand
(``torch.where`` on the mask for each state and output, autograd). The ratio is
graphmask / the fastest peer measured in the same run; each library runs in its own
fresh process, the libraries alternate for ``--rounds`` rounds, each keeps its best
median of ``--steps`` steps after warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import machine, median_time  # noqa: E402

VOCAB, EMB, OUT = 1000, 32, 8


def batch(b, t, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min(10, t), t + 1, size=b)
    ids = rng.integers(1, VOCAB, size=(b, t)).astype(np.int32)
    for row, n in zip(ids, lengths):
        row[n:] = 0
    y = rng.standard_normal((b, t, OUT)).astype(np.float32)
    return ids, y


def minimal_cell(lib, units):
    ops = lib.ops

    class MinimalRNNCell(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], units), name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(units, units),
                                                    name="recurrent_kernel")

        def call(self, inputs, states):
            h = ops.tanh(ops.matmul(inputs, self.kernel) +
                         ops.matmul(states[0], self.recurrent_kernel))
            return h, [h]

    return MinimalRNNCell()


def make_cell(lib, kind, units):
    if kind == "minimal":
        return minimal_cell(lib, units)
    return type("UserLSTMCell", (lib.layers.LSTMCell,), {})(units)


def keras_like_case(lib_name, kind, cell_kind, b, t, h, steps):
    if lib_name == "keras":
        os.environ["KERAS_BACKEND"] = "torch"
        import keras as lib
        lib.utils.set_random_seed(0)
    else:
        import graphmask as lib
        lib.set_random_seed(0)
    ids, y = batch(b, t)
    x = lib.Input(shape=(t,), dtype="int32")
    e = lib.layers.Embedding(VOCAB, EMB, mask_zero=True)(x)
    hs = lib.layers.RNN(make_cell(lib, cell_kind, h), return_sequences=True)(e)
    m = lib.Model(x, lib.layers.Dense(OUT)(hs))
    m.compile(optimizer=lib.optimizers.Adam(1e-3), loss="mse")
    if kind == "predict":
        return median_time(lambda: m.predict_on_batch(ids), steps)
    return median_time(lambda: m.train_on_batch(ids, y), steps)


def torch_case(kind, cell_kind, b, t, h, steps):
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("RNN_CELLS_THREADS", 0)) or os.cpu_count() or 1)
    ids_np, y_np = batch(b, t)
    ids, y = torch.from_numpy(ids_np.astype(np.int64)), torch.from_numpy(y_np)
    keep = ids != 0
    emb, head = nn.Embedding(VOCAB, EMB), nn.Linear(h, OUT)
    gates = 4 if cell_kind == "lstm" else 1
    w = nn.Parameter(torch.randn(EMB, gates * h) * 0.1)
    u = nn.Parameter(torch.randn(h, gates * h) * 0.1)
    bias = nn.Parameter(torch.zeros(gates * h))
    params = [*emb.parameters(), *head.parameters(), w, u, bias]
    opt = torch.optim.Adam(params, lr=1e-3)

    def forward():
        xs = emb(ids)
        state = torch.zeros(b, h)
        carry = torch.zeros(b, h)
        prev, outs = torch.zeros(b, h), []
        for s in range(t):
            k = keep[:, s:s + 1]
            if cell_kind == "lstm":
                z = xs[:, s] @ w + state @ u + bias
                i, f, c, o = z.chunk(4, dim=1)
                c_new = torch.sigmoid(f) * carry + torch.sigmoid(i) * torch.tanh(c)
                new = torch.sigmoid(o) * torch.tanh(c_new)
                carry = torch.where(k, c_new, carry)
            else:
                new = torch.tanh(xs[:, s] @ w + state @ u)
            out = torch.where(k, new, prev)
            state = torch.where(k, new, state)
            outs.append(out)
            prev = out
        return head(torch.stack(outs, dim=1))

    def train():
        opt.zero_grad()
        m = keep.unsqueeze(-1).float()
        loss = (((forward() - y) ** 2).mean(-1, keepdim=True) * m).sum() / m.sum()
        loss.backward()
        opt.step()

    if kind == "predict":
        def predict():
            with torch.no_grad():
                forward()
        return median_time(predict, steps)
    return median_time(train, steps)


def worker(lib, params, single=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, json.dumps(params)]
    env = dict(os.environ)
    if single:
        env.update(RNN_CELLS_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        if lib != "graphmask" and "No module named" in out.stderr:
            return {}
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(kind, cell, b, t, h, steps, rounds, single=False):
    best: dict[str, float] = {}
    libs = ["graphmask", "keras", "torch"]
    for r in range(rounds):
        for lib in (libs if r % 2 == 0 else libs[::-1]):
            for name, sec in worker(lib, [kind, cell, b, t, h, steps], single).items():
                best[name] = min(sec, best.get(name, float("inf")))
    ours = best.pop("graphmask")
    top = min(best, key=best.get) if best else None
    ratio = ours / best[top] if top else float("nan")
    peers = "  ".join(f"{p} {v * 1e3:7.2f} ms" for p, v in best.items())
    threads = ", 1 thread" if single else ""
    print(f"RNN({cell}) {kind:<8} B={b} T={t} H={h}{threads}: graphmask {ours * 1e3:7.2f} ms  "
          f"{peers}  ratio vs {top}: {ratio:.2f}", flush=True)
    return {"case": kind, "cell": cell, "b": b, "t": t, "h": h, "single_thread": single,
            "graphmask_ms": ours * 1e3, **{f"{p}_ms": v * 1e3 for p, v in best.items()},
            "best_peer": top, "ratio": ratio}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=50)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--cell", choices=["minimal", "lstm"], nargs="+",
                    default=["minimal", "lstm"])
    ap.add_argument("--single-thread", action="store_true",
                    help="one thread in every library")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        lib, params = args.worker[0], json.loads(args.worker[1])
        if lib == "torch":
            res = {"torch": torch_case(*params)}
        else:
            res = {lib: keras_like_case(lib, *params)}
        print(json.dumps(res))
        return
    print(json.dumps(machine(), indent=1))
    rows = [run_case(kind, cell, args.batch, args.time, args.units, args.steps, args.rounds,
                     args.single_thread)
            for cell in args.cell for kind in ("train", "predict")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
