"""The public strategies draw what they promise."""
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from graphmask.testing import build_model
from graphmask.testing.strategies import sample_weights
from tests.strategies import float_sequences, lengths_to_mask, masks, padded_ids


@given(masks(padding="right"))
def test_right_padding_keeps_a_prefix(m):
    n = m.sum(axis=1)
    np.testing.assert_array_equal(m, lengths_to_mask(n, m.shape[1], "right"))


@given(masks(padding="left"))
def test_left_padding_keeps_a_suffix(m):
    n = m.sum(axis=1)
    np.testing.assert_array_equal(m, lengths_to_mask(n, m.shape[1], "left"))


@given(masks(batch_size=st.integers(1, 5), timesteps=3, padding="any", allow_empty_rows=False))
def test_no_empty_rows_when_disallowed(m):
    assert m.shape[1] == 3 and 1 <= m.shape[0] <= 5
    assert m.any(axis=1).all()


@given(padded_ids(vocab_size=5, min_len=2, max_len=4, padding="holes"))
def test_padded_ids_bounds(ids):
    assert ids.dtype == np.int32 and 2 <= ids.shape[1] <= 4
    assert ids.min() >= 0 and ids.max() < 5


@given(float_sequences(features=3, mask_value=-1.0, max_len=4, padding="right",
                       allow_empty_rows=False, elements=st.sampled_from([-1.0, 0.5])))
def test_float_sequences_kept_steps_never_look_like_padding(x):
    # Kept values are drawn from {-1, 0.5}, so a kept step whose features all equal the
    # mask value is likely: the strategy must still make it differ, else Masking(-1.0)
    # would mask it and the drawn layout (right padding, no empty row) would break.
    assert x.dtype == np.float32 and x.shape[2] == 3
    kept = np.any(x != -1.0, axis=-1)  # what Masking(-1.0) keeps
    assert kept.any(axis=1).all(), "a row keeps no step although empty rows are disallowed"
    np.testing.assert_array_equal(kept, lengths_to_mask(kept.sum(axis=1), x.shape[1], "right"))


def test_bad_padding_name():
    with pytest.raises(ValueError, match="padding must be"):
        find(masks(padding="middle"), lambda m: True)


def test_all_masked_rows_are_reachable():
    m = find(masks(padding="holes"), lambda m: not m.any())
    assert m.shape == (1, 1)


# ---------------------------------------------------------------- sample weights

SEQ = ("ids", 6, 3, 0.0, 0, ((3, True, False, False),), 2, "mse", False)
FINAL = ("ids", 6, 3, 0.0, 0, ((3, False, False, False),), 2, "mse", False)


@given(sample_weights(batch_size=st.integers(1, 5), timesteps=st.integers(1, 6),
                      max_weight=2.5))
def test_sample_weights_shapes_and_values(w):
    assert w.dtype == np.float32 and w.ndim in (1, 2) and 1 <= w.shape[0] <= 5
    assert w.ndim == 1 or 1 <= w.shape[1] <= 6
    assert np.all((w >= 0) & (w <= 2.5))


@given(sample_weights(batch_size=3, kind="sample"), sample_weights(3, 4, kind="position"),
       sample_weights(3))
def test_sample_weights_kinds(per_sample, per_position, no_time_axis):
    assert per_sample.shape == (3,) and per_position.shape == (3, 4)
    assert no_time_axis.shape == (3,)  # "any" without timesteps: per sample only


def _find(strategy, condition):
    return find(strategy, condition, settings=settings(database=None, derandomize=True))


def test_sample_weights_reach_zeros_both_kinds_and_shrink_to_ones():
    w = _find(sample_weights(2, 3), lambda w: w.ndim == 2)
    np.testing.assert_array_equal(w, np.ones((2, 3), np.float32))
    assert _find(sample_weights(2, 3), lambda w: True).shape == (2,)
    w = _find(sample_weights(1, 3, "position"), lambda w: (w == 0).any() and (w > 1).any())
    assert sorted(w[0].tolist())[0] == 0.0 and w.max() > 1
    w = _find(sample_weights(4, kind="sample"), lambda w: (w == 0).sum() >= 2)
    np.testing.assert_array_equal(np.sort(w), [0, 0, 1, 1])


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "tokens"}, "kind must be 'sample', 'position' or 'any', got 'tokens'"),
    ({"kind": "position"}, "kind='position' needs timesteps"),
    ({"max_weight": 0.0}, "max_weight must be a finite number > 0, got 0.0"),
    ({"max_weight": float("inf")}, "max_weight must be a finite number > 0, got inf"),
    ({"batch_size": 0}, r"batch_size and timesteps must be >= 1, got shape \(0,\)"),
])
def test_sample_weights_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _find(sample_weights(**{"batch_size": 2, **kwargs}), lambda w: True)


def test_model_case_weights_fit_the_output():
    seq, final = (models_case(spec) for spec in (SEQ, FINAL))
    x = np.array([[1, 2, 0], [3, 0, 0]], np.int32)
    assert _find(seq.sample_weights(x), lambda w: w.ndim == 2).shape == (2, 3)
    assert _find(seq.sample_weights(x, kind="sample"), lambda w: True).shape == (2,)
    assert _find(final.sample_weights(x), lambda w: True).shape == (2,)
    with pytest.raises(ValueError, match="kind='position' needs an output with a time axis"):
        final.sample_weights(x, kind="position")


@given(st.data())
def test_model_case_batch_with_sample_weights_is_accepted_by_evaluate(data):
    case = models_case(data.draw(st.sampled_from([SEQ, FINAL])))
    x, y, w = data.draw(case.batch(sample_weight=True, max_len=4))
    assert w.shape == x.shape[:1] or (case.sequence_output and w.shape == x.shape[:2])
    assert np.isfinite(case.model.evaluate(x, y, sample_weight=w, verbose=0))
    x2, y2 = data.draw(case.batch(max_len=4))
    np.testing.assert_array_equal(y2, case.targets(x2))


def models_case(spec):
    from graphmask.testing import ModelCase
    model, loss = build_model(spec, seed=3)
    return ModelCase(model, "ids", 0.0, spec[1], None, loss, spec[5][-1][1], 3, spec)


# ---------------------------------------------------------------- production sizes

@settings(max_examples=15, derandomize=True)
@given(st.data())
def test_production_size_batches_stay_within_the_data_budget(data):
    """40 x 64 batches with holes and per-position weights (thousands of values) are
    drawn sparsely, so hypothesis rarely overruns its data budget; when every value was
    its own draw most examples overran and hypothesis's health check failed the test."""
    ids = data.draw(padded_ids(vocab_size=50, batch_size=40, min_len=64, max_len=64,
                               padding="holes"))
    assert ids.shape == (40, 64) and ids.min() >= 0 and ids.max() < 50
    x = data.draw(float_sequences(features=8, mask_value=0.0, batch_size=40, min_len=64,
                                  max_len=64, allow_empty_rows=False))
    kept = np.any(x != 0.0, axis=-1)
    assert x.shape == (40, 64, 8) and kept.any(axis=1).all()
    w = data.draw(sample_weights(40, 64, kind="position"))
    assert w.shape == (40, 64) and w.min() >= 0 and w.max() <= 4



# ---------------------------------------------------------------- models(layers=...)

@pytest.mark.parametrize("name, shown", [
    ("layer_norm", "LayerNormalization()"), ("attention", "Attention(score_mode="),
    ("additive_attention", "AdditiveAttention()"), ("residual", "()([h, Dense(h)])"),
    ("dropout", "Dropout("), ("spatial_dropout", "SpatialDropout1D(")])
def test_models_draw_each_extra_layer(name, shown):
    from graphmask.testing import models
    case = find(models(layers=(name,), batch_norm=False), lambda c: shown in repr(c),
                settings=settings(database=None, max_examples=200))
    layer_names = [layer.name for layer in case.model.layers]
    expected = {"layer_norm": "layer_norm", "attention": "dot_attention",
                "additive_attention": "additive_attention", "residual": "residual",
                "dropout": "dropout", "spatial_dropout": "spatial_dropout"}[name]
    assert expected in layer_names


@pytest.mark.parametrize("name, layer", [("RNN(LSTMCell)", "rnn_lstm_cell_0"),
                                         ("RNN(GRUCell)", "rnn_gru_cell_0"),
                                         ("RNN(SimpleRNNCell)", "rnn_simple_rnn_cell_0")])
def test_models_draw_rnn_over_each_cell(name, layer):
    from graphmask.testing import models
    case = find(models(recurrent=(name,), max_lstms=1, batch_norm=False), lambda c: True)
    assert f"RNN({name[4:-1]}(" in repr(case)
    assert [lay.name for lay in case.model.layers][2] == layer


@pytest.mark.parametrize("kwargs", [{"layers": ("conv1d",)}, {"recurrent": ("LSTMv2",)}])
def test_models_refuse_unknown_layer_names(kwargs):
    from graphmask.testing import models
    with pytest.raises(ValueError, match=r"models: unknown recurrent layer or layer name"):
        find(models(**kwargs), lambda c: True)
