"""Without a thread-safe numba threading layer, kernels still run: one launch at a time.

Each case runs a fresh interpreter (numba picks its threading layer once per process):
the thread-safe layers are made unloadable, or a non-thread-safe layer is chosen, and
the process must warn exactly once and give bit for bit the results of this process,
also with two Python threads predicting at once.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tomllib
from packaging.requirements import Requirement

from graphmask import kernels

# The model, data and checks, shared by this process (the expected results) and the
# subprocesses. LSTM(64) on 32 kept rows per step is above PARALLEL_MIN_WORK, so the
# parallel kernels run (and launch numba's threads) in predict and in training.
MODEL = textwrap.dedent("""
    import numpy as np
    import graphmask as gm

    def build():
        gm.clear_session()
        gm.set_random_seed(5)
        x = gm.Input(shape=(12,), dtype="int32")
        h = gm.LSTM(64, return_sequences=True)(gm.Embedding(40, 16, mask_zero=True)(x))
        m = gm.Model(x, gm.Dense(3)(gm.LSTM(64)(h)))
        m.compile(optimizer="adam", loss="mse")
        return m

    def data():
        r = np.random.default_rng(3)
        xs = []
        for _ in range(4):
            ids = r.integers(1, 40, size=(32, 12))
            for row, n in zip(ids, r.integers(1, 13, size=32)):
                row[n:] = 0
            xs.append(ids)
        return xs, r.normal(size=(32, 3)).astype(np.float32)

    def results():
        import threading
        m = build()
        xs, y = data()
        seq = [m.predict(b) for b in xs]
        got = {}
        def work(k):
            for _ in range(3):
                for i, b in enumerate(xs):
                    got[(k, i)] = m.predict(b)
        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        same = all(np.array_equal(got[(k, i)], seq[i]) for k in range(2)
                   for i in range(len(xs)))
        loss = float(m.train_on_batch(xs[0], y))
        return seq, same, loss, m.get_weights()
""")

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    if sys.argv[1] == "blocked":  # as on a machine with neither TBB nor OpenMP
        sys.modules["numba.np.ufunc.tbbpool"] = None
        sys.modules["numba.np.ufunc.omppool"] = None
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(sys.argv[3], "model", "exec"))
        seq, same, loss, weights = results()
        seq2, same2, _, _ = results()  # a second model: still no second warning
    import numba
    from graphmask import kernels
    np.savez(sys.argv[2], *seq, *weights)
    print(json.dumps({
        "layer": numba.threading_layer(), "serial": kernels.serial_launches(),
        "same": same and same2 and all(np.array_equal(a, b) for a, b in zip(seq, seq2)),
        "loss": loss,
        "warnings": [(w.category.__name__, str(w.message)) for w in caught
                     if issubclass(w.category, RuntimeWarning)]}))
""")


def _expected():
    ns: dict = {}
    exec(compile(MODEL, "model", "exec"), ns)
    seq, same, loss, weights = ns["results"]()
    assert same
    return seq, loss, weights


@pytest.fixture(scope="module")
def expected():
    return _expected()


def _env(**changes):
    """os.environ with ``changes`` (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def _run(mode, tmp_path, **env):
    out = tmp_path / f"{mode}.npz"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(out), MODEL],
        env=_env(**env), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as npz:
        arrays = [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[1]))]
    return report, arrays


def _check_same_results(report, arrays, expected):
    seq, loss, weights = expected
    assert report["same"], "concurrent predictions differ from sequential ones"
    assert report["loss"] == loss
    assert len(arrays) == len(seq) + len(weights)
    for a, b in zip(arrays, seq + weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode, env", [
    ("blocked", {"NUMBA_THREADING_LAYER": None}),     # graphmask asks for a thread-safe one
    ("blocked", {"NUMBA_THREADING_LAYER": "tbb"}),  # the user's layer cannot load
    ("chosen", {"NUMBA_THREADING_LAYER": "workqueue"}),  # the user chose an unsafe one
])
def test_fallback_warns_once_and_gives_identical_results(mode, env, tmp_path, expected):
    report, arrays = _run(mode, tmp_path, **env)
    assert report["layer"] == "workqueue" and report["serial"] is True
    assert len(report["warnings"]) == 1, report["warnings"]
    category, message = report["warnings"][0]
    assert category == "ThreadingLayerWarning"
    assert "one at a time" in message and "pip install tbb" in message
    if mode == "blocked":
        assert "could not load a thread-safe threading layer" in message
    else:
        assert "'workqueue'" in message and "NUMBA_THREADING_LAYER" in message
    _check_same_results(report, arrays, expected)


def test_thread_safe_layer_no_warning(tmp_path, expected):
    report, arrays = _run("normal", tmp_path, NUMBA_THREADING_LAYER=None)
    assert report["layer"] in kernels.THREADSAFE_LAYERS and report["serial"] is False
    assert report["warnings"] == []
    _check_same_results(report, arrays, expected)


def test_declared_tbb_is_the_layer_numba_loads(tmp_path):
    """pyproject declares tbb where wheels exist; where it is installed, numba uses it."""
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed here (no wheel for this platform)")
    code = ("import numpy as np, graphmask as gm, numba\n"
            "x = gm.Input(shape=(3,), dtype='int32')\n"
            "m = gm.Model(x, gm.LSTM(64)(gm.Embedding(5, 4)(x)))\n"
            "m.predict(np.ones((64, 3), np.int32))\n"
            "print(numba.threading_layer())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(NUMBA_THREADING_LAYER=None), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "tbb"


def test_this_process_uses_a_thread_safe_layer():
    if os.environ.get("NUMBA_THREADING_LAYER"):
        pytest.skip("NUMBA_THREADING_LAYER is set for this test run")
    assert kernels.threading_layer() in kernels.THREADSAFE_LAYERS
    assert kernels.serial_launches() is False


def test_pyproject_declares_tbb_where_wheels_exist():
    """tbb has wheels for Linux x86_64, Windows x64 and macOS x86_64 only; elsewhere the
    requirement must not apply (pip would find nothing to install)."""
    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    (tbb,) = [Requirement(d) for d in deps if Requirement(d).name == "tbb"]
    assert tbb.specifier.contains("2021.6") and not tbb.specifier.contains("2021.5")
    platforms = {("linux", "x86_64"): True, ("win32", "AMD64"): True,
                 ("darwin", "x86_64"): True, ("linux", "aarch64"): False,
                 ("darwin", "arm64"): False, ("win32", "ARM64"): False}
    for (plat, machine), has_wheel in platforms.items():
        env = {"sys_platform": plat, "platform_machine": machine}
        assert tbb.marker.evaluate(env) is has_wheel, (plat, machine)
