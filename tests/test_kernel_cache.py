"""Where numba's on-disk kernel cache goes."""
import os
import subprocess
import sys

import graphmask.kernels as K


def test_read_only_package_moves_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    K._choose_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "graphmask" / "numba")


def test_user_choice_and_writable_package_are_left_alone(monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    K._choose_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/else"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    K._choose_cache_dir()
    assert "NUMBA_CACHE_DIR" not in os.environ


def test_a_fresh_cache_dir_fills_and_is_reused(tmp_path):
    """A process with an empty cache compiles and writes index files; the next reuses them."""
    code = ("import numpy as np, graphmask as gm\ngm.set_random_seed(0)\n"
            "x = gm.Input(shape=(3,))\n"
            "print(gm.Model(x, gm.Dense(2)(x)).predict(np.ones((1, 3)))[0, 0])\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    cached = {p.name for p in tmp_path.rglob("*.nbi")}
    assert any(name.startswith("dense.") for name in cached)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.stdout == first.stdout
    assert {p.name for p in tmp_path.rglob("*.nbi")} == cached
