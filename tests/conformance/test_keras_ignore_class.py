"""``ignore_class`` and class ids at padded positions, against Keras 3.

Keras 3's sparse crossentropy with ``ignore_class=c`` drops the positions labelled ``c``
like masked ones: they leave the loss's sum and count, with the padding mask and the
sample weights alike. Its ``SparseCategoricalCrossentropy`` metric drops them when its
``Mean`` has a weight (a mask or a sample weight), else counts them as zeros.

Class ids at padded positions contribute nothing, so graphmask gets garbage there (99,
-7, the ignored class) while Keras, whose torch backend refuses an id outside the classes
anywhere, gets 0: the results must be the same.
"""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()  # Keras 3 on torch; the skip names what is missing

import graphmask as gm
from tests.conformance import twin as tw

B, T, C, V = 6, 5, 3, 9
PADDINGS = ["right", "left", "holes", "rows", "mixed", "batch"]


def _twin(logits: bool, masked: bool = True, seed: int = 0):
    spec = [("embedding", {"input_dim": V, "output_dim": 4, "mask_zero": masked}),
            ("lstm", {"units": 4, "return_sequences": True}),
            ("dense", {"units": C, **({} if logits else {"activation": "softmax"})})]
    return tw.build_twin(spec, (T,), "int32", seed=seed)


def _compile(t, ignore, logits, optimizer=("SGD", {"learning_rate": 0.5})):
    go, ko = tw.optimizer_pair(optimizer[0], **optimizer[1])
    t.gm.compile(
        optimizer=go,
        loss=gm.losses.SparseCategoricalCrossentropy(from_logits=logits, ignore_class=ignore),
        metrics=["accuracy", gm.metrics.SparseCategoricalCrossentropy(
            name="xent", from_logits=logits, ignore_class=ignore)],
        weighted_metrics=[gm.metrics.SparseCategoricalCrossentropy(
            name="wxent", from_logits=logits, ignore_class=ignore)])
    t.keras.compile(
        optimizer=ko,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits,
                                                        ignore_class=ignore),
        metrics=["accuracy", keras.metrics.SparseCategoricalCrossentropy(
            name="xent", from_logits=logits, ignore_class=ignore)],
        weighted_metrics=[keras.metrics.SparseCategoricalCrossentropy(
            name="wxent", from_logits=logits, ignore_class=ignore)])


def _data(kind, ignore, seed, masked=True):
    """(ids, labels for graphmask, labels for Keras, sample weights)."""
    rng = np.random.default_rng(seed)
    keep = tw.mask_pattern(kind, B, T, rng) if masked else np.ones((B, T), bool)
    ids = tw.ids_for(keep, V, rng)
    y = rng.integers(0, C, size=(B, T))
    y[rng.random((B, T)) < 0.3] = ignore         # ignored labels at kept positions too
    y[0, 0] = ignore
    garbage = rng.choice([99, -7, ignore], size=(B, T))
    y_gm = np.where(keep, y, garbage).astype(np.int32)
    y_keras = np.where(keep, y, 0).astype(np.int32)
    # per-position weights: Keras 3 cannot broadcast (B,) weights against a (B, T) mask
    return ids, y_gm, y_keras, rng.random((B, T)).astype(np.float32) + 0.25


def _compare(ours: dict, theirs: dict, rtol=tw.RTOL, atol=tw.ATOL, what=""):
    for name in ("loss", "accuracy", "xent", "wxent"):
        tw.assert_close(ours[name], theirs[name], rtol, atol, f"{what} {name}")


@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("ignore", [-1, 255])
@pytest.mark.parametrize("kind", PADDINGS)
def test_evaluate(kind, ignore, logits):
    t = _twin(logits)
    _compile(t, ignore, logits)
    x, y_gm, y_keras, sw = _data(kind, ignore, seed=len(kind) + ignore)
    for weights in (None, sw):
        ours = t.gm.evaluate(x, y_gm, sample_weight=weights, return_dict=True)
        theirs = t.keras.evaluate(x, y_keras, sample_weight=weights, batch_size=B,
                                  verbose=0, return_dict=True)
        _compare(ours, theirs, what=f"{kind} weights={weights is not None}")


@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("kind", PADDINGS)
def test_train_on_batch(kind, logits):
    t = _twin(logits, seed=1)
    _compile(t, -1, logits, optimizer=("Adam", {"learning_rate": 0.05}))
    for step in range(3):
        x, y_gm, y_keras, sw = _data(kind, -1, seed=10 * step + len(kind))
        weights = sw if step % 2 else None
        ours = t.gm.train_on_batch(x, y_gm, sample_weight=weights, return_dict=True)
        theirs = t.keras.train_on_batch(x, y_keras, sample_weight=weights, return_dict=True)
        _compare(ours, theirs, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"step {step}")
        for v, a, b in zip(t.gm.weights, t.gm.get_weights(), tw.keras_weights(t.keras)):
            tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"step {step} {v.name}")


@pytest.mark.parametrize("logits", [False, True], ids=["probs", "logits"])
def test_without_a_padding_mask(logits):
    # no mask reaches the loss: ignored positions still leave the loss's count; the
    # unweighted metric counts them as zeros, the weighted one (sample weights) drops them
    t = _twin(logits, masked=False, seed=2)
    _compile(t, -1, logits)
    x, y, _, sw = _data("none", -1, seed=3, masked=False)
    assert (y == -1).any()
    ours = t.gm.evaluate(x, y, sample_weight=sw, return_dict=True)
    theirs = t.keras.evaluate(x, y, sample_weight=sw, batch_size=B, verbose=0,
                              return_dict=True)
    _compare(ours, theirs)
    ours = t.gm.evaluate(x, y, return_dict=True)
    theirs = t.keras.evaluate(x, y, batch_size=B, verbose=0, return_dict=True)
    for name in ("loss", "accuracy", "xent"):
        tw.assert_close(ours[name], theirs[name], what=name)
    ours = t.gm.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    theirs = t.keras.train_on_batch(x, y, sample_weight=sw, return_dict=True)
    _compare(ours, theirs, tw.TRAIN_RTOL, tw.TRAIN_ATOL)
    for a, b in zip(t.gm.get_weights(), tw.keras_weights(t.keras)):
        tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL)


def _keras_metric_over_batches(t, x, y, sw, batch_size):
    """Keras's weighted ``SparseCategoricalCrossentropy(ignore_class=-1)`` metric updated
    batch by batch on the Keras model's masked predictions.

    Not ``evaluate``'s own weighted metric: on the torch backend Keras 3.15.1's masked loss
    rescales the batch's sample-weight tensor in place (``sample_weight *= float_mask`` in
    ``keras/src/losses/loss.py``) before the weighted metrics read it, so their
    accumulation over several batches depends on the batch size.
    """
    metric = keras.metrics.SparseCategoricalCrossentropy(ignore_class=-1)
    for i in range(0, len(x), batch_size):
        metric.update_state(y[i:i + batch_size], t.keras(x[i:i + batch_size]),
                            sample_weight=sw[i:i + batch_size])
    return float(metric.result())


def test_evaluate_in_several_batches():
    t = _twin(False, seed=3)
    _compile(t, -1, False)
    parts = [_data(kind, -1, seed=i) for i, kind in enumerate(["right", "rows", "left"])]
    x, y_gm, y_keras, sw = (np.concatenate([p[i] for p in parts]) for i in range(4))
    for batch_size in (4, 6, len(x)):
        ours = t.gm.evaluate(x, y_gm, sample_weight=sw, batch_size=batch_size,
                             return_dict=True)
        theirs = t.keras.evaluate(x, y_keras, sample_weight=sw, batch_size=batch_size,
                                  verbose=0, return_dict=True)
        for name in ("loss", "accuracy", "xent"):
            tw.assert_close(ours[name], theirs[name], what=f"{batch_size} {name}")
        tw.assert_close(ours["wxent"], _keras_metric_over_batches(t, x, y_keras, sw,
                                                                  batch_size),
                        what=f"{batch_size} wxent")


def test_padded_labels_without_ignore_class():
    # no ignore_class: out-of-range ids at padded positions are simply never used
    t = _twin(True, seed=4)
    go, ko = tw.optimizer_pair("SGD", learning_rate=0.5)
    t.gm.compile(optimizer=go, loss=gm.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    t.keras.compile(optimizer=ko,
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    x, y_gm, y_keras, sw = _data("mixed", 0, seed=5)
    y_gm = np.where(x != 0, y_gm, 99)
    for weights in (None, sw):
        ours = t.gm.train_on_batch(x, y_gm, sample_weight=weights, return_dict=True)
        theirs = t.keras.train_on_batch(x, y_keras, sample_weight=weights, return_dict=True)
        for name in ("loss", "accuracy"):
            tw.assert_close(ours[name], theirs[name], tw.TRAIN_RTOL, tw.TRAIN_ATOL, name)
        for a, b in zip(t.gm.get_weights(), tw.keras_weights(t.keras)):
            tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL)
