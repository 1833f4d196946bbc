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


def test_kernel_cache_entries_depend_on_every_kernel_source(tmp_path):
    """A kernel inlining a helper from another file must not reuse machine code compiled
    with the old helper: the stamp numba compares covers all kernel sources."""
    from numba.core import caching

    from graphmask.kernels import cache_keys, gru

    cache_keys.install()  # idempotent: the locators are in numba's list once
    names = [c.__name__ for c in caching.CacheImpl._locator_classes]
    assert sum(n.startswith("GraphmaskKernels") for n in names) == len(
        [n for n in cache_keys._BASES if hasattr(caching, n)])
    py = gru._fwd_h_task.py_func
    impl = caching.CompileResultCacheImpl(py)
    assert type(impl.locator).__name__.startswith("GraphmaskKernels")
    stamp = impl.locator.get_source_stamp()
    assert stamp[1] == cache_keys.sources_digest() == cache_keys._DIGEST

    # the digest changes with any file's content, not only the function's own
    root = tmp_path / "kernels"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("x = 1\n")
    (root / "sub" / "b.py").write_text("y = 2\n")
    (root / "notes.txt").write_text("ignored\n")
    before = cache_keys.sources_digest(str(root))
    (root / "notes.txt").write_text("still ignored\n")
    assert cache_keys.sources_digest(str(root)) == before
    (root / "sub" / "b.py").write_text("y = 3\n")
    assert cache_keys.sources_digest(str(root)) != before


def test_functions_outside_the_kernels_keep_numbas_own_locators(tmp_path):
    from numba.core import caching

    src = tmp_path / "user_mod.py"
    src.write_text("def f(x):\n    return x + 1\n")
    import importlib.util
    spec = importlib.util.spec_from_file_location("user_mod", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    impl = caching.CompileResultCacheImpl(mod.f)
    assert not type(impl.locator).__name__.startswith("GraphmaskKernels")
