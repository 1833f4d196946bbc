"""The draws of the property suite: a generated model and a batch with sample weights.

Shared by test_invariants.py (the suite) and test_faults.py (which runs the suite's
strategy and checks against injected faults), so both look at the same cases.
"""
from __future__ import annotations

from hypothesis import strategies as st

from graphmask.testing import models


@st.composite
def weighted_cases(draw, padding="any", allow_empty_rows: bool = True, max_len: int = 5,
                   **model_kw):
    """``(case, x, y, sample_weight)``: a compiled random model (:func:`models`), an input
    batch, its targets and Keras sample weights ((B,) or, with a time axis, (B, T);
    zeros included, shrinking towards all ones)."""
    case = draw(models(**model_kw))
    x, y, w = draw(case.batch(sample_weight=True, padding=padding,
                              allow_empty_rows=allow_empty_rows, max_len=max_len))
    return case, x, y, w
