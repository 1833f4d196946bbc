"""The public strategies draw what they promise."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@given(float_sequences(features=3, mask_value=-1.0, max_len=4))
def test_float_sequences_kept_steps_differ_from_mask_value(x):
    assert x.dtype == np.float32 and x.shape[2] == 3
    padded = np.all(x == -1.0, axis=-1)
    kept = ~padded
    assert np.all(np.any(x[kept] != -1.0, axis=-1))


def test_bad_padding_name():
    from hypothesis import find
    with pytest.raises(ValueError, match="padding must be"):
        find(masks(padding="middle"), lambda m: True)


def test_all_masked_rows_are_reachable():
    from hypothesis import find
    m = find(masks(padding="holes"), lambda m: not m.any())
    assert m.shape == (1, 1)
