"""graphmask.testing on stateful models: every run of a check starts from the model's
carried state and leaves it as it was; batch independence does not apply (a stateful
layer keeps its batch size) and says so."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError
from graphmask.testing import (
    check_all,
    check_all_masked,
    check_batch_independence,
    check_grads,
    check_loss_is_masked_mean,
    check_mask_annotations,
    check_masked_steps,
    check_padding_invariance,
)

IDS = np.array([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 0, 0]], "int32")


def _stateful(rnn):
    gm.clear_session()
    gm.set_random_seed(0)
    x = gm.Input(batch_shape=(3, None), dtype="int32")
    h = rnn(4, return_sequences=True, stateful=True, name="rnn")(
        gm.Embedding(9, 3, mask_zero=True)(x))
    m = gm.Model(x, gm.Dense(2)(h))
    m.compile(optimizer="sgd", loss="mse")
    m.predict(IDS, verbose=0)  # a carried state that is not zero
    return m


@pytest.mark.parametrize("rnn", [gm.LSTM, gm.GRU, gm.SimpleRNN])
def test_checks_run_from_the_carried_state_and_keep_it(rnn):
    m = _stateful(rnn)
    before = [s.copy() for s in m.get_layer("rnn").states]
    assert any(np.abs(s).max() > 0 for s in before)
    y = np.random.default_rng(0).normal(size=(3, 4, 2)).astype("float32")
    check_padding_invariance(m, IDS, y, dtype=None)
    check_masked_steps(m, IDS)
    check_mask_annotations(m, IDS)
    check_loss_is_masked_mean(m, IDS, y)
    check_all_masked(m, IDS, y)
    check_grads(m, IDS, y)
    report = check_all(m, IDS, y)
    assert report.skipped == ("check_batch_independence: layer 'rnn' is stateful (a fixed "
                              "batch whose samples carry state between batches)",)
    after = m.get_layer("rnn").states
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_without_keeping_the_state_the_padding_check_fails():
    """What the kept state prevents: a check's second run would start elsewhere."""
    m = _stateful(gm.GRU)
    first = m.predict(IDS, verbose=0)
    second = m.predict(IDS, verbose=0)
    assert np.abs(first - second).max() > 1e-3


def test_batch_independence_says_why_it_does_not_apply():
    m = _stateful(gm.GRU)
    with pytest.raises(ConfigError, match=r"check_batch_independence: layer 'rnn' is "
                                          r"stateful: it keeps its batch size"):
        check_batch_independence(m, IDS)
