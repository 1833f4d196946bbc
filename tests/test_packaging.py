"""The compiler passes ship as ``graphmask.passes``: nothing named ``passes`` is
installed at the top level, so a user's own ``passes.py`` cannot shadow them."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_passes_is_a_subpackage_of_graphmask():
    import graphmask.passes as p

    assert p.__name__ == "graphmask.passes"
    assert [name for name, _ in p.PIPELINE] == ["branches", "shapes", "masks", "fusion", "losses",
                                                "autodiff"]
    assert "passes" not in sys.modules or sys.modules["passes"] is not p


def test_pyproject_installs_no_top_level_passes_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = cfg["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["graphmask*"]


def test_a_users_passes_py_changes_nothing(tmp_path):
    (tmp_path / "passes.py").write_text("raise RuntimeError('the user module was imported')\n")
    script = textwrap.dedent("""
        import numpy as np
        import graphmask as gm
        gm.set_random_seed(1)
        x = gm.Input((3,), dtype="int32")
        y = gm.Dense(2)(gm.LSTM(4)(gm.Embedding(5, 3, mask_zero=True)(x)))
        m = gm.Model(x, y)
        m.compile(loss="mse", optimizer="sgd")
        print(round(float(m.evaluate(np.array([[1, 2, 0]]), np.zeros((1, 2)), verbose=0)), 6))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    value = float(out.stdout.strip())
    assert value >= 0.0
