"""Throughput of data-parallel fit on 2 Dask worker processes against 1 local process.

Run from the repository root (numba's cache warm: run any W1 benchmark once first):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_distributed.py

Workload: W1 of ``bench_lstm.py`` (Embedding(10000, 64, mask_zero) -> LSTM(128,
return_sequences) -> Dense(32), masked mse, Adam(1e-3), T=100, lengths uniform in
[10, 100], float32) trained with ``fit`` on global batches of B = 64 and 128.

* local: ``model.fit`` in this process (numba on every core, as by default);
* dask: the same ``fit`` with ``distribute=DaskStrategy(client)`` on a
  ``LocalCluster(n_workers=2, threads_per_worker=1)`` on the same machine (one
  single-threaded worker per core; the driver mostly waits);
* 1 shard: ``DaskStrategy(client, n_shards=1)``, the whole batch on one worker: against
  the 2-shard figure it shows how the compute scales from one worker to two.

Each figure is the best of ``--rounds`` alternating rounds of ``--steps`` steps (after
one warm-up fit); throughput is samples per second. The overhead per step is the step's
wall time minus its slowest shard's plan time (scatter of the weights, task round trip,
result transfer, adding up on the driver). A third line times a model too small to
compute anything (Dense(1) on 4 rows): the cluster's fixed cost per step.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import EMB, VOCAB, batch  # noqa: E402

T, H = 100, 128


def w1_model():
    import graphmask as gm
    gm.clear_session()
    gm.set_random_seed(0)
    x = gm.Input(shape=(T,), dtype="int32")
    e = gm.Embedding(VOCAB, EMB, mask_zero=True)(x)
    m = gm.Model(x, gm.Dense(32)(gm.LSTM(H, return_sequences=True)(e)))
    m.compile(optimizer=gm.optimizers.Adam(1e-3), loss="mse")
    return m


def tiny_model():
    import graphmask as gm
    gm.clear_session()
    x = gm.Input(shape=(3,))
    m = gm.Model(x, gm.Dense(1)(x))
    m.compile(optimizer="sgd", loss="mse")
    return m


def data(b, steps):
    xs = [batch(b, T, None, seed=s)[0] for s in range(steps)]
    ids = np.concatenate(xs)
    y = np.random.default_rng(1).normal(size=(len(ids), T, 32)).astype(np.float32)
    return ids, y


def timed_fit(model, x, y, b, strategy=None):
    before = dict(strategy.stats) if strategy else None
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=b, epochs=1, shuffle=False, verbose=0, distribute=strategy)
    secs = time.perf_counter() - t0
    steps = len(x) // b
    over = None
    if strategy:
        wall = strategy.stats["seconds"] - before["seconds"]
        shard = strategy.stats["shard_seconds"] - before["shard_seconds"]
        over = (wall - shard) / steps
    return secs / steps, over


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    from graphmask.distribute import DaskStrategy, worker_env

    # warm the numba cache before the workers start (they load it instead of compiling)
    m = w1_model()
    x, y = data(8, 1)
    m.fit(x, y, batch_size=8, verbose=0)
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", env=worker_env())
    client = Client(cluster)
    print(f"LocalCluster(2 workers) up in {time.perf_counter() - t0:.2f} s")
    strategy, single = DaskStrategy(client), DaskStrategy(client, n_shards=1)
    rows = []
    for b in args.batches:
        x, y = data(b, args.steps)
        local, dist, one = w1_model(), w1_model(), w1_model()
        timed_fit(local, x[:b], y[:b], b)
        timed_fit(dist, x[:b], y[:b], b, strategy)
        timed_fit(one, x[:b], y[:b], b, single)
        best_l, best_d, best_o, best_1 = np.inf, np.inf, np.inf, np.inf
        for _ in range(args.rounds):
            best_l = min(best_l, timed_fit(local, x, y, b)[0])
            d, o = timed_fit(dist, x, y, b, strategy)
            if d < best_d:
                best_d, best_o = d, o
            best_1 = min(best_1, timed_fit(one, x, y, b, single)[0])
        rows.append((f"W1 B={b}", best_l, best_d, best_o, b, best_1))
    tiny = tiny_model()
    xt = np.zeros((4 * args.steps, 3), np.float32)
    yt = np.zeros((4 * args.steps, 1), np.float32)
    timed_fit(tiny, xt[:4], yt[:4], 4, strategy)
    tl = min(timed_fit(tiny, xt, yt, 4)[0] for _ in range(args.rounds))
    td = min(timed_fit(tiny, xt, yt, 4, strategy) for _ in range(args.rounds))
    t1 = min(timed_fit(tiny, xt, yt, 4, single)[0] for _ in range(args.rounds))
    rows.append(("Dense(1), B=4", tl, td[0], td[1], 4, t1))
    print("| case | local step | 2 workers step | overhead/step | 1 shard step | local "
          "samples/s | 2 workers samples/s | ratio (2 workers / local throughput) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, tl, td, over, b, t1 in rows:
        print(f"| {name} | {tl * 1e3:.1f} ms | {td * 1e3:.1f} ms | {over * 1e3:.1f} ms | "
              f"{t1 * 1e3:.1f} ms | {b / tl:.0f} | {b / td:.0f} | **{tl / td:.2f}** |")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
