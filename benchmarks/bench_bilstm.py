"""Speed of a bidirectional LSTM tagger in graphmask against PyTorch.

Run from the repository root, with the machine's OpenBLAS overrides unset for this
command only (as for ``bench_lstm.py``):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_bilstm.py

Workload (issue 13): Embedding(10000, 64, mask_zero) -> Bidirectional(LSTM(128,
return_sequences=True)) -> Dense(17, softmax), sparse categorical crossentropy masked
by the padding, Adam(1e-3), B=32, T=100, lengths uniform in [10, 100] (right padded,
seeded), float32. ``train``: one training step (forward, backward, update);
``predict``: the forward pass. ``graphmask``: the runtime's choice, which for an LSTM
at B=32 or more is one direction after the other, each on all threads by sample
groups (below 32 samples: side by side, one thread each); it is also timed with
side-by-side steps turned off (``graphmask.runtime.SIDE_BY_SIDE = False``), the same
thing at B=32; ``--batch 16`` shows the side-by-side pairs.

Peers: PyTorch's ``nn.LSTM(bidirectional=True)`` over the padded batch with a masked
loss (fast, but its backward direction reads the padding first, so it does not compute
the masked model), and over ``pack_padded_sequence`` (the masked model). The ratio is
graphmask / the fastest peer measured in the same run; each library runs in its own
fresh process, the libraries alternate for ``--rounds`` rounds and each keeps its best
median of ``--steps`` steps after warm-up. ``--single-thread`` runs both libraries on one
thread (numba, BLAS, PyTorch's intra-op pool): the fairer figure on a loaded machine,
where a two-thread pool spinning beside other processes measures the load, not the
library.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import EMB, VOCAB, batch, machine, median_time  # noqa: E402

TAGS = 17
#: graphmask with side-by-side steps turned off (``runtime.SIDE_BY_SIDE``): shown
#: beside the default, never a peer
SEQ = "graphmask one after the other"


def targets(b, t):
    return np.random.default_rng(1).integers(0, TAGS, size=(b, t)).astype(np.int32)


# ------------------------------------------------------------------------ graphmask
def gm_case(kind, b, t, h, steps):
    import graphmask as gm
    gm.clear_session()
    gm.set_random_seed(0)
    ids, _ = batch(b, t, None)
    x = gm.Input(shape=(t,), dtype="int32")
    e = gm.Embedding(VOCAB, EMB, mask_zero=True)(x)
    hs = gm.Bidirectional(gm.LSTM(h, return_sequences=True))(e)
    m = gm.Model(x, gm.Dense(TAGS, activation="softmax")(hs))
    m.compile(optimizer=gm.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    y = targets(b, t)
    step = (lambda: m.predict_on_batch(ids)) if kind == "predict" else (
        lambda: m.train_on_batch(ids, y))
    from graphmask import runtime
    res = {}
    for name, on in ((SEQ, False), ("graphmask", True)):  # alternated by the rounds
        runtime.SIDE_BY_SIDE = on
        res[name] = median_time(step, steps)
    return res


# ------------------------------------------------------------------------ PyTorch
def torch_cases(kind, b, t, h, steps):
    """{variant: seconds}: the padded batch with a masked loss, and packed sequences."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("BILSTM_THREADS", 0)) or os.cpu_count() or 1)
    ids_np, lengths_np = batch(b, t, None)
    ids = torch.from_numpy(ids_np.astype(np.int64))
    lengths = torch.from_numpy(lengths_np)
    mask = (ids != 0).float()
    emb = nn.Embedding(VOCAB, EMB)
    lstm = nn.LSTM(EMB, h, batch_first=True, bidirectional=True)
    head = nn.Linear(2 * h, TAGS)
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    y = torch.from_numpy(targets(b, t).astype(np.int64))
    ce = nn.CrossEntropyLoss(reduction="none")

    def forward(packed):
        x = emb(ids)
        if packed:
            seq = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = lstm(seq)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        else:
            out, _ = lstm(x)
        return head(out)

    def loss_of(logits):
        score = ce(logits.reshape(-1, TAGS), y.reshape(-1)).reshape(b, t)
        return (score * mask).sum() / mask.sum().clamp(min=1)

    res = {}
    for variant, packed in (("torch padded+mask", False), ("torch packed", True)):
        if kind == "predict":
            def step(packed=packed):
                with torch.no_grad():
                    torch.softmax(forward(packed), -1)
        else:
            def step(packed=packed):
                opt.zero_grad(set_to_none=True)
                loss_of(forward(packed)).backward()
                opt.step()
        res[variant] = median_time(step, steps)
    return res


# ------------------------------------------------------------------------ driver
def worker(lib, params, single=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, json.dumps(params)]
    env = dict(os.environ)
    if single:
        env.update(BILSTM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        if lib == "torch" and "No module named 'torch'" in out.stderr:
            return {}
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(kind, b, t, h, steps, rounds, single=False):
    best: dict[str, float] = {}
    for r in range(rounds):
        for lib in (["graphmask", "torch"] if r % 2 == 0 else ["torch", "graphmask"]):
            for name, sec in worker(lib, [kind, b, t, h, steps], single).items():
                best[name] = min(sec, best.get(name, float("inf")))
    ours = best.pop("graphmask")
    seq = best.pop(SEQ)
    top = min(best, key=best.get) if best else None
    ratio = ours / best[top] if top else float("nan")
    peers = "  ".join(f"{p} {v * 1e3:7.2f} ms" for p, v in best.items())
    threads = ", 1 thread" if single else ""
    print(f"BiLSTM {kind:<8} B={b} T={t} H={h}{threads}: graphmask {ours * 1e3:7.2f} ms "
          f"({SEQ}: {seq * 1e3:7.2f} ms)  {peers}  ratio vs {top}: {ratio:.2f}", flush=True)
    return {"case": kind, "b": b, "t": t, "h": h, "single_thread": single,
            "graphmask_ms": ours * 1e3, "graphmask_one_after_the_other_ms": seq * 1e3,
            **{f"{p}_ms": v * 1e3 for p, v in best.items()}, "best_peer": top,
            "ratio": ratio}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=100)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--single-thread", action="store_true",
                    help="one thread in every library")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        lib, params = args.worker[0], json.loads(args.worker[1])
        res = gm_case(*params) if lib == "graphmask" else torch_cases(*params)
        print(json.dumps(res))
        return
    print(json.dumps(machine(), indent=1))
    rows = [run_case(kind, args.batch, args.time, args.units, args.steps, args.rounds,
                     args.single_thread) for kind in ("train", "predict")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
