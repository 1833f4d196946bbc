"""Keras 3 conformance at production sizes: the threaded, multi-chunk LSTM kernels.

The other conformance files use H <= 5 and B <= 7, where every LSTM kernel runs on one
thread over one unit chunk. Here H = 64 (four chunks of ``UNIT_CHUNK`` = 16 units),
B = 32 and T = 50, so that the widest step has at least ``PARALLEL_MIN_WORK``
multiply-adds and the parallel drivers run (``_assert_threaded``). The slow cases
(``-m slow``, run by ``.ci/run``) add fit over epochs with SGD, Adam and RMSprop, bigger
sizes (per-step row blocks, eight chunks) and a float64 torch computation of the loss
as the truth (Keras 3 cannot compute in float64: its dtype promotion turns float64
operands into float32 ones).

Weights start from graphmask's own initializers (Glorot kernels, orthogonal recurrent
kernels, unit forget bias): the point a real model trains from.

Float32 tolerances (measured on the models below, five mask patterns, seeds as here):

* predict: ``tw.RTOL, tw.ATOL`` (1e-5, 1e-6); measured |ours - Keras| <= 3e-8.
* gradients, compared directly (``loss_and_gradients`` against torch autograd of Keras's
  compiled loss): ``|ours - Keras| <= GRAD_TOL * max|Keras|`` per weight, GRAD_TOL = 1e-4.
  A gradient entry is a float32 sum over the B*T = 1600 (sample, step) rows, and a
  float32 sum of N terms is exact to N * eps (1600 * 1.19e-7 = 1.9e-4) of the sum of
  their magnitudes. Against a float64 computation of the same loss
  (``test_float32_gradients_near_float64_truth``) graphmask's float32 gradients are
  within 2e-5 of each weight's largest entry, Keras's within 1e-6, graphmask's float64
  path within 5e-14. Counting one masked step as kept moves some weight's gradient by at
  least 2.9e-2 of its largest entry (290x the tolerance), every weight's by 1.2e-3.
* weights after SGD steps: ``tw.TRAIN_RTOL, tw.TRAIN_ATOL`` (1e-4, 2e-6); measured 3e-8.
* weights after Adam and RMSprop steps: ``ADAPTIVE_TOL * learning_rate * steps``
  absolute, ADAPTIVE_TOL = 3e-3 (predictions after them likewise). Their step
  ``lr * m / (sqrt(v) + eps)`` does not scale with the gradient: an entry whose gradient
  is as small as the rounding error of the sums above moves in a direction rounding
  decides, by up to ``lr`` per step. Measured: at most 4.3e-4 of ``lr * steps`` (2.6e-5
  after 6 Adam steps at lr = 0.01), predictions 4.8e-6; a skipped update would be off
  by a whole ``lr``.
"""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

from graphmask.kernels import lstm as K
from tests.conformance import twin as tw

B, T, H = 32, 50, 64
V, E, C, F = 40, 16, 8, 6
MASKS = ("right", "left", "holes", "rows")  # "rows": holes and two rows with no kept step
GRAD_TOL = 1e-4
ADAPTIVE_TOL = 3e-3
STEPS = 3
OPTIMIZERS = {"SGD": {"learning_rate": 0.1, "momentum": 0.9},
              "Adam": {"learning_rate": 0.01},
              "RMSprop": {"learning_rate": 0.01}}


# ---- models and data -----------------------------------------------------------------
def _ids_twin(h=H, t_len=T):
    """Embedding(mask_zero) -> LSTM -> LSTM(go_backwards) -> Dense softmax, per step."""
    spec = [("embedding", {"input_dim": V, "output_dim": E, "mask_zero": True}),
            ("lstm", {"units": h, "return_sequences": True}),
            ("lstm", {"units": h, "return_sequences": True, "go_backwards": True}),
            ("dense", {"units": C, "activation": "softmax"})]
    return tw.build_twin(spec, (t_len,), "int32", randomize=None)


def _float_twin(h=H):
    """Masking -> LSTM(go_backwards) -> LSTM (last output) -> Dense, one value per sample."""
    spec = [("masking", {"mask_value": 0.0}),
            ("lstm", {"units": h, "return_sequences": True, "go_backwards": True}),
            ("lstm", {"units": h}),
            ("dense", {"units": 4})]
    return tw.build_twin(spec, (T, F), "float32", randomize=None)


MODELS = {"ids": (_ids_twin, "cce"), "floats": (_float_twin, "mse")}


def _batch(model, mask_kind, rng, b=B, t=T):
    """x, y and sample weights: per position for the ids model, per sample for floats."""
    mask = tw.mask_pattern(mask_kind, b, t, rng)
    if model == "ids":
        x = tw.ids_for(mask, V, rng)
        y = tw.targets_for("cce", (b, t, C), rng)
        sw = rng.random((b, t)).astype(np.float32)
    else:
        x = tw.features_for(mask, F, rng)
        y = tw.targets_for("mse", (b, 4), rng)
        sw = rng.random(b).astype(np.float32)
    return x, y, sw, mask


def _assert_threaded(mask, h=H):
    """The sizes reach the parallel, multi-chunk kernels (thresholds of kernels/lstm.py)."""
    widest = int(mask.sum(axis=0).max())
    assert not K.threads_for(widest, h).serial, (widest, h)
    assert K.unit_chunks(h).size - 1 > 1, h


# ---- comparisons ---------------------------------------------------------------------
def _assert_gradients(t, x, y, sw, what):
    ours_loss, ours = t.gm.loss_and_gradients(x, y, sample_weight=sw)
    theirs_loss, theirs = tw.keras_loss_and_gradients(t.keras, x, y, sw)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5, err_msg=f"{what} loss")
    assert [tuple(g.shape) for g in ours.values()] == [g.shape for g in theirs]
    for (name, a), b in zip(ours.items(), theirs):
        scale = float(np.abs(b).max())
        assert scale > 0, f"{what}: Keras gives {name} no gradient at all"
        np.testing.assert_allclose(a, b, rtol=0, atol=GRAD_TOL * scale,
                                   err_msg=f"{what}: gradient of {name}")
    return ours


def _assert_weights(t, optimizer, steps, what):
    lr = OPTIMIZERS[optimizer]["learning_rate"]
    names = [v.name for v in t.gm.weights]
    for name, a, b in zip(names, t.gm.get_weights(), tw.keras_weights(t.keras)):
        if optimizer == "SGD":
            tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"{what} {name}")
        else:
            tw.assert_close(a, b, 0.0, ADAPTIVE_TOL * lr * steps, f"{what} {name}")


def _cases(default):
    """Every (model, mask kind); those not in ``default`` run in the slow suite only."""
    return [(m, k) if (m, k) in default else pytest.param(m, k, marks=pytest.mark.slow)
            for m in sorted(MODELS) for k in MASKS]


# ---- default suite (and the rest of each matrix in the slow one) ---------------------
@pytest.mark.parametrize("model,mask_kind", _cases({("ids", "right"), ("ids", "holes"),
                                                    ("floats", "left"), ("floats", "rows")}))
def test_predict(model, mask_kind):
    t = MODELS[model][0]()
    x, _, _, mask = _batch(model, mask_kind, np.random.default_rng(1))
    _assert_threaded(mask)
    ours = t.gm.predict(x, batch_size=B)
    tw.assert_close(ours, tw.keras_predict(t.keras, x), what=f"{model} {mask_kind}")
    if mask_kind == "rows" and model == "floats":  # no kept step: LSTM state stays zero
        dead = ~mask.any(axis=1)
        bias = t.gm.get_layer("dense_3").get_weights()[1]
        np.testing.assert_array_equal(ours[dead], np.broadcast_to(bias, ours[dead].shape))


@pytest.mark.parametrize("model,mask_kind", _cases({("ids", "left"), ("ids", "rows"),
                                                    ("floats", "right"), ("floats", "holes")}))
def test_gradients_match_keras_autograd(model, mask_kind):
    make, loss = MODELS[model]
    t = make()
    t.compile("SGD", loss)
    x, y, sw, mask = _batch(model, mask_kind, np.random.default_rng(2))
    _assert_threaded(mask)
    grads = _assert_gradients(t, x, y, sw, f"{model} {mask_kind}")
    if model == "ids":  # the padding row is never read at a kept position
        assert not np.any(grads["embedding_0/embeddings"][0])


@pytest.mark.parametrize("optimizer,mask_kind", [("SGD", "holes"), ("Adam", "rows")])
def test_train_on_batch_weights(optimizer, mask_kind):
    t = _ids_twin()
    t.compile(optimizer, "cce", **OPTIMIZERS[optimizer])
    rng = np.random.default_rng(3)
    for step in range(STEPS):
        x, y, sw, mask = _batch("ids", mask_kind, rng)
        _assert_threaded(mask)
        ours = t.gm.train_on_batch(x, y, sample_weight=sw)
        theirs = t.keras.train_on_batch(x, y, sample_weight=sw)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, err_msg=f"loss at step {step}")
    _assert_weights(t, optimizer, STEPS, f"{optimizer} {mask_kind}")


# ---- slow suite ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mask_kind", MASKS + ("mixed",))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_fit_epochs_weights_and_predict(optimizer, mask_kind):
    """fit: 2 epochs of 3 batches of 32, then the weights and predict (both models)."""
    rng = np.random.default_rng(4)
    for model, (make, loss) in sorted(MODELS.items()):
        t = make()
        t.compile(optimizer, loss, **OPTIMIZERS[optimizer])
        x, y, sw, mask = _batch(model, mask_kind, rng, b=3 * B)
        for i in range(3):
            _assert_threaded(mask[i * B:(i + 1) * B])
        kw = dict(sample_weight=sw, batch_size=B, epochs=2, shuffle=False, verbose=0)
        ours, theirs = t.gm.fit(x, y, **kw), t.keras.fit(x, y, **kw)
        np.testing.assert_allclose(ours.history["loss"], theirs.history["loss"], rtol=1e-5)
        _assert_weights(t, optimizer, 6, f"{model} {optimizer} {mask_kind} after fit")
        rtol, atol = (tw.TRAIN_RTOL, tw.TRAIN_ATOL) if optimizer == "SGD" else (
            0.0, ADAPTIVE_TOL * OPTIMIZERS[optimizer]["learning_rate"] * 6)
        tw.assert_close(t.gm.predict(x[:B]), tw.keras_predict(t.keras, x[:B]), rtol, atol,
                        f"{model} predict after fit")


@pytest.mark.slow
@pytest.mark.parametrize("mask_kind", ["right", "rows"])
def test_bigger_sizes(mask_kind):
    """H = 128 (eight chunks), B = 96 (per-step GEMMs cut in row blocks), T = 100:
    predict, gradients and Adam steps."""
    b, t_len, h = 96, 100, 128
    t = _ids_twin(h=h, t_len=t_len)
    rng = np.random.default_rng(5)
    x, y, sw, mask = _batch("ids", mask_kind, rng, b=b, t=t_len)
    _assert_threaded(mask, h)
    assert int(mask.sum(axis=0).max()) > 64  # more rows than one per-step GEMM block
    tw.assert_close(t.gm.predict(x, batch_size=b), tw.keras_predict(t.keras, x))
    t.compile("Adam", "cce", **OPTIMIZERS["Adam"])
    _assert_gradients(t, x, y, sw, f"bigger {mask_kind}")
    for _ in range(STEPS):
        np.testing.assert_allclose(t.gm.train_on_batch(x, y, sample_weight=sw),
                                   t.keras.train_on_batch(x, y, sample_weight=sw), rtol=1e-5)
    _assert_weights(t, "Adam", STEPS, f"bigger {mask_kind}")


def _torch_lstm(seq, mask, kernel, recurrent, bias, backwards):
    """Keras's masked LSTM, written out: carry the state over masked steps, outputs in
    processing order (reversed with ``go_backwards``)."""
    torch = tw.torch
    h = c = seq.new_zeros(seq.shape[0], recurrent.shape[0])
    outs = []
    steps = range(seq.shape[1] - 1, -1, -1) if backwards else range(seq.shape[1])
    for s in steps:
        i, f, g, o = (seq[:, s] @ kernel + h @ recurrent + bias).chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        keep = mask[:, s, None]
        h, c = torch.where(keep, h_new, h), torch.where(keep, c_new, c)
        outs.append(h)
    return torch.stack(outs, dim=1)


def _torch_float64_loss_and_gradients(weights, x, y, sw):
    """The ids model's loss and gradients in float64 with torch autograd, from the
    definitions (docs/masking.md): Keras 3 itself cannot give them, since its
    ``result_type`` turns float64 operands into float32 ones (``ops.matmul`` included)."""
    torch = tw.torch
    ws = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in weights]
    emb, k1, r1, b1, k2, r2, b2, kd, bd = ws
    ids = torch.tensor(x, dtype=torch.long)
    mask = ids != 0
    seq = _torch_lstm(emb[ids], mask, k1, r1, b1, backwards=False)
    seq = _torch_lstm(seq, mask, k2, r2, b2, backwards=True)
    p = torch.softmax(seq @ kd + bd, dim=-1)
    p = (p / p.sum(-1, keepdim=True)).clamp(1e-7, 1 - 1e-7)
    score = -(torch.tensor(y, dtype=torch.float64) * torch.log(p)).sum(-1)
    m = mask.double()
    loss = (score * m * torch.tensor(sw, dtype=torch.float64)).sum() / m.sum()
    loss.backward()
    return float(loss.detach()), [w.grad.numpy() for w in ws]


@pytest.mark.slow
@pytest.mark.parametrize("mask_kind", MASKS)
def test_float32_gradients_near_float64_truth(mask_kind):
    """A float64 torch computation of the same loss is the truth: graphmask's float64
    path matches it to 1e-9 (same semantics), and graphmask's and Keras's float32
    gradients both stand within GRAD_TOL of it (the tolerance covers rounding only)."""
    from graphmask.testing import loss_and_grads

    t = _ids_twin()
    t.compile("SGD", "cce")
    x, y, sw, mask = _batch("ids", mask_kind, np.random.default_rng(6))
    _assert_threaded(mask)
    truth_loss, truth = _torch_float64_loss_and_gradients(t.gm.get_weights(), x, y, sw)
    ours_loss, ours = t.gm.loss_and_gradients(x, y, sample_weight=sw)
    k32_loss, k32 = tw.keras_loss_and_gradients(t.keras, x, y, sw)
    ours64_loss, ours64 = loss_and_grads(t.gm, x, y, sample_weight=sw, dtype="float64")
    np.testing.assert_allclose([ours_loss, k32_loss], truth_loss, rtol=1e-6)
    np.testing.assert_allclose(ours64_loss, truth_loss, rtol=1e-12)
    for (name, a), b, c in zip(ours.items(), k32, truth):
        scale = float(np.abs(c).max())
        np.testing.assert_allclose(ours64[name], c, rtol=0, atol=1e-9 * scale, err_msg=name)
        np.testing.assert_allclose(a, c, rtol=0, atol=GRAD_TOL * scale, err_msg=name)
        np.testing.assert_allclose(b, c, rtol=0, atol=GRAD_TOL * scale, err_msg=name)
