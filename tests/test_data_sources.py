"""Data the Keras way: Input(batch_shape), generators, PyDataset, steps_per_epoch,
validation_steps and class_weight in fit / evaluate / predict."""
from __future__ import annotations

import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError


# ---- Input(batch_shape=...) ------------------------------------------------------------
def test_input_batch_shape_is_batch_size_plus_shape():
    assert gm.Input(batch_shape=(None, None), dtype="int32").shape == (None, None)
    x = gm.Input(batch_shape=(4, 3), name="fixed")
    assert x.shape == (4, 3)
    assert x.call.layer.get_config()["batch_size"] == 4
    model = gm.Model(x, gm.Dense(2)(x))
    assert model.predict(np.ones((4, 3), np.float32)).shape == (4, 2)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(batch_shape=(4, 3), shape=(3,)),
     "Input 'x': give batch_shape or shape, not both (got shape=(3,), batch_shape=(4, 3))"),
    (dict(batch_shape=(4, 3), batch_size=4),
     "Input 'x': give batch_shape or batch_size, not both (got batch_size=4, "
     "batch_shape=(4, 3))"),
    (dict(batch_shape=(3,)),
     "Input 'x': batch_shape must be a tuple of the batch size (or None) and at least one "
     "more axis, e.g. (None, 20); got (3,)"),
    (dict(batch_shape=(0, 3)),
     "Input 'x': the batch size must be a positive int or None, got 0"),
])
def test_input_batch_shape_errors(kwargs, msg):
    with pytest.raises(ConfigError) as e:
        gm.Input(name="x", **kwargs)
    assert str(e.value) == msg
