"""Build the same model in graphmask and in Keras 3 from one small declarative spec.

A spec is a list of layer specs applied in sequence after an ``Input``::

    [("embedding", dict(input_dim=7, output_dim=3, mask_zero=True)),
     ("lstm", dict(units=4, return_sequences=True)),
     ("dense", dict(units=2, activation="softmax"))]

Kinds: ``embedding``, ``masking``, ``lstm``, ``dense``, ``activation``, ``gap1d``. An
LSTM with ``return_state=True`` yields ``[output, h, c]``; the chain continues with the
output and, if it is the last layer, the model has the three outputs.

graphmask's weights are copied into Keras with ``set_weights`` unchanged: both list
weights layer by layer in Keras's order, which is a requirement of graphmask.
Importing it skips the calling module when the oracle is missing (see ``oracle.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import graphmask as gm
from tests.conformance.oracle import import_keras

keras = import_keras()
import torch  # only once import_keras has checked that it is installed

# most models here are tiny: one torch thread is faster than a pool fighting for cores
torch.set_num_threads(1)

RTOL, ATOL = 1e-5, 1e-6          # one forward pass in float32
TRAIN_RTOL, TRAIN_ATOL = 1e-4, 2e-6  # weights after a few float32 optimizer steps

_KINDS = {
    "embedding": (gm.Embedding, keras.layers.Embedding),
    "masking": (gm.Masking, keras.layers.Masking),
    "lstm": (gm.LSTM, keras.layers.LSTM),
    "dense": (gm.Dense, keras.layers.Dense),
    "activation": (gm.Activation, keras.layers.Activation),
    "gap1d": (gm.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling1D),
}

LOSSES = {
    "mse": ("MeanSquaredError", False),
    "mae": ("MeanAbsoluteError", False),
    "bce": ("BinaryCrossentropy", True),
    "cce": ("CategoricalCrossentropy", True),
    "scce": ("SparseCategoricalCrossentropy", True),
}

OPTIMIZERS = ("SGD", "Adam", "RMSprop")


@dataclass
class Twin:
    """The same model twice, with identical weights."""

    gm: gm.Model
    keras: keras.Model
    spec: list

    def sync(self) -> None:
        """Copy graphmask's weights into Keras (same list, same order)."""
        copy_weights(self.gm, self.keras)

    def compile(self, optimizer="sgd", loss=None, metrics=None, **opt_cfg) -> None:
        """Compile both; ``loss`` is a key of LOSSES, optionally ``(key, from_logits)``."""
        gl, kl = loss_pair(loss) if loss is not None else (None, None)
        go, ko = optimizer_pair(optimizer, **opt_cfg)
        self.gm.compile(optimizer=go, loss=gl, metrics=metrics)
        self.keras.compile(optimizer=ko, loss=kl, metrics=metrics)


def _pair_layers(kind: str, cfg: dict, i: int):
    if kind not in _KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; known: {sorted(_KINDS)}")
    g_cls, k_cls = _KINDS[kind]
    name = f"{kind}_{i}"
    return g_cls(name=name, **cfg), k_cls(name=name, **cfg)


def build_twin(spec, input_shape, input_dtype="float32", seed: int = 0,
               randomize: float | None = 0.5) -> Twin:
    """Build ``spec`` in both libraries and copy graphmask's weights into Keras.

    ``randomize``: replace graphmask's initial weights by normal(0, randomize) values
    first (so biases, forget-gate biases and embeddings all matter), None keeps them.
    """
    spec = [(s[0], dict(s[1]) if len(s) > 1 else {}) for s in spec]
    g = gi = gm.Input(shape=tuple(input_shape), dtype=input_dtype, name="x")
    k = ki = keras.Input(shape=tuple(input_shape), dtype=input_dtype, name="x")
    for i, (kind, cfg) in enumerate(spec):
        gl, kl = _pair_layers(kind, cfg, i)
        g, k = gl(g), kl(k)
        if isinstance(g, (list, tuple)) and i < len(spec) - 1:
            g, k = g[0], k[0]
    gmodel = gm.Model(gi, list(g) if isinstance(g, (list, tuple)) else g)
    kmodel = keras.Model(ki, list(k) if isinstance(k, (list, tuple)) else k)
    if randomize:
        rng = np.random.default_rng(seed)
        gmodel.set_weights([(rng.standard_normal(w.shape) * randomize).astype(w.dtype)
                            for w in gmodel.get_weights()])
    twin = Twin(gmodel, kmodel, spec)
    twin.sync()
    return twin


def copy_weights(gmodel, kmodel) -> None:
    """``kmodel.set_weights(gmodel.get_weights())``, after checking names line up."""
    gw, kw = gmodel.weights, kmodel.weights
    assert [tuple(v.shape) for v in gw] == [tuple(v.shape) for v in kw], (
        [(v.name, v.shape) for v in gw], [(v.path, tuple(v.shape)) for v in kw])
    kmodel.set_weights(gmodel.get_weights())


def keras_weights(kmodel) -> list[np.ndarray]:
    return [np.asarray(w) for w in kmodel.get_weights()]


def loss_pair(loss):
    """(graphmask loss object, keras loss object) for a LOSSES key or (key, from_logits)."""
    key, logits = (loss, False) if isinstance(loss, str) else loss
    cls, has_logits = LOSSES[key]
    cfg = {"from_logits": logits} if has_logits else {}
    return getattr(gm.losses, cls)(**cfg), getattr(keras.losses, cls)(**cfg)


def optimizer_pair(name, **cfg):
    if not isinstance(name, str):
        raise TypeError("give the optimizer by name: 'SGD', 'Adam' or 'RMSprop'")
    cls = {n.lower(): n for n in OPTIMIZERS}[name.lower()]
    return getattr(gm.optimizers, cls)(**cfg), getattr(keras.optimizers, cls)(**cfg)


def keras_predict(kmodel, x):
    out = kmodel.predict(x, batch_size=len(x), verbose=0)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


def assert_close(ours, theirs, rtol=RTOL, atol=ATOL, what=""):
    if isinstance(ours, (list, tuple)):
        assert isinstance(theirs, (list, tuple)) and len(ours) == len(theirs), what
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, rtol, atol, f"{what}[{i}]")
        return
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64),
                               np.asarray(theirs, dtype=np.float64),
                               rtol=rtol, atol=atol, err_msg=what)


# ---- data --------------------------------------------------------------------------------
def mask_pattern(kind: str, b: int, t: int, rng) -> np.ndarray:
    """A (B, T) bool keep-mask: right / left padding, holes, all-masked rows or batch."""
    lengths = rng.integers(1, t + 1, size=b)
    ar = np.arange(t)[None, :]
    if kind == "none":
        return np.ones((b, t), bool)
    if kind == "right":
        return ar < lengths[:, None]
    if kind == "left":
        return ar >= (t - lengths)[:, None]
    if kind == "holes":
        m = rng.random((b, t)) < 0.6
        m[:, 0] |= ~m.any(axis=1)  # keep at least one step per row
        return m
    if kind == "rows":  # some rows entirely masked, the others with holes
        m = rng.random((b, t)) < 0.6
        m[0] = False
        if b > 2:
            m[b // 2] = False
        return m
    if kind == "batch":
        return np.zeros((b, t), bool)
    if kind == "mixed":  # one batch with every case: full, right, left, holes, empty, one step
        rows = [ar[0] < t, ar[0] < max(1, t // 2), ar[0] >= t // 2, ar[0] % 2 == 0,
                np.zeros(t, bool), ar[0] == t - 1]
        return np.stack([rows[i % len(rows)] for i in range(b)])
    raise ValueError(kind)


MASK_KINDS = ("none", "right", "left", "holes", "rows", "batch", "mixed")


def ids_for(mask: np.ndarray, input_dim: int, rng, dtype="int32") -> np.ndarray:
    """Ids in [1, input_dim) where kept and 0 where masked."""
    ids = rng.integers(1, input_dim, size=mask.shape)
    return np.where(mask, ids, 0).astype(dtype)


def features_for(mask: np.ndarray, f: int, rng, mask_value=0.0) -> np.ndarray:
    """Float features (B, T, F); masked steps are all ``mask_value``, kept ones are not."""
    x = rng.standard_normal(mask.shape + (f,)).astype(np.float32)
    x[..., 0] = np.where(x[..., 0] == mask_value, mask_value + 1.0, x[..., 0])
    x[~mask] = mask_value
    return x


def targets_for(loss_key: str, out_shape, rng) -> np.ndarray:
    """Targets matching a model output shape (batch included) for a LOSSES key."""
    if loss_key in ("mse", "mae"):
        return rng.standard_normal(out_shape).astype(np.float32)
    if loss_key == "bce":
        return (rng.random(out_shape) < 0.5).astype(np.float32)
    if loss_key == "cce":
        ids = rng.integers(0, out_shape[-1], size=out_shape[:-1])
        return np.eye(out_shape[-1], dtype=np.float32)[ids]
    if loss_key == "scce":
        return rng.integers(0, out_shape[-1], size=out_shape[:-1]).astype(np.int32)
    raise ValueError(loss_key)


def head_activation(loss) -> str | None:
    """The output activation a loss expects (probabilities unless from_logits)."""
    key, logits = (loss, False) if isinstance(loss, str) else loss
    if logits or key in ("mse", "mae"):
        return None
    return "sigmoid" if key == "bce" else "softmax"


def keras_loss_and_gradients(kmodel, x, y, sample_weight=None, loss=None):
    """Keras's loss of one batch and the gradient of every trainable weight.

    The loss is the compiled one (``compute_loss``, as Keras's ``train_step`` computes
    it, with ``training=True``), or the Keras loss object ``loss`` applied to the single
    output (it reads the output's mask as the compiled loss does; Keras computes the
    compiled loss's value in float32 whatever the model's dtype). The gradients come
    from torch autograd on the Keras torch backend, in ``kmodel.trainable_weights``
    order (zeros for a weight the loss does not reach). No weight changes.
    """
    conv = keras.ops.convert_to_tensor
    xt, yt = conv(x), conv(y)
    swt = None if sample_weight is None else conv(sample_weight)
    kmodel.zero_grad()
    y_pred = kmodel(xt, training=True)
    if loss is None:
        value = kmodel.compute_loss(x=xt, y=yt, y_pred=y_pred, sample_weight=swt,
                                    training=True)
    else:
        value = loss(yt, y_pred, sample_weight=swt)
    value.backward()
    grads = [np.zeros(tuple(v.shape), np.float32) if v.value.grad is None
             else v.value.grad.detach().numpy().copy() for v in kmodel.trainable_weights]
    kmodel.zero_grad()
    return float(value.detach()), grads


def check_train_steps(g, k, optimizer, cfg, paddings, make_batch, make_targets, case,
                      adam_tol):
    """Compile both models with ``optimizer`` (``cfg`` its arguments), take one
    ``train_on_batch`` step per padding kind, and compare the loss and every weight after
    each step. SGD uses the default training tolerances; an adaptive optimizer
    ``adam_tol * learning_rate * steps`` absolute (its step does not shrink with the
    gradient, so rounding-level gradients still move weights)."""
    go, ko = optimizer_pair(optimizer, **cfg)
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    if optimizer == "SGD":
        rtol, atol = TRAIN_RTOL, TRAIN_ATOL
    else:
        rtol, atol = 1e-4, adam_tol * cfg["learning_rate"] * len(paddings)
    rng = np.random.default_rng(2)
    names = [v.name for v in g.weights]
    for step, padding in enumerate(paddings):
        xs, ys = make_batch(k, padding, rng), make_targets(k, rng)
        assert_close(g.train_on_batch(xs, ys), k.train_on_batch(xs, ys), rtol, atol,
                     f"{case} loss at step {step} ({padding} padding)")
        for name, a, b in zip(names, g.get_weights(), k.get_weights()):
            assert_close(a, b, rtol, atol, f"{case} {name} after step {step} ({padding})")
