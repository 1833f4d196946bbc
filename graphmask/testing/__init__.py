"""graphmask.testing: property-based checks of masking semantics for your own models.

Use it from pytest with hypothesis::

    from hypothesis import given, settings
    from graphmask.testing import check_padding_invariance, strategies as gst

    @settings(deadline=None)
    @given(gst.padded_ids(vocab_size=20, padding="any"))
    def test_my_model_ignores_padding(ids):
        check_padding_invariance(my_model, ids, my_targets(ids))

Strategies (``graphmask.testing.strategies``): :func:`masks`, :func:`padded_ids`,
:func:`float_sequences`, :func:`sample_weights`; random compiled models: :func:`models`
(a :class:`ModelCase`, whose ``batch(sample_weight=True)`` also draws sample weights).

Checks (each raises ``AssertionError`` with a readable explanation, and otherwise
returns a :class:`CheckReport` listing what it checked and what it could not):
:func:`check_padding_invariance`, :func:`check_masked_steps`,
:func:`check_batch_independence`, :func:`check_loss_is_masked_mean`,
:func:`check_all_masked`, :func:`check_grads`, :func:`check_mask_annotations`, and
:func:`check_all` running every one that applies.

Helper: :func:`loss_and_grads` (the loss and ``{weight name: gradient}`` of one batch,
without an optimizer step). See docs/testing.md.
"""
from graphmask.testing import strategies
from graphmask.testing._expected import expected_masks
from graphmask.testing._runner import loss_and_grads
from graphmask.testing.invariants import (
    CheckReport,
    check_all,
    check_all_masked,
    check_batch_independence,
    check_grads,
    check_loss_is_masked_mean,
    check_mask_annotations,
    check_masked_steps,
    check_padding_invariance,
    compiled_signature,
)
from graphmask.testing.models import LOSSES, ModelCase, build_model, make_targets, models
from graphmask.testing.strategies import (
    float_sequences,
    lengths_to_mask,
    masks,
    padded_ids,
    sample_weights,
)

__all__ = [
    "LOSSES", "CheckReport", "ModelCase", "build_model", "check_all", "check_all_masked",
    "check_batch_independence", "check_grads", "check_loss_is_masked_mean",
    "check_mask_annotations", "check_masked_steps", "check_padding_invariance",
    "compiled_signature", "expected_masks", "float_sequences", "lengths_to_mask",
    "loss_and_grads", "make_targets", "masks", "models", "padded_ids", "sample_weights",
    "strategies",
]
