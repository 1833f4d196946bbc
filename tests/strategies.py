"""Hypothesis strategies for graphmask's own tests (see docs/testing.md).

Re-exports the public strategies of :mod:`graphmask.testing` and adds the combinations
the project's property suite draws from.
"""
from __future__ import annotations

from hypothesis import strategies as st

from graphmask.testing import ModelCase, build_model, make_targets, models
from graphmask.testing.strategies import (
    PADDINGS,
    float_sequences,
    lengths_to_mask,
    masks,
    padded_ids,
)

__all__ = ["PADDINGS", "ModelCase", "build_model", "cases", "float_sequences",
           "lengths_to_mask", "make_targets", "masks", "models", "padded_ids"]


@st.composite
def cases(draw, padding="any", allow_empty_rows: bool = True, max_len: int = 5, **model_kw):
    """``(case, x, y)``: a compiled random model, an input batch for it and targets."""
    case = draw(models(**model_kw))
    x = draw(case.inputs(padding=padding, allow_empty_rows=allow_empty_rows,
                         max_len=max_len))
    return case, x, case.targets(x)
