"""What a new user's first training step compiles (an empty numba cache) and what else
its start-up pays for (benchmarks/bench_cold_start.py measures the times)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from graphmask.layers.initializers import Orthogonal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COLD = textwrap.dedent("""
    import json
    import numba
    from numba.core import event
    with event.install_recorder("numba:compile") as rec:
        import numpy as np
        import graphmask as gm
        rng = np.random.default_rng(0)
        x = rng.integers(1, 50, size=(32, 12)).astype("int32")
        x[:, 9:] = 0
        inp = gm.Input((12,), dtype="int32")
        h = gm.LSTM(64, return_sequences=True)(gm.Embedding(50, 8, mask_zero=True)(inp))
        model = gm.Model(inp, gm.Dense(3)(h))
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(x, rng.normal(size=(32, 12, 3)).astype("float32"))
        model.predict(x, verbose=0)
        from graphmask.kernels.launch import wait_background
        wait_background()  # the parallel drivers, compiled in the background
    names = []
    for _, ev in rec.buffer:
        if ev.is_start:
            d = ev.data["dispatcher"]
            f = getattr(d, "py_func", None) or getattr(d, "_pyfunc", None)
            names.append(f.__module__ + "." + f.__qualname__)
    print(json.dumps({"threads": numba.config.NUMBA_NUM_THREADS, "compiled": names}))
""")


@pytest.mark.slow
def test_a_first_lstm_step_compiles_only_the_kernels_it_runs(tmp_path):
    """From an empty cache, a float32 tanh/sigmoid LSTM compiles each of its task kernels
    once (the default-activation sample-group tasks only: 32 samples) and the drivers it
    launches (both tiers with threads, the one-thread one on one core); nothing for the layout
    helpers (NumPy) or the small helpers and step code (inlined)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    lstm = sorted(n.split(".")[-1] for n in out["compiled"]  # (not numba's overloads)
                  if n.startswith("graphmask.kernels.lstm.") and "<locals>" not in n)
    # 32 samples: the sample-group drivers (kernels/lstm.py, sample_groups): the
    # one-thread tier the first step runs, then (with threads) the prange drivers
    # compiled in the background (kernels/launch.py)
    drivers = ["_backward_groups", "_forward_groups", "_proj_range", "_weight_grads_range"]
    if out["threads"] > 1:
        drivers += ["_backward_groups_loop", "_forward_groups_loop", "_weight_grads_loop"]
    # the group tasks take the step code in (inlined): no separate step kernels
    tasks = ["_bwd_group_task_dflt", "_fwd_group_task_dflt", "_proj_task", "_wgrad_task"]
    assert lstm == sorted(drivers + tasks)  # the helpers they call are inlined


def test_orthogonal_does_not_depend_on_the_blas_thread_count():
    """Its QR runs with BLAS on one thread: OpenBLAS's threaded QR took seconds for an
    LSTM(128)'s recurrent kernel (a third of a cold first step) and rounded differently."""
    got = []
    for n in (1, 2):
        with threadpool_limits(n, user_api="blas"):
            got.append(Orthogonal(seed=4)((300, 300), "float64"))
    np.testing.assert_array_equal(got[0], got[1])
