"""``Bidirectional`` (of LSTM, GRU and SimpleRNN) against Keras 3 (torch backend).

Each model is built twice from one builder, with ``graphmask`` and with ``keras.layers``;
Keras's random weights (normal * 0.5) are copied into graphmask unchanged, so the weight
lists must already agree name by name (``forward_<name>/kernel`` ... then
``backward_<name>/...``). Then, under right, left, holes and empty-row padding:
``predict``, ``evaluate`` with a (masked where the output carries a mask) mean squared
error, the loss and every weight gradient against torch autograd, the weights after four
``train_on_batch`` steps with SGD and with Adam, the output masks, ``model.layers``, the
config, and eager calls on arrays.

With ``initial_state``, Keras 3 hands its layer no mask (its ``call`` then has two tensor
arguments); graphmask applies the sequence's mask, as Keras does when it is passed
explicitly, so the Keras model compared against passes ``mask=x._keras_mask`` (the same
deliberate difference as the LSTM's, see ``test_keras_initial_state.py``).

Float32 tolerances are those of ``test_keras_composed_layers.py`` (the same kinds of
sums): predict ``tw.RTOL, tw.ATOL``, gradients relative 1e-4 / absolute 1e-6, evaluate
relative 1e-5, SGD ``tw.TRAIN_RTOL, tw.TRAIN_ATOL``, Adam absolute
``ADAM_TOL * lr * steps``.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V, E, H = 6, 5, 7, 3, 4  # batch, time steps, vocabulary, embedding width, units
PADDINGS = ("right", "left", "holes", "rows")
ADAM_TOL = 1e-3
OPTIMIZERS = {"SGD": {"learning_rate": 0.1}, "Adam": {"learning_rate": 0.01}}
MODES = ("concat", "sum", "mul", "ave")


class Lib:
    """``layers``, ``Input``, ``Model`` of one library."""

    def __init__(self, name):
        self.name = name
        if name == "graphmask":
            self.layers, self.Input, self.Model = gm, gm.Input, gm.Model
        else:
            self.layers, self.Input, self.Model = keras.layers, keras.Input, keras.Model

    def with_state(self, layer, x, states):
        """``layer(x, initial_state=states)``; Keras gets ``x``'s mask explicitly."""
        if self.name == "keras":
            return layer(x, initial_state=states, mask=x._keras_mask)
        return layer(x, initial_state=states)


def _ids(lib, name="ids"):
    return lib.Input((T,), dtype="int32", name=name)


def _emb(lib, x, name="emb"):
    return lib.layers.Embedding(V, E, mask_zero=True, name=name)(x)


def _tagger(mode):
    def build(lib):
        ids = _ids(lib)
        h = lib.layers.Bidirectional(lib.layers.LSTM(H, return_sequences=True, name="lstm"),
                                     merge_mode=mode, name="bidi")(_emb(lib, ids))
        return lib.Model(ids, lib.layers.Dense(2, name="head")(h))
    return build


def _summary(mode):
    def build(lib):
        ids = _ids(lib)
        h = lib.layers.Bidirectional(lib.layers.LSTM(H, name="lstm"), merge_mode=mode,
                                     name="bidi")(_emb(lib, ids))
        return lib.Model(ids, lib.layers.Dense(2, name="head")(h))
    return build


def no_merge_sequences(lib):
    ids = _ids(lib)
    fwd, bwd = lib.layers.Bidirectional(
        lib.layers.LSTM(H, return_sequences=True, name="lstm"), merge_mode=None,
        name="bidi")(_emb(lib, ids))
    return lib.Model(ids, [lib.layers.Dense(2, name="head_f")(fwd),
                           lib.layers.Dense(2, name="head_b")(bwd)])


def no_merge_summary(lib):
    ids = _ids(lib)
    fwd, bwd = lib.layers.Bidirectional(lib.layers.LSTM(H, name="lstm"), merge_mode=None,
                                        name="bidi")(_emb(lib, ids))
    return lib.Model(ids, lib.layers.Add(name="add")([fwd, bwd]))


def stacked(lib):
    ids = _ids(lib)
    h = lib.layers.Bidirectional(lib.layers.LSTM(H, return_sequences=True, name="l1"),
                                 name="bidi_1")(_emb(lib, ids))
    h = lib.layers.Bidirectional(lib.layers.LSTM(3, name="l2"), merge_mode="sum",
                                 name="bidi_2")(h)
    return lib.Model(ids, lib.layers.Dense(2, name="head")(h))


def return_state(lib):
    ids = _ids(lib)
    out, hf, cf, hb, cb = lib.layers.Bidirectional(
        lib.layers.LSTM(H, return_state=True, name="lstm"), name="bidi")(_emb(lib, ids))
    both = lib.layers.Concatenate(name="cat")([out, hf, cf, hb, cb])
    return lib.Model(ids, lib.layers.Dense(2, name="head")(both))


def sequences_and_state(lib):
    ids = _ids(lib)
    seq, hf, cf, hb, cb = lib.layers.Bidirectional(
        lib.layers.LSTM(H, return_sequences=True, return_state=True, name="lstm"),
        merge_mode="ave", name="bidi")(_emb(lib, ids))
    state = lib.layers.Dense(2, name="state_head")(lib.layers.Concatenate(name="cat")(
        [hf, cf, hb, cb]))
    return lib.Model(ids, [lib.layers.Dense(2, name="head")(seq), state])


def encoder_decoder(lib):
    """A bidirectional encoder's four states start a bidirectional decoder."""
    src, tgt = _ids(lib, "src"), _ids(lib, "tgt")
    _, hf, cf, hb, cb = lib.layers.Bidirectional(
        lib.layers.LSTM(H, return_state=True, name="enc"), name="bi_enc")(
        _emb(lib, src, "src_emb"))
    dec = lib.layers.Bidirectional(lib.layers.LSTM(H, return_sequences=True, name="dec"),
                                   name="bi_dec")
    y = lib.with_state(dec, _emb(lib, tgt, "tgt_emb"), [hf, cf, hb, cb])
    return lib.Model([src, tgt], lib.layers.Dense(2, name="head")(y))


def custom_backward_layer(lib):
    ids = _ids(lib)
    fwd = lib.layers.LSTM(H, return_sequences=True, name="fwd")
    bwd = lib.layers.LSTM(H, return_sequences=True, go_backwards=True, activation="relu",
                          use_bias=False, name="bwd")
    h = lib.layers.Bidirectional(fwd, backward_layer=bwd, name="bidi")(_emb(lib, ids))
    return lib.Model(ids, lib.layers.Dense(2, name="head")(h))


def backwards_first(lib):
    """The wrapped layer goes backwards and the given backward layer forwards."""
    ids = _ids(lib)
    h = lib.layers.Bidirectional(
        lib.layers.LSTM(H, return_sequences=True, go_backwards=True, name="back"),
        backward_layer=lib.layers.LSTM(H, return_sequences=True, name="ahead"),
        name="bidi")(_emb(lib, ids))
    return lib.Model(ids, lib.layers.Dense(2, name="head")(h))


def masking_features(lib):
    x = lib.Input((T, 3), name="x")
    h = lib.layers.Masking(0.0, name="mask")(x)
    h = lib.layers.Bidirectional(lib.layers.LSTM(H, return_sequences=True,
                                                 zero_output_for_mask=False, name="lstm"),
                                 merge_mode="mul", name="bidi")(h)
    return lib.Model(x, lib.layers.Dense(2, name="head")(h))


def _other_rnn(cls, mode, seq=True, **kw):
    def build(lib):
        ids = _ids(lib)
        rnn = getattr(lib.layers, cls)(H, return_sequences=seq, name="rnn", **kw)
        h = lib.layers.Bidirectional(rnn, merge_mode=mode, name="bidi")(_emb(lib, ids))
        return lib.Model(ids, lib.layers.Dense(2, name="head")(h))
    return build


def gru_state(lib):
    ids = _ids(lib)
    out, hf, hb = lib.layers.Bidirectional(lib.layers.GRU(H, return_state=True, name="gru"),
                                           name="bidi")(_emb(lib, ids))
    both = lib.layers.Concatenate(name="cat")([out, hf, hb])
    return lib.Model(ids, lib.layers.Dense(2, name="head")(both))


CASES = {
    **{f"tagger_{m}": _tagger(m) for m in MODES},
    "gru_tagger_concat": _other_rnn("GRU", "concat"),
    "gru_summary_ave": _other_rnn("GRU", "ave", seq=False),
    "gru_tagger_reset_before_sum": _other_rnn("GRU", "sum", reset_after=False),
    "gru_state": gru_state,
    "simple_rnn_tagger_mul": _other_rnn("SimpleRNN", "mul"),
    "simple_rnn_summary_concat": _other_rnn("SimpleRNN", "concat", seq=False),
    **{f"summary_{m}": _summary(m) for m in MODES},
    "no_merge_sequences": no_merge_sequences,
    "no_merge_summary": no_merge_summary,
    "stacked": stacked,
    "return_state": return_state,
    "sequences_and_state": sequences_and_state,
    "encoder_decoder": encoder_decoder,
    "custom_backward_layer": custom_backward_layer,
    "backwards_first": backwards_first,
    "masking_features": masking_features,
}
#: the cases whose (first) output carries a mask
MASKED_OUTPUT = {c for c in CASES if "tagger_" in c} | {
    "no_merge_sequences", "sequences_and_state", "encoder_decoder", "custom_backward_layer",
    "backwards_first", "masking_features"}


def _keras_names(variables):
    cells = ("lstm_cell", "gru_cell", "simple_rnn_cell")
    return ["/".join([p for p in v.path.split("/") if p not in cells][-2:])
            for v in variables]


def twin(case: str, seed: int = 0):
    """The case in both libraries with the same weights (Keras's, copied as they are)."""
    g, k = CASES[case](Lib("graphmask")), CASES[case](Lib("keras"))
    ours, theirs = [v.name for v in g.weights], _keras_names(k.weights)
    assert ours == theirs, f"{case}: weight order differs\ngraphmask: {ours}\nKeras:     {theirs}"
    rng = np.random.default_rng(seed)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    return g, k


def batch(k, padding: str, rng):
    xs = []
    for inp in k.inputs:
        shape = (B,) + tuple(inp.shape[1:])
        m = tw.mask_pattern(padding, B, T, rng)
        if "int" in str(inp.dtype):
            xs.append(tw.ids_for(m, V, rng))
        else:
            xs.append(tw.features_for(m, shape[-1], rng))
    return xs[0] if len(xs) == 1 else xs


def targets(k, rng):
    ys = [rng.standard_normal((B,) + tuple(o.shape[1:])).astype(np.float32)
          for o in k.outputs]
    return ys[0] if len(ys) == 1 else ys


def _keras_loss_and_gradients(k, xs, y):
    conv = keras.ops.convert_to_tensor
    xt = [conv(x) for x in xs] if isinstance(xs, list) else conv(xs)
    yt = [conv(v) for v in y] if isinstance(y, list) else conv(y)
    k.zero_grad()
    value = k.compute_loss(x=xt, y=yt, y_pred=k(xt, training=True), training=True)
    value.backward()
    grads = [np.zeros(tuple(v.shape), np.float32) if v.value.grad is None
             else v.value.grad.detach().numpy().copy() for v in k.trainable_weights]
    k.zero_grad()
    return float(value.detach()), grads


# ---- tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_layers_and_weights_in_keras_order(case):
    g, k = twin(case)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    for gl, kl in zip(g.layers, k.layers):
        assert [v.name for v in gl.weights] == _keras_names(kl.weights), gl.name
        assert [v.shape for v in gl.weights] == [tuple(w.shape) for w in kl.weights], gl.name


@pytest.mark.parametrize("case", CASES)
def test_output_masks_are_keras_masks(case):
    g, k = twin(case)
    ours = [t.keras_mask is not None for t in g.outputs]
    theirs = [getattr(t, "_keras_mask", None) is not None for t in k.outputs]
    assert ours == theirs
    assert ours[0] == (case in MASKED_OUTPUT)


@pytest.mark.parametrize("case", CASES)
def test_predict_and_masked_evaluate(case):
    g, k = twin(case)
    g.compile(loss="mse")
    k.compile(loss="mse")
    rng = np.random.default_rng(1)
    for padding in PADDINGS:
        xs, y = batch(k, padding, rng), targets(k, rng)
        tw.assert_close(g.predict(xs), tw.keras_predict(k, xs),
                        what=f"{case} predict, {padding} padding")
        tw.assert_close(g.evaluate(xs, y, batch_size=B),
                        k.evaluate(xs, y, batch_size=B, verbose=0), rtol=1e-5, atol=0,
                        what=f"{case} evaluate, {padding} padding")


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_match_torch_autograd(case):
    g, k = twin(case)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(3)
    xs, y = batch(k, "mixed", rng), targets(k, rng)
    loss, grads = g.loss_and_gradients(xs, y)
    k_loss, k_grads = _keras_loss_and_gradients(k, xs, y)
    assert loss == pytest.approx(k_loss, rel=1e-5)
    for var, theirs in zip(g.trainable_weights, k_grads):
        tw.assert_close(grads[var.name], theirs, rtol=1e-4, atol=1e-6,
                        what=f"{case} gradient of {var.name}")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("case", ["tagger_concat", "summary_ave", "no_merge_sequences",
                                  "return_state", "encoder_decoder", "custom_backward_layer",
                                  "masking_features", "gru_tagger_concat", "gru_state",
                                  "simple_rnn_tagger_mul"])
def test_train_on_batch(case, optimizer):
    g, k = twin(case)
    tw.check_train_steps(g, k, optimizer, OPTIMIZERS[optimizer], PADDINGS, batch, targets,
                         case, ADAM_TOL)


def test_config_matches_keras():
    """The config's own keys and the inner layers' names, go_backwards and the forced
    zero_output_for_mask are Keras's."""
    for case in ("tagger_concat", "summary_sum", "custom_backward_layer", "backwards_first"):
        g, k = twin(case)
        gc, kc = g.get_layer("bidi").get_config(), k.get_layer("bidi").get_config()
        assert gc["merge_mode"] == kc["merge_mode"]
        for key in ("layer", "backward_layer"):
            assert gc[key]["class_name"] == kc[key]["class_name"] == "LSTM"
            for field in ("name", "units", "go_backwards", "return_sequences",
                          "zero_output_for_mask", "activation", "use_bias"):
                assert gc[key]["config"][field] == kc[key]["config"][field], (case, key, field)


# ---- eager calls ---------------------------------------------------------------------------
EAGER = {
    "concat_sequences": dict(merge_mode="concat", seq=True),
    "sum_summary": dict(merge_mode="sum", seq=False),
    "none_sequences": dict(merge_mode=None, seq=True),
    "ave_state": dict(merge_mode="ave", seq=False, state=True),
}


@pytest.mark.parametrize("name", EAGER)
def test_eager_calls_match_keras(name):
    cfg = EAGER[name]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    mask = tw.mask_pattern("mixed", B, T, rng)

    def make(L):
        return L.Bidirectional(L.LSTM(H, return_sequences=cfg["seq"],
                                      return_state=cfg.get("state", False)),
                               merge_mode=cfg["merge_mode"])

    kl, gl = make(keras.layers), make(gm)
    kl(x)
    gl(x)
    kl.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                    for w in kl.get_weights()])
    gl.set_weights(kl.get_weights())
    for m in (None, mask):
        theirs = kl(x, mask=None if m is None else keras.ops.convert_to_tensor(m))
        theirs = [keras.ops.convert_to_numpy(t) for t in theirs] \
            if isinstance(theirs, (list, tuple)) else keras.ops.convert_to_numpy(theirs)
        ours = gl(x, mask=m)
        tw.assert_close(ours, theirs, what=f"{name}, mask={m is not None}")
