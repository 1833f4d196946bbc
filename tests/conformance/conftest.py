"""Conformance suite against Keras 3 (an optional oracle, never a dependency).

Test modules get Keras from :func:`tests.conformance.oracle.import_keras`, which picks
the torch backend before Keras is first imported and skips, naming what is missing,
when Keras 3 or torch is not installed.
"""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    # Keras's torch backend calls np.array(tensor, copy=False): NumPy 2 warns on every call.
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))
