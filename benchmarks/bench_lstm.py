"""Speed of graphmask against PyTorch (and Keras 3 on JAX) on masked LSTM workloads.

Run from the repository root, with the machine's OpenBLAS overrides unset for this
command only (they slow a current BLAS down; tests and CI keep them):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lstm.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lstm.py --sweeps

Every figure is the median of ``--steps`` timed steps after warm-up; each library runs in
its own fresh process (no other library's threads in it), the libraries alternate for
``--rounds`` rounds and each keeps its best median. Every ratio is graphmask / best peer
measured in this same run (the machines are shared and noisy, so only ratios from one
run are comparable). Peers that are not installed are skipped.

Workloads (the issue's W1/W2, reproduced exactly):
  W1         Embedding(10000, 64, mask_zero) -> LSTM(128, return_sequences) -> Dense(32),
             masked mse, Adam(1e-3), B=32, T=100, lengths uniform in [10, 100] (right
             padded, seeded), float32; one training step (forward + backward + update)
  W1-predict the same model, forward only
  W2         ... -> LSTM(128) -> Dense(1), binary crossentropy, one training step
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

VOCAB, EMB = 10000, 64


def batch(b, t, padding, seed=0):
    """Ids (B, T) right padded: lengths uniform in [10, T] by default, or a share of
    ``padding`` positions padded (lengths uniform around (1 - padding) * T)."""
    rng = np.random.default_rng(seed)
    if padding is None:
        lengths = rng.integers(min(10, t), t + 1, size=b)
    else:
        mean = max(1, round((1 - padding) * t))
        lo, hi = max(1, mean - mean // 2), min(t, mean + mean // 2)
        lengths = rng.integers(lo, hi + 1, size=b) if padding else np.full(b, t)
    ids = rng.integers(1, VOCAB, size=(b, t)).astype(np.int32)
    for row, n in zip(ids, lengths):
        row[n:] = 0
    return ids, lengths


def median_time(fn, steps, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ------------------------------------------------------------------------ graphmask
def gm_step(kind, b, t, h, padding):
    """One graphmask step of ``kind`` on this workload, as a function of no arguments."""
    import graphmask as gm
    gm.clear_session()
    gm.set_random_seed(0)
    ids, _ = batch(b, t, padding)
    x = gm.Input(shape=(t,), dtype="int32")
    e = gm.Embedding(VOCAB, EMB, mask_zero=True)(x)
    if kind == "W2":
        out = gm.Dense(1, activation="sigmoid")(gm.LSTM(h)(e))
        y = (np.random.default_rng(1).random((b, 1)) > 0.5).astype(np.float32)
        loss = "binary_crossentropy"
    else:
        out = gm.Dense(32)(gm.LSTM(h, return_sequences=True)(e))
        y = np.random.default_rng(1).normal(size=(b, t, 32)).astype(np.float32)
        loss = "mse"
    m = gm.Model(x, out)
    m.compile(optimizer=gm.optimizers.Adam(1e-3), loss=loss)
    if kind == "W1-predict":
        return lambda: m.predict_on_batch(ids)
    return lambda: m.train_on_batch(ids, y)


def gm_case(kind, b, t, h, padding, steps):
    return median_time(gm_step(kind, b, t, h, padding), steps)


# ------------------------------------------------------------------------ PyTorch
TORCH_VARIANTS = {"torch padded+mask": False, "torch packed": True}


def torch_step(kind, b, t, h, padding, packed):
    """One PyTorch step of ``kind`` as a function of no arguments: the padded batch with a
    masked loss (``packed=False``) or packed sequences (``packed=True``)."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 0)) or os.cpu_count() or 1)
    ids_np, lengths_np = batch(b, t, padding)
    ids = torch.from_numpy(ids_np.astype(np.int64))
    lengths = torch.from_numpy(lengths_np)
    mask = ids != 0
    emb = nn.Embedding(VOCAB, EMB)
    lstm = nn.LSTM(EMB, h, batch_first=True)
    head = nn.Linear(h, 1 if kind == "W2" else 32)
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    if kind == "W2":
        y = torch.from_numpy((np.random.default_rng(1).random((b, 1)) > 0.5)
                             .astype(np.float32))
    else:
        y = torch.from_numpy(np.random.default_rng(1).normal(size=(b, t, 32))
                             .astype(np.float32))
    bce = nn.BCEWithLogitsLoss()

    def forward():
        x = emb(ids)
        if packed:
            seq = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, (hn, _) = lstm(seq)
            if kind == "W2":
                return head(hn[-1])
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
            return head(out)
        out, _ = lstm(x)
        if kind == "W2":  # the output at the last kept step, as the masked LSTM gives
            last = out[torch.arange(b), (lengths - 1).clamp(min=0)]
            return head(last)
        return head(out)

    def loss_of(pred):
        if kind == "W2":
            return bce(pred, y)
        score = ((pred - y) ** 2).mean(-1)
        return (score * mask).sum() / mask.sum().clamp(min=1)

    if kind == "W1-predict":
        def step():
            with torch.no_grad():
                forward()
    else:
        def step():
            opt.zero_grad(set_to_none=True)
            loss_of(forward()).backward()
            opt.step()
    return step


def torch_cases(kind, b, t, h, padding, steps):
    """{variant: seconds} for the padded batch with a masked loss, and packed sequences."""
    return {variant: median_time(torch_step(kind, b, t, h, padding, packed), steps)
            for variant, packed in TORCH_VARIANTS.items()}


# ------------------------------------------------------------------------ Keras 3 (JAX)
KERAS_SNIPPET = r"""
import json, os, sys, time
import numpy as np
os.environ["KERAS_BACKEND"] = "jax"
import keras
sys.path.insert(0, {here!r})
from bench_lstm import batch, median_time, VOCAB, EMB
kind, b, t, h, padding, steps = json.loads(sys.argv[1])
ids, _ = batch(b, t, padding)
keras.utils.set_random_seed(0)
x = keras.Input(shape=(t,), dtype="int32")
e = keras.layers.Embedding(VOCAB, EMB, mask_zero=True)(x)
if kind == "W2":
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.LSTM(h)(e))
    y = (np.random.default_rng(1).random((b, 1)) > 0.5).astype(np.float32)
    loss = "binary_crossentropy"
else:
    out = keras.layers.Dense(32)(keras.layers.LSTM(h, return_sequences=True)(e))
    y = np.random.default_rng(1).normal(size=(b, t, 32)).astype(np.float32)
    loss = "mse"
m = keras.Model(x, out)
m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
if kind == "W1-predict":
    fn = lambda: m.predict_on_batch(ids)
else:
    fn = lambda: m.train_on_batch(ids, y)
print(json.dumps(median_time(fn, steps)))
"""


def keras_case(python, kind, b, t, h, padding, steps):
    if not python:
        return None
    code = KERAS_SNIPPET.format(here=os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run([python, "-c", code, json.dumps([kind, b, t, h, padding, steps])],
                             capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def find_keras_python(explicit):
    """A Python with keras + jax: ``--keras-python``, else this one if it has both."""
    candidates = [explicit] if explicit else [sys.executable]
    for py in candidates:
        try:
            ok = subprocess.run([py, "-c", "import jax, keras"], capture_output=True,
                                env={**os.environ, "KERAS_BACKEND": "jax"},
                                timeout=120).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return py
    return None


# ------------------------------------------------------------------------ start-up
STARTUP_SNIPPET = r"""
import time
t0 = time.perf_counter()
import numpy as np
import graphmask as gm
x = gm.Input(shape=(100,), dtype="int32")
m = gm.Model(x, gm.Dense(32)(gm.LSTM(128, return_sequences=True)(
    gm.Embedding(10000, 64, mask_zero=True)(x))))
m.predict(np.ones((32, 100), dtype="int32"))
print(time.perf_counter() - t0)
"""


def startup_times():
    """Seconds from ``import graphmask`` to the first W1 predict: cold (empty numba
    cache) and warm (cache filled by the cold run)."""
    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        res = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", STARTUP_SNIPPET], env=env,
                                 capture_output=True, text=True, timeout=1800)
            res.append(float(out.stdout.strip().splitlines()[-1]))
    return res


# ------------------------------------------------------------------------ report
def machine():
    info = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import scipy.linalg  # noqa: F401  (loads the BLAS numba uses)
        from threadpoolctl import threadpool_info
        info["blas"] = [(p.get("internal_api"), p.get("version"), p.get("architecture"),
                         p.get("num_threads")) for p in threadpool_info()
                        if p.get("user_api") == "blas"]
    except ImportError:
        pass
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    import numba
    info["numba"] = numba.__version__
    info["threading_layer"] = "see graphmask.kernels"
    return info


def worker(lib, kind, b, t, h, padding, steps):
    """Measure one library in a fresh process: each library gets the cores to itself and
    no other library's thread pool (OpenMP, BLAS) spinning in the same process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib,
           json.dumps([kind, b, t, h, padding, steps])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        if lib == "torch" and "No module named 'torch'" in out.stderr:
            return {}
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(lib, params):
    kind, b, t, h, padding, steps = params
    if lib == "graphmask":
        res = {"graphmask": gm_case(kind, b, t, h, padding, steps)}
    else:
        res = torch_cases(kind, b, t, h, padding, steps)
    print(json.dumps(res))


def run_case(label, kind, b, t, h, padding, steps, keras_py, rounds):
    """Alternate the libraries for ``rounds`` rounds; keep each one's best median."""
    best: dict[str, float] = {}
    for r in range(rounds):
        libs = ["graphmask", "torch"] if r % 2 == 0 else ["torch", "graphmask"]
        for lib in libs:
            for name, sec in worker(lib, kind, b, t, h, padding, steps).items():
                best[name] = min(sec, best.get(name, float("inf")))
        k = keras_case(keras_py, kind, b, t, h, padding, steps)
        if k is not None:
            best["keras3-jax"] = min(k, best.get("keras3-jax", float("inf")))
    ours = best.pop("graphmask")
    peers = best
    top = min(peers, key=peers.get) if peers else None
    ratio = ours / peers[top] if top else float("nan")
    row = {"case": label, "graphmask_ms": ours * 1e3,
           **{f"{p}_ms": v * 1e3 for p, v in peers.items()},
           "best_peer": top, "ratio": ratio}
    peer_txt = "  ".join(f"{p} {v * 1e3:7.2f} ms" for p, v in peers.items())
    print(f"{label:<24} graphmask {ours * 1e3:7.2f} ms  {peer_txt}  "
          f"ratio vs {top}: {ratio:.2f}", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sweeps", action="store_true", help="also T, B, H and padding sweeps")
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--keras-python", help="a Python with keras and jax installed")
    ap.add_argument("--no-startup", action="store_true")
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternating rounds per case; each library keeps its best median")
    ap.add_argument("--json", help="write all rows to this file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        run_worker(args.worker[0], json.loads(args.worker[1]))
        return
    if os.environ.get("OPENBLAS_CORETYPE"):
        print("note: OPENBLAS_CORETYPE is set; run with `env -u OPENBLAS_CORETYPE -u "
              "OPENBLAS_L2_SIZE` to measure the BLAS at full speed", file=sys.stderr)
    keras_py = None if args.no_keras else find_keras_python(args.keras_python)
    print(json.dumps(machine(), indent=1))
    rows = []

    def case(label, kind, b=32, t=100, h=128, padding=None):
        rows.append(run_case(label, kind, b, t, h, padding, args.steps, keras_py, args.rounds))

    for kind in ("W1", "W1-predict", "W2"):
        case(kind, kind)
    if args.sweeps:
        for t in (25, 100, 400):
            case(f"W1 T={t}", "W1", t=t)
        for b in (8, 32, 128):
            case(f"W1 B={b}", "W1", b=b)
        for h in (64, 128, 256):
            case(f"W1 H={h}", "W1", h=h)
        for p in (0.0, 0.5, 0.9):
            for kind in ("W1", "W1-predict"):
                case(f"{kind} padding={p:.0%}", kind, padding=p)
    if not args.no_startup:
        cold, warm = startup_times()
        print(f"start-up (import graphmask -> first W1 predict): cold {cold:.2f} s, "
              f"warm {warm:.2f} s")
        rows.append({"case": "startup", "cold_s": cold, "warm_s": warm})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
