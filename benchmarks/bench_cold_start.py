"""Cold start: a new user's first training step, graphmask against Keras 3 (JAX) and PyTorch.

Run from the repository root (OpenBLAS overrides unset, as for the other benchmarks):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_cold_start.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_cold_start.py --top 25
    python benchmarks/bench_cold_start.py --graphmask-only --rounds 1   # while editing kernels

Each measurement is a fresh Python process timing, from its first line:

* ``import``: importing the library;
* ``first train``: building W1 (Embedding(10000, 64, mask_zero) -> LSTM(128,
  return_sequences) -> Dense(32), masked mse, Adam, B=32, T=100, lengths in [10, 100]),
  compiling it and running the first ``train_on_batch`` (PyTorch: the first step of the
  same model, masked loss by hand); ``--model gru``: the same with GRU(128) (Keras 3's
  default ``reset_after=True``; PyTorch's ``nn.GRU``);
* ``first predict``: the first ``predict`` after that step (the *predict first* run: a
  cold process whose first call is ``predict``, the training step after it);
* ``total``: everything, process start to the end of the first predict;
* ``then background compilation``: how long the process then waited for the parallel
  drivers, which graphmask compiles on a background thread after the first step (the
  first steps run one-thread drivers on shares of the tasks; ``kernels/launch.py``).

graphmask runs twice: **cold** with ``NUMBA_CACHE_DIR`` pointing at an empty folder (every
kernel compiles, what a new user meets) and **warm** with that folder filled by the cold
run. Keras runs with an empty ``JAX_COMPILATION_CACHE_DIR`` (its default: XLA compiles in
every new process). The cold graphmask process also records numba's compile events
(``numba.core.event``): how many specialisations compiled and the seconds each function's
compilation took (nested compilations are counted in their caller as well, so the column
does not add up to the total), which is where cold-start work must go.

Rounds alternate the libraries (``--rounds``); each row keeps a library's best round. The
machine is shared: compare the ratios of one run, never absolute seconds across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DATA = """
import os
import numpy as np
RNN = os.environ.get("COLD_RNN", "LSTM")
rng = np.random.default_rng(0)
B, T, V, H, D = 32, 100, 10000, 128, 32
lengths = rng.integers(10, T + 1, B)
x = np.zeros((B, T), np.int32)
for i, n in enumerate(lengths):
    x[i, :n] = rng.integers(1, V, n)
y = rng.normal(size=(B, T, D)).astype(np.float32)
"""

GRAPHMASK = """
import time
t0 = time.perf_counter()
import json, os, sys
RECORD = os.environ.get("COLD_RECORD") == "1"
if RECORD:
    from numba.core import event
    recorder_cm = event.install_recorder("numba:compile")
    recorder = recorder_cm.__enter__()
import graphmask as gm
t_import = time.perf_counter() - t0
""" + DATA + """
t1 = time.perf_counter()
inp = gm.Input((T,), dtype="int32")
h = getattr(gm, RNN)(H, return_sequences=True)(gm.Embedding(V, 64, mask_zero=True)(inp))
model = gm.Model(inp, gm.Dense(D)(h))
model.compile(optimizer="adam", loss="mse")
if os.environ.get("COLD_PREDICT_FIRST") == "1":  # a user whose first call is predict
    t2 = time.perf_counter()
    model.predict(x, verbose=0)
    t_predict = time.perf_counter() - t2
    t3 = time.perf_counter()
    model.train_on_batch(x, y)
    t_train = time.perf_counter() - t3 + t2 - t1
else:
    model.train_on_batch(x, y)
    t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    model.predict(x, verbose=0)
    t_predict = time.perf_counter() - t2
out = {"import": t_import, "first train": t_train, "first predict": t_predict,
       "total": time.perf_counter() - t0}
# the parallel drivers compile on a background thread after the first step (the process
# would wait for them at exit): how much longer that took after the first predict
t4 = time.perf_counter()
try:
    from graphmask.kernels.launch import wait_background
except ImportError:  # an older tree (--tree) without the two tiers
    wait_background = lambda: None  # noqa: E731
wait_background()
out["background"] = time.perf_counter() - t4
if RECORD:
    recorder_cm.__exit__(None, None, None)
    # nested compilations are contained in their caller's: "self" is a compilation
    # without the ones it started, so the self column adds up to the total
    stack, per = [], {}
    for ts, ev in recorder.buffer:
        if ev.is_start:
            stack.append([ev.data.get("dispatcher"), ts, 0.0])
            continue
        d, t_start, nested = stack.pop()
        f = getattr(d, "py_func", None) or getattr(d, "_pyfunc", None)
        name = f"{f.__module__}.{f.__qualname__}" if f is not None else str(d)
        if hasattr(d, "_pyfunc"):
            name += " (cfunc)"  # a task kernel (kernels/lstm.py TaskTable)
        n, incl, own = per.get(name, (0, 0.0, 0.0))
        per[name] = (n + 1, incl + ts - t_start, own + ts - t_start - nested)
        if stack:
            stack[-1][2] += ts - t_start
    out["compiles"] = sorted(([k, *v] for k, v in per.items()), key=lambda r: -r[3])
print("RESULT " + json.dumps(out))
"""

KERAS = """
import time
t0 = time.perf_counter()
import json, os
os.environ["KERAS_BACKEND"] = "jax"
import keras
t_import = time.perf_counter() - t0
""" + DATA + """
t1 = time.perf_counter()
inp = keras.Input((T,), dtype="int32")
h = getattr(keras.layers, RNN)(H, return_sequences=True)(
    keras.layers.Embedding(V, 64, mask_zero=True)(inp))
model = keras.Model(inp, keras.layers.Dense(D)(h))
model.compile(optimizer="adam", loss="mse")
model.train_on_batch(x, y)
t_train = time.perf_counter() - t1
t2 = time.perf_counter()
model.predict(x, verbose=0)
t_predict = time.perf_counter() - t2
print("RESULT " + json.dumps({"import": t_import, "first train": t_train,
                              "first predict": t_predict,
                              "total": time.perf_counter() - t0}))
"""

TORCH = """
import time
t0 = time.perf_counter()
import json
import torch
t_import = time.perf_counter() - t0
""" + DATA + """
t1 = time.perf_counter()
torch.manual_seed(0)
emb = torch.nn.Embedding(V, 64, padding_idx=None)
lstm = getattr(torch.nn, RNN)(64, H, batch_first=True)
dense = torch.nn.Linear(H, D)
params = [*emb.parameters(), *lstm.parameters(), *dense.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)
xt, yt = torch.from_numpy(x).long(), torch.from_numpy(y)
mask = (xt != 0).float()
def forward():
    return dense(lstm(emb(xt))[0])
opt.zero_grad()
err = ((forward() - yt) ** 2).mean(-1)
loss = (err * mask).sum() / mask.sum()
loss.backward()
opt.step()
t_train = time.perf_counter() - t1
t2 = time.perf_counter()
with torch.no_grad():
    forward()
t_predict = time.perf_counter() - t2
print("RESULT " + json.dumps({"import": t_import, "first train": t_train,
                              "first predict": t_predict,
                              "total": time.perf_counter() - t0}))
"""


def _run(code: str, env: dict, cwd: str = ROOT) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, cwd=cwd)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"benchmark process failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def _available(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                           env=dict(os.environ, KERAS_BACKEND="jax"))
    return probe.returncode == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=15,
                        help="compile-time rows to print (cold graphmask)")
    parser.add_argument("--model", choices=("lstm", "gru"), default="lstm",
                        help="W1 as given (LSTM) or with a GRU(128) in place of the LSTM")
    parser.add_argument("--tree", default=ROOT,
                        help="graphmask source tree to measure (default: this repository; "
                             "an exported older commit for before/after in one session)")
    parser.add_argument("--graphmask-only", action="store_true",
                        help="skip the peers (quick checks of a kernel change; no ratios)")
    args = parser.parse_args(argv)
    base = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    tree = os.path.abspath(args.tree)
    base["PYTHONPATH"] = tree + os.pathsep + base.get("PYTHONPATH", "")
    base["COLD_RNN"] = args.model.upper()
    peers = [("Keras 3 (JAX)", KERAS, "jax"), ("PyTorch", TORCH, "torch")]
    if args.graphmask_only:
        peers = []
    peers = [p for p in peers if _available(p[2]) and (p[2] != "jax" or _available("keras"))]
    missing = {"Keras 3 (JAX)", "PyTorch"} - {p[0] for p in peers}
    if missing and not args.graphmask_only:
        print(f"not installed, not measured: {sorted(missing)}", file=sys.stderr)
    best: dict[str, dict] = {}
    compiles = None

    def keep(name, res):
        if name not in best or res["total"] < best[name]["total"]:
            best[name] = {k: v for k, v in res.items() if k != "compiles"}

    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as jax:
            env = dict(base, NUMBA_CACHE_DIR=cache, COLD_RECORD="1" if r == 0 else "0")
            cold = _run(GRAPHMASK, env, tree)
            compiles = compiles or cold.get("compiles")
            keep("graphmask cold", cold)
            keep("graphmask warm", _run(GRAPHMASK, dict(env, COLD_RECORD="0"), tree))
            with tempfile.TemporaryDirectory() as cache2:
                keep("graphmask cold, predict first", _run(GRAPHMASK, dict(
                    base, NUMBA_CACHE_DIR=cache2, COLD_PREDICT_FIRST="1"), tree))
            for name, code, _ in peers:
                keep(name, _run(code, dict(base, JAX_COMPILATION_CACHE_DIR=jax)))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    cols = ["import", "first train", "first predict", "total"]
    print("| run | " + " | ".join(f"{c} (s)" for c in cols)
          + " | total / fastest peer | then background compilation (s) |")
    print("|---|" + "---|" * (len(cols) + 2))
    fastest = min((best[n]["total"] for n, _, _ in peers), default=None)
    for name, res in best.items():
        ratio = f"{res['total'] / fastest:.2f}x" if fastest else "n/a"
        bg = f"{res['background']:.2f}" if "background" in res else "-"
        print(f"| {name} | " + " | ".join(f"{res[c]:.2f}" for c in cols)
              + f" | {ratio} | {bg} |")
    if compiles:
        n = sum(c[1] for c in compiles)
        print(f"\ncold graphmask: {n} numba specialisations of {len(compiles)} functions "
              f"compiled in {sum(c[3] for c in compiles):.2f} s; the slowest by their own "
              f"time (without the nested compilations they started, so that column adds up "
              f"to the total; *with nested* includes them):\n")
        print("| function | specialisations | own (s) | with nested (s) |")
        print("|---|---|---|---|")
        for name, count, incl, own in compiles[:args.top]:
            print(f"| `{name}` | {count} | {own:.2f} | {incl:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
