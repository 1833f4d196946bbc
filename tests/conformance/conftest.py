"""Conformance suite against Keras 3 (an optional oracle, never a dependency).

The backend must be chosen before keras is first imported anywhere in the process.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest


def pytest_collection_modifyitems(config, items):
    # Keras's torch backend calls np.array(tensor, copy=False): NumPy 2 warns on every call.
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))
