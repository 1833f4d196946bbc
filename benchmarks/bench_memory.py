"""Peak memory of 100 W1 training steps: graphmask against PyTorch, one fresh process each.

Run from the repository root (OpenBLAS overrides unset, as for the other benchmarks):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_memory.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_memory.py --trace

W1 (as in ``bench_lstm.py``, whose model builders this script imports): Embedding(10000,
64, mask_zero) -> LSTM(128, return_sequences) -> Dense(32), masked mse, Adam(1e-3), B=32,
T=100, lengths uniform in [10, 100], right padded, float32, the same batch for every
library. Each row is a fresh Python process that imports NumPy, then the library, builds
the model and runs ``--steps`` training steps (graphmask ``train_on_batch``; PyTorch the
padded batch with a masked loss, or ``pack_padded_sequence``):

* ``import``: peak resident set once the library is imported: what the library costs
  before any model exists (the ``python + numpy`` row is the interpreter);
* ``peak``: the peak resident set at the end of the run, the high-water mark of the
  process (``VmHWM`` on Linux rather than ``ru_maxrss``: see :func:`peak_bytes`);
* ``training``: ``peak - import``, what building the model and training it added;
* ``after 1`` / ``after N``: the current resident set (``/proc/self/statm``) after the
  first and after the last step; ``growth`` is their difference (a leak shows as a
  growth that scales with the steps);
* graphmask only: the most bytes its LSTM workspaces kept between steps
  (``graphmask.kernels.lstm.workspace_bytes()``, checked after every step), and with
  ``--trace`` the peak of NumPy/Python allocations during one step (``tracemalloc``,
  which does not see numba's internal allocations) with the biggest live allocation sites.

graphmask's numba cache is filled by a warm-up process first (a cold cache would
measure LLVM compiling, not training). Threads: graphmask's numba pool and PyTorch's
intra-op pool both use every core, as in ``bench_lstm.py``. Memory figures do not
depend on the machine's load, but on the allocator: glibc's arenas per thread make
RSS grow in steps, so compare rows of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_lstm import TORCH_VARIANTS, gm_step, machine, torch_step  # noqa: E402

LIBS = ("python + numpy", "graphmask", *TORCH_VARIANTS)
MIB = 1 << 20
CURVE = (2, 5, 10, 20, 50, 100, 200, 500, 1000)  # steps after which the RSS is recorded


def peak_bytes() -> int:
    """The peak resident set of this process image so far.

    Linux: ``VmHWM`` of ``/proc/self/status``. ``ru_maxrss`` is not used there: Linux
    carries the high-water mark of the image a process had before ``exec`` over into
    it, so a worker started by a big parent (``subprocess`` forks or vforks it) reports
    at least the parent's peak. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB otherwise).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024


def rss_bytes() -> int:
    """The current resident set (Linux: ``/proc/self/statm``; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_bytes()


def run_worker(lib: str, steps: int, b: int, t: int, h: int, trace: bool) -> dict:
    """Measure one library in this (fresh) process; see the module docstring."""
    import numpy as np  # noqa: F401  (the baseline every row shares)
    out = {"lib": lib}
    if lib == "graphmask":
        import graphmask  # noqa: F401
    elif lib in TORCH_VARIANTS:
        import torch  # noqa: F401
    out["import"] = peak_bytes()
    if lib == "python + numpy":
        out.update(peak=peak_bytes(), after_first=rss_bytes(), after_last=rss_bytes())
        return out
    if lib == "graphmask":
        from graphmask.kernels.lstm import workspace_bytes
        step = gm_step("W1", b, t, h, None)
    else:
        def workspace_bytes():
            return 0
        step = torch_step("W1", b, t, h, None, TORCH_VARIANTS[lib])
    out["after_build"] = rss_bytes()
    step()
    out["after_first"] = rss_bytes()
    ws, curve = workspace_bytes(), {1: out["after_first"]}
    for i in range(2, steps + 1):
        step()
        ws = max(ws, workspace_bytes())
        if i in CURVE or i == steps:
            curve[i] = rss_bytes()
    out["after_last"] = rss_bytes()
    out["rss_by_step"] = curve
    out["peak"] = peak_bytes()
    if lib == "graphmask":
        out["workspace"] = ws
        if trace:
            out["trace"] = traced_step(step)
    return out


def traced_step(step) -> dict:
    """Traced allocations (NumPy arrays and Python objects; numba's own allocations are
    not traced) during one step: their peak above the start, and what is left after."""
    import tracemalloc
    tracemalloc.start()
    step()  # warm: what a step leaves behind is allocated under tracing
    tracemalloc.reset_peak()
    rest = tracemalloc.get_traced_memory()[0]
    step()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rest": rest, "peak_during_step": peak - rest, "left_after_step": current - rest}


def worker(lib, steps, b, t, h, trace=False, env=None) -> dict | None:
    """Run :func:`run_worker` in a fresh process; ``None`` when the library is missing."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib,
           json.dumps([steps, b, t, h, trace])]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        if "No module named 'torch'" in out.stderr:
            return None
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], steps: int) -> str:
    """The markdown table of RESULTS.md's Memory section."""
    lines = [f"| process | import | peak | training (peak - import) | after step 1 | "
             f"after step {steps} | growth | workspaces kept |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        train = "" if r["lib"] == "python + numpy" else f"{(r['peak'] - r['import']) / MIB:.1f}"
        growth = r["after_last"] - r["after_first"]
        ws = f"{r['workspace'] / MIB:.1f}" if "workspace" in r else ""
        lines.append(f"| {r['lib']} | {r['import'] / MIB:.1f} | {r['peak'] / MIB:.1f} | "
                     f"{train} | {r['after_first'] / MIB:.1f} | {r['after_last'] / MIB:.1f} "
                     f"| {growth / MIB:+.1f} | {ws} |")
    return "\n".join(lines) + "\n\n(MiB)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=100)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--trace", action="store_true",
                    help="also trace graphmask's allocations during one step (tracemalloc)")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        steps, b, t, h, trace = json.loads(args.worker[1])
        print(json.dumps(run_worker(args.worker[0], steps, b, t, h, trace)))
        return 0
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    print(json.dumps(machine(), indent=1))
    shape = (args.batch, args.time, args.units)
    worker("graphmask", 1, *shape)  # fills the numba cache: no compiling below
    rows = []
    for lib in LIBS:
        r = worker(lib, args.steps, *shape, trace=args.trace and lib == "graphmask")
        if r is None:
            print(f"{lib}: not installed, not measured", file=sys.stderr)
            continue
        rows.append(r)
    print(table(rows, args.steps))
    for r in rows:
        curve = r.get("rss_by_step")
        if curve:
            print(f"{r['lib']}: RSS (MiB) after import {r['import'] / MIB:.1f} (peak), "
                  f"after building the model {r['after_build'] / MIB:.1f}, after step " + ", ".join(
                f"{k}: {v / MIB:.1f}" for k, v in curve.items()))
        if "trace" in r:
            tr = r["trace"]
            print(f"graphmask, one step traced (tracemalloc: NumPy arrays and Python "
                  f"objects): +{tr['peak_during_step'] / MIB:.1f} MiB at its peak, "
                  f"{tr['left_after_step'] / MIB:+.2f} MiB left after it")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
