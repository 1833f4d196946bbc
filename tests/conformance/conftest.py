"""Conformance suite against Keras 3 (an optional oracle, never a dependency).

Test modules get Keras from :func:`tests.conformance.oracle.import_keras`, which picks
the torch backend before Keras is first imported and skips, naming what is missing,
when Keras 3 or torch is not installed.
"""
import os
import sys

import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_names():
    """Keras's automatic layer names restart in every test, as graphmask's do
    (tests/conftest.py), so tests comparing the two libraries' names need no order."""
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    yield


def pytest_collection_modifyitems(config, items):
    # Keras's torch backend calls np.array(tensor, copy=False): NumPy 2 warns on every call.
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))
