"""graphmask's masking invariants on many generated models (graphmask.testing on itself).

Each test draws a compiled random model (Embedding or Masking input, stacked LSTMs,
Dense head, one of the losses) and a padded batch for it; the checks that involve a loss
also get Keras sample weights (per sample or per position, zeros included). Examples per
test come from the hypothesis profile (tests/conftest.py: ``default`` or
``HYPOTHESIS_PROFILE=thorough``).
"""
from hypothesis import given

from graphmask.testing import (
    check_all_masked,
    check_batch_independence,
    check_grads,
    check_loss_is_masked_mean,
    check_mask_annotations,
    check_masked_steps,
    check_padding_invariance,
)
from graphmask.testing.models import LAYERS, RECURRENT
from tests.properties.weighted import weighted_cases
from tests.strategies import cases


@given(weighted_cases())
def test_padding_invariance(draw):
    case, x, y, w = draw
    check_padding_invariance(case.model, x, y, w)


@given(cases(sequence_output=True))
def test_masked_lstm_steps_repeat_previous_output(case_x_y):
    case, x, _ = case_x_y
    check_masked_steps(case.model, x)


@given(weighted_cases())
def test_batch_independence(draw):
    case, x, y, w = draw
    check_batch_independence(case.model, x, y, w)


@given(weighted_cases())
def test_loss_is_mean_over_kept_positions(draw):
    case, x, y, w = draw
    check_loss_is_masked_mean(case.model, x, y, w)


@given(weighted_cases())
def test_all_masked_batch_gives_zero_loss_and_gradients(draw):
    case, x, y, w = draw
    check_all_masked(case.model, x, y, w)


@given(weighted_cases(allow_empty_rows=False))
def test_gradients_match_finite_differences(draw):
    case, x, y, w = draw
    check_grads(case.model, x, y, w, directions=1)


@given(cases())
def test_mask_annotations_match_runtime_masks(case_x_y):
    case, x, _ = case_x_y
    check_mask_annotations(case.model, x)


# ------------------------------------------------- every mask-passing layer the suite knows
#: models drawing from every recurrent layer (RNN over each cell too), Bidirectional,
#: self-attention (MultiHeadAttention, Attention, AdditiveAttention), LayerNormalization,
#: a residual Add, Dropout and SpatialDropout1D
WIDE = dict(layers=LAYERS, recurrent=RECURRENT, attention=True, bidirectional=True)


@given(weighted_cases(**WIDE))
def test_padding_invariance_every_layer(draw):
    case, x, y, w = draw
    check_padding_invariance(case.model, x, y, w)


@given(weighted_cases(**WIDE))
def test_batch_independence_and_masked_loss_every_layer(draw):
    case, x, y, w = draw
    check_batch_independence(case.model, x, y, w)
    check_loss_is_masked_mean(case.model, x, y, w)
    check_all_masked(case.model, x, y, w)


@given(weighted_cases(allow_empty_rows=False, **WIDE))
def test_gradients_match_finite_differences_every_layer(draw):
    case, x, y, w = draw
    check_grads(case.model, x, y, w, directions=1)


@given(cases(**WIDE))
def test_mask_annotations_match_runtime_masks_every_layer(case_x_y):
    case, x, _ = case_x_y
    check_mask_annotations(case.model, x)
