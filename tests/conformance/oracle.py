"""The Keras 3 oracle: Keras 3 on its torch backend, chosen here and nowhere else.

Every oracle test gets Keras through :func:`import_keras`, which sets
``KERAS_BACKEND=torch`` before Keras is first imported (the gradient checks use torch
autograd, and torch is what CI installs), whatever the environment asked for. When
Keras 3 or torch is missing, the calling test or module is skipped with a reason that
names exactly what is missing; with ``GRAPHMASK_REQUIRE_ORACLE=1`` (set by ``.ci/run``
once it has installed the oracle) the same reason fails the test instead, so a broken
install cannot turn the conformance stage into a row of skips.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys

import pytest

#: The Keras backend every oracle test runs on.
BACKEND = "torch"
#: Environment variable: when "1", a missing oracle fails instead of skipping.
REQUIRE_ENV = "GRAPHMASK_REQUIRE_ORACLE"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing() -> list[str]:
    """What the oracle lacks on this machine, one phrase per missing piece ([] if none)."""
    out = []
    if importlib.util.find_spec("keras") is None:
        out.append("keras (Keras 3) is not installed")
    else:
        version = _version("keras")
        if version is not None and int(version.split(".")[0]) < 3:
            out.append(f"keras {version} is installed, the oracle needs Keras 3")
    if importlib.util.find_spec("torch") is None:
        out.append("torch (the oracle's Keras backend) is not installed")
    return out


def _unavailable(reason: str):
    reason = f"Keras oracle unavailable: {reason}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_keras():
    """Keras 3 on the torch backend, or skip (fail under ``GRAPHMASK_REQUIRE_ORACLE=1``).

    Call it at module level or inside a test; it returns the ``keras`` module.
    """
    lacking = missing()
    if lacking:
        _unavailable("; ".join(lacking) + ": pip install keras torch")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = BACKEND
    try:
        import keras
    except ImportError as e:
        _unavailable(f"importing keras on the {BACKEND} backend failed: {e}")
    if keras.backend.backend() != BACKEND:
        pytest.fail(f"keras was imported with the {keras.backend.backend()!r} backend "
                    f"before the oracle chose {BACKEND!r}; run the oracle tests in a "
                    f"process that does not import keras first", pytrace=False)
    return keras
