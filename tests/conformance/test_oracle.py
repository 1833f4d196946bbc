"""The oracle's backend choice and its skip reasons (these tests need no Keras)."""
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conformance import oracle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _hide(monkeypatch, *names):
    """``names`` look uninstalled; Keras 3 and torch otherwise look installed, whatever
    this machine has (the first CI stage runs before the oracle is installed)."""
    real = importlib.util.find_spec

    def find(name, *a):
        if name in names:
            return None
        if name in ("keras", "torch"):
            return object()
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find)
    monkeypatch.setattr(oracle, "_version", lambda dist: "3.15.1")


@pytest.mark.parametrize("hidden,reason", [
    (("torch",), "torch (the oracle's Keras backend) is not installed"),
    (("keras",), "keras (Keras 3) is not installed"),
    (("keras", "torch"), "keras (Keras 3) is not installed; "
                         "torch (the oracle's Keras backend) is not installed"),
])
def test_skip_names_exactly_what_is_missing(monkeypatch, hidden, reason):
    monkeypatch.delenv(oracle.REQUIRE_ENV, raising=False)
    _hide(monkeypatch, *hidden, "jax")
    with pytest.raises(pytest.skip.Exception) as e:
        oracle.import_keras()
    assert str(e.value.msg) == f"Keras oracle unavailable: {reason}: pip install keras torch"


def test_jax_is_never_asked_for(monkeypatch):
    """Only JAX missing (or any backend but torch): nothing is reported missing."""
    _hide(monkeypatch, "jax", "tensorflow")
    expected = [m for m in ("keras", "torch") if importlib.util.find_spec(m) is None]
    assert len(oracle.missing()) == len(expected)
    assert all(m.split(" ")[0] in expected for m in oracle.missing())


def test_old_keras_is_named(monkeypatch):
    monkeypatch.setattr(oracle, "_version", lambda dist: "2.15.0")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert oracle.missing() == ["keras 2.15.0 is installed, the oracle needs Keras 3"]


def test_required_oracle_fails_instead_of_skipping(monkeypatch):
    monkeypatch.setenv(oracle.REQUIRE_ENV, "1")
    _hide(monkeypatch, "torch")
    with pytest.raises(pytest.fail.Exception, match=r"torch \(the oracle's Keras backend\) is not "
                                     r"installed.*GRAPHMASK_REQUIRE_ORACLE=1"):
        oracle.import_keras()


@pytest.mark.skipif(oracle.missing() != [], reason="; ".join(oracle.missing()) or "-")
def test_backend_is_torch_whatever_the_environment_says():
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT}
    code = ("from tests.conformance.oracle import import_keras; "
            "print(import_keras().backend.backend())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "torch"
