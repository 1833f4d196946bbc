"""Shared fixtures and hypothesis profiles.

Profiles: ``default`` (fast, the normal suite) and ``thorough`` (many more examples);
choose with ``HYPOTHESIS_PROFILE=thorough pytest``. numba compiles a kernel on its first
call, which can take seconds, so no profile has a per-example deadline.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _fresh_names_and_seed():
    """Every test starts with Keras-style names reset and a fixed seed."""
    import graphmask
    graphmask.clear_session()
    graphmask.set_random_seed(1234)
    yield
