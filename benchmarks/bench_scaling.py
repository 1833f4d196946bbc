"""Scaling curves of W1: graphmask against PyTorch's best variant and the physical bound.

Run from the repository root (OpenBLAS overrides unset, as for the other benchmarks;
matplotlib for ``--plot`` comes with ``pip install -e .[bench]``):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_scaling.py \\
        --steps 10 --rounds 1 --json scaling.json --plot benchmarks/scaling.png
    python benchmarks/bench_scaling.py --replot scaling.json --plot benchmarks/scaling.png

Sweeps, one change at a time from W1 (B=32, T=100, H=128, lengths uniform in [10, T]):
T in {25, 50, 100, 200, 400, 800}, B in {8, 16, 32, 64, 128, 256}, H in {64, 128, 256,
512}, and padding in {0, 25, 50, 75, 90, 95}% (lengths uniform around (1 - padding) T,
see ``bench_lstm.batch``). Each point is a training step and a forward pass
(``W1-predict``), timed by ``bench_lstm.run_case``: every library in its own fresh
process, the median of ``--steps`` steps after warm-up, each library's best of
``--rounds`` alternating rounds. The peer is PyTorch's faster variant at that point
(padded batch with a masked loss, or ``pack_padded_sequence``).

**The physical bound** is the time the model's matrix products need at the machine's
measured float32 GEMM peak, counting only kept positions (what a kernel that skips
padding must compute). With N = the number of kept positions (the sum of the lengths),
D = 64 (the embedding), H the LSTM's units and O = 32 (the Dense head):

    forward FLOPs = 2 N (4 H D      input projection, x_t @ kernel
                         + 4 H H    recurrent product, h_{t-1} @ recurrent_kernel
                         + H O)     Dense head
    train FLOPs   = 3 x forward     each product's backward is two products of its size
                                    (the input gradient and the weight gradient)

The gate nonlinearities and products (about 20 H operations per kept row, under 2% of
the GEMM work at H >= 64), the embedding gather, the loss and Adam's update (about 12
operations per weight, 0.8% of a W1 step) are not counted: they are memory-bound, not
GEMM work, so the bound is a lower limit that no implementation reaches. The peak is
measured in the same run (:func:`sgemm_peak`): the best of several NumPy float32
matmuls of the LSTM's GEMM shapes, on one thread and on as many threads as the run
gives the libraries (every core); the bound uses the higher of the two (on a loaded
machine the threaded GEMM can measure slower than one thread: the bound is then what
one core alone reaches, and a quiet machine's bound is lower still).

The machine is shared: the load average is recorded during the run and reported with
the results; compare the ratios of one run only. ``--threads N`` gives both libraries N
threads (``NUMBA_NUM_THREADS`` for graphmask's kernels, ``torch.set_num_threads`` for
PyTorch, through ``BENCH_THREADS``); on a machine busy with other work, one thread each
measures the kernels rather than how each library's thread pool copes with contention
(PyTorch's many short parallel regions per step suffer most).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_lstm import EMB, batch, machine, run_case  # noqa: E402

HEAD = 32  # W1's Dense(32)
W1 = {"b": 32, "t": 100, "h": 128, "padding": None}
SWEEPS = {
    "t": [25, 50, 100, 200, 400, 800],
    "b": [8, 16, 32, 64, 128, 256],
    "h": [64, 128, 256, 512],
    "padding": [0.0, 0.25, 0.5, 0.75, 0.9, 0.95],
}
KINDS = ("W1", "W1-predict")
LABELS = {"t": "T (time steps)", "b": "B (batch)", "h": "H (LSTM units)",
          "padding": "padding (% of positions)"}


def gemm_flops(lengths, h: int, kind: str = "W1", d: int = EMB, out: int = HEAD) -> int:
    """FLOPs of W1's matrix products over the kept positions (see the module docstring):
    forward ``2 N (4 H D + 4 H H + H O)``, a training step three times that."""
    n = int(np.sum(lengths))
    forward = 2 * n * (4 * h * d + 4 * h * h + h * out)
    return forward if kind == "W1-predict" else 3 * forward


def _matmul_best(m: int, k: int, n: int, repeat: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best


def sgemm_peak(threads=(1, 2), repeat: int = 20) -> dict:
    """Best float32 GEMM FLOP/s of NumPy's BLAS per thread count, over shapes like the
    LSTM's: the input projection (N, D) @ (D, 4H) and the stacked recurrent products
    (N, H) @ (H, 4H) at W1's N = 3200 rows and H = 128 and 512."""
    from threadpoolctl import threadpool_limits
    shapes = [(3200, EMB, 4 * 128), (3200, 128, 4 * 128), (3200, 512, 4 * 512)]
    peak = {}
    for n in threads:
        with threadpool_limits(limits=n, user_api="blas"):
            peak[n] = max(_matmul_best(*s, repeat) for s in shapes)
    return peak


def points():
    """``[(sweep, value, params)]``: every sweep's points, one change from W1."""
    return [(sweep, v, {**W1, sweep: v}) for sweep, values in SWEEPS.items()
            for v in values]


def run(steps: int, rounds: int, threads: int | None = None) -> dict:
    """Time every point (W1's own point once), with the bound and the load average;
    ``threads``: each library's thread count (default: every core)."""
    if threads:
        os.environ["NUMBA_NUM_THREADS"] = os.environ["BENCH_THREADS"] = str(threads)
    threads = threads or os.cpu_count() or 1
    peak = sgemm_peak(threads=sorted({1, threads}))
    print("sgemm peak: " + ", ".join(f"{n} thread(s) {p / 1e9:.1f} GFLOP/s"
                                      for n, p in peak.items()), flush=True)
    done, rows, loads = {}, [], [os.getloadavg()[0]]
    for sweep, value, p in points():
        _, lengths = batch(p["b"], p["t"], p["padding"])
        for kind in KINDS:
            key = (kind, p["b"], p["t"], p["h"], p["padding"])
            if key not in done:
                label = f"{kind} {sweep}={value}"
                done[key] = run_case(label, kind, p["b"], p["t"], p["h"], p["padding"],
                                     steps, None, rounds)
                loads.append(os.getloadavg()[0])
            r = done[key]
            rows.append({"sweep": sweep, "value": value, "kind": kind, **p,
                         "kept": int(np.sum(lengths)),
                         "flops": gemm_flops(lengths, p["h"], kind),
                         **{k: v for k, v in r.items() if k != "case"}})
    return {"machine": machine(), "peak_flops": {str(k): v for k, v in peak.items()},
            "threads": threads, "steps": steps, "rounds": rounds,
            "load_average": {"min": min(loads), "max": max(loads),
                             "mean": sum(loads) / len(loads)},
            "rows": rows}


def bound_ms(res: dict, row: dict) -> float:
    """The row's physical bound (ms): its GEMM FLOPs at the run's best measured peak."""
    return row["flops"] / max(res["peak_flops"].values()) * 1e3


def peer_ms(row: dict) -> float:
    """PyTorch's faster variant at this point (ms)."""
    return min(v for k, v in row.items() if k.startswith("torch") and k.endswith("_ms"))


def markdown(res: dict) -> str:
    """The table of RESULTS.md's Scaling section."""
    out = ["| sweep | value | kind | kept positions | graphmask | torch padded+mask | "
           "torch packed | ratio vs best peer | bound | graphmask / bound |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        value = f"{r['value']:.0%}" if r["sweep"] == "padding" else str(r["value"])
        out.append(
            f"| {r['sweep'].upper() if r['sweep'] != 'padding' else 'padding'} | {value} | "
            f"{'train' if r['kind'] == 'W1' else 'predict'} | {r['kept']} | "
            f"{r['graphmask_ms']:.2f} ms | {r.get('torch padded+mask_ms', float('nan')):.2f} ms"
            f" | {r.get('torch packed_ms', float('nan')):.2f} ms | **{r['ratio']:.2f}** | "
            f"{bound_ms(res, r):.2f} ms | {r['graphmask_ms'] / bound_ms(res, r):.1f}x |")
    return "\n".join(out)


def plot(res: dict, path: str) -> None:
    """One panel per sweep: ms per step of graphmask and PyTorch's best (train solid,
    predict dashed) and the physical bound (black), log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(SWEEPS), figsize=(4.2 * len(SWEEPS), 4.2))
    style = {"W1": "-", "W1-predict": "--"}
    for ax, sweep in zip(axes, SWEEPS):
        for kind in KINDS:
            rows = [r for r in res["rows"] if r["sweep"] == sweep and r["kind"] == kind]
            xs = [100 * r["value"] if sweep == "padding" else r["value"] for r in rows]
            name = "train" if kind == "W1" else "predict"
            ax.plot(xs, [r["graphmask_ms"] for r in rows], style[kind], marker="o",
                    color="tab:blue", label=f"graphmask {name}")
            ax.plot(xs, [peer_ms(r) for r in rows], style[kind], marker="s",
                    color="tab:orange", label=f"PyTorch best {name}")
            ax.plot(xs, [bound_ms(res, r) for r in rows], style[kind], color="black",
                    label=f"bound {name} (GEMM FLOPs / sgemm peak)")
        ax.set_yscale("log")
        if sweep != "padding":
            ax.set_xscale("log", base=2)
            ax.set_xticks(SWEEPS[sweep], [str(v) for v in SWEEPS[sweep]])
        ax.set_xlabel(LABELS[sweep])
        ax.set_ylabel("ms per step")
        ax.grid(True, which="both", alpha=0.3)
    peak = max(res["peak_flops"].values()) / 1e9
    load = res["load_average"]
    fig.suptitle(f"W1 scaling, one change at a time from B=32, T=100, H=128; "
                 f"{res['threads']} thread{'s' if res['threads'] > 1 else ''} per library "
                 f"(bound at the measured sgemm peak {peak:.0f} GFLOP/s; "
                 f"load average {load['min']:.1f}-{load['max']:.1f})")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int,
                    help="threads for each library (default: every core)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--plot", help="draw the curves into this PNG (needs matplotlib)")
    ap.add_argument("--replot", help="read results from this JSON instead of running")
    args = ap.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            res = json.load(f)
    else:
        if os.environ.get("OPENBLAS_CORETYPE"):
            print("note: OPENBLAS_CORETYPE is set; run with `env -u OPENBLAS_CORETYPE -u "
                  "OPENBLAS_L2_SIZE` to measure the BLAS at full speed", file=sys.stderr)
        res = run(args.steps, args.rounds, args.threads)
    print(markdown(res))
    load = res["load_average"]
    print(f"\nload average during the run: {load['min']:.2f} to {load['max']:.2f} "
          f"(mean {load['mean']:.2f})")
    if args.json and not args.replot:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.plot:
        plot(res, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
