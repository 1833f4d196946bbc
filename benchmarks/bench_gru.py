"""Speed of graphmask's GRU against PyTorch's ``nn.GRU`` on the GRU variant of W1.

Run from the repository root, with the machine's OpenBLAS overrides unset for this
command only (as ``bench_lstm.py``):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gru.py

W1-GRU: Embedding(10000, 64, mask_zero) -> GRU(128, return_sequences) -> Dense(32),
masked mse, Adam(1e-3), B=32, T=100, lengths uniform in [10, 100] (right padded,
seeded), float32; one training step, and the forward pass alone (W1-GRU-predict).
``--reset-before`` runs ``reset_after=False`` (PyTorch has only the reset-after form, so
the peer stays ``nn.GRU``). PyTorch runs over the padded batch with a masked loss, and
with ``pack_padded_sequence``. Each library runs in its own fresh process, they alternate
for ``--rounds`` rounds and each keeps its best median of ``--steps`` timed steps after
warm-up; the ratio is graphmask / the fastest peer in this same run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import EMB, VOCAB, batch, median_time  # noqa: E402


def gm_case(kind, b, t, h, after, steps):
    import graphmask as gm
    gm.clear_session()
    gm.set_random_seed(0)
    ids, _ = batch(b, t, None)
    x = gm.Input(shape=(t,), dtype="int32")
    e = gm.Embedding(VOCAB, EMB, mask_zero=True)(x)
    out = gm.Dense(32)(gm.GRU(h, return_sequences=True, reset_after=after)(e))
    y = np.random.default_rng(1).normal(size=(b, t, 32)).astype(np.float32)
    m = gm.Model(x, out)
    m.compile(optimizer=gm.optimizers.Adam(1e-3), loss="mse")
    if kind == "predict":
        return {"graphmask": median_time(lambda: m.predict_on_batch(ids), steps)}
    return {"graphmask": median_time(lambda: m.train_on_batch(ids, y), steps)}


def torch_cases(kind, b, t, h, after, steps):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    torch.set_num_threads(1 if os.environ.get("NUMBA_NUM_THREADS") == "1"
                          else os.cpu_count() or 1)
    ids_np, lengths_np = batch(b, t, None)
    ids = torch.from_numpy(ids_np.astype(np.int64))
    lengths = torch.from_numpy(lengths_np)
    mask = ids != 0
    emb, gru, head = nn.Embedding(VOCAB, EMB), nn.GRU(EMB, h, batch_first=True), nn.Linear(h, 32)
    opt = torch.optim.Adam([*emb.parameters(), *gru.parameters(), *head.parameters()], lr=1e-3)
    y = torch.from_numpy(np.random.default_rng(1).normal(size=(b, t, 32)).astype(np.float32))

    def forward(packed):
        x = emb(ids)
        if packed:
            seq = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = pad_packed_sequence(gru(seq)[0], batch_first=True, total_length=t)
            return head(out)
        return head(gru(x)[0])

    res = {}
    for variant, packed in (("torch padded+mask", False), ("torch packed", True)):
        if kind == "predict":
            def step(packed=packed):
                with torch.no_grad():
                    forward(packed)
        else:
            def step(packed=packed):
                opt.zero_grad(set_to_none=True)
                score = ((forward(packed) - y) ** 2).mean(-1)
                ((score * mask).sum() / mask.sum().clamp(min=1)).backward()
                opt.step()
        res[variant] = median_time(step, steps)
    return res


#: --single-thread: one thread in every library (numba, OpenMP, BLAS, torch)
SINGLE = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
          "MKL_NUM_THREADS": "1"}
single = False


def worker(lib, params):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, json.dumps(params)]
    env = dict(os.environ, **(SINGLE if single else {}))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        if lib == "torch" and "No module named 'torch'" in out.stderr:
            return {}
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(label, params, rounds):
    best: dict[str, float] = {}
    for r in range(rounds):
        for lib in (["graphmask", "torch"] if r % 2 == 0 else ["torch", "graphmask"]):
            for name, sec in worker(lib, params).items():
                best[name] = min(sec, best.get(name, float("inf")))
    ours = best.pop("graphmask")
    top = min(best, key=best.get) if best else None
    ratio = ours / best[top] if top else float("nan")
    peers = "  ".join(f"{p} {v * 1e3:7.2f} ms" for p, v in best.items())
    print(f"{label:<26} graphmask {ours * 1e3:7.2f} ms  {peers}  ratio vs {top}: {ratio:.2f}",
          flush=True)
    return {"case": label, "graphmask_ms": ours * 1e3,
            **{f"{p}_ms": v * 1e3 for p, v in best.items()}, "ratio": ratio}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reset-before", action="store_true",
                    help="graphmask's GRU with reset_after=False")
    ap.add_argument("--single-thread", action="store_true",
                    help="one thread in every library (a fair comparison on a loaded machine)")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("params", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        fn = gm_case if a.worker == "graphmask" else torch_cases
        print(json.dumps(fn(*json.loads(a.params))))
        return
    global single
    single = a.single_thread
    after = not a.reset_before
    rows = [run_case(f"W1-GRU train{'' if after else ' (reset_after=False)'}",
                     ["train", 32, 100, 128, after, a.steps], a.rounds),
            run_case(f"W1-GRU predict{'' if after else ' (reset_after=False)'}",
                     ["predict", 32, 100, 128, after, a.steps], a.rounds)]
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
