"""GRU and SimpleRNN layers: Keras 3's arguments, defaults and configs, weights, exact
errors (naming the layer, the argument and the value; nothing built), models against
the ops' NumPy references, training, save/load, and what the inspection tools show."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError, ShapeError
from graphmask.ops.base import get_op

IDS = np.array([[3, 1, 4, 0, 0, 0],      # right padding
                [0, 0, 2, 5, 1, 2],      # left padding
                [1, 0, 3, 0, 4, 1],      # holes
                [0, 0, 0, 0, 0, 0],      # empty row
                [2, 2, 2, 2, 2, 2]])     # full
V = 7


def _attrs(layer, op):
    a = {"units": layer.units, "activation": layer.activation, "use_bias": layer.use_bias,
         "return_sequences": layer.return_sequences, "return_state": layer.return_state,
         "go_backwards": layer.go_backwards, "zero_output_for_mask": layer.zero_output_for_mask}
    if op == "gru":
        a.update(recurrent_activation=layer.recurrent_activation,
                 reset_after=layer.reset_after)
    return a


def model_of(cls, dtype="float32", weight_seed=0, **kw):
    x = gm.Input((6,), dtype="int32", name="ids")
    e = gm.Embedding(V, 3, mask_zero=True, name="emb", dtype=dtype)(x)
    out = getattr(gm, cls)(4, name="rnn", dtype=dtype, **kw)(e)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    model = gm.Model(x, [gm.Dense(2, name="head", dtype=dtype)(outs[0])] + outs[1:])
    rng = np.random.default_rng(weight_seed)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def expected(model, cls):
    """The model in NumPy: embedding rows, the op's reference, the dense head."""
    op = "gru" if cls == "GRU" else "simple_rnn"
    w = {v.name: v.value.astype(np.float64) for v in model.weights}
    layer = model.get_layer("rnn")
    ports = {"x": w["emb/embeddings"][IDS], "mask": IDS != 0, "kernel": w["rnn/kernel"],
             "recurrent_kernel": w["rnn/recurrent_kernel"]}
    if layer.use_bias:
        ports["bias"] = w["rnn/bias"]
    outs = get_op(op).reference(_attrs(layer, op), ports)
    return [outs[0] @ w["head/kernel"] + w["head/bias"]] + outs[1:]


CASES = [("GRU", {"return_sequences": True}),
         ("GRU", {"return_sequences": True, "reset_after": False, "go_backwards": True}),
         ("GRU", {"return_state": True, "use_bias": False}),
         ("GRU", {"return_sequences": True, "zero_output_for_mask": True,
                  "activation": "relu", "recurrent_activation": "hard_sigmoid"}),
         ("SimpleRNN", {"return_sequences": True, "return_state": True}),
         ("SimpleRNN", {"go_backwards": True, "activation": "relu"})]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_predict_matches_the_numpy_reference(case):
    cls, kw = CASES[case]
    model = model_of(cls, **kw)
    ours = model.predict(IDS)
    ours = ours if isinstance(ours, list) else [ours]
    for a, b in zip(ours, expected(model, cls)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_defaults_weights_and_config_as_keras():
    g = gm.GRU(5)
    assert (g.units, g.activation, g.recurrent_activation, g.use_bias, g.reset_after,
            g.return_sequences, g.return_state, g.go_backwards, g.zero_output_for_mask) == \
        (5, "tanh", "sigmoid", True, True, False, False, False, False)
    g(np.zeros((2, 3, 4), np.float32))
    assert [(v.name, v.shape) for v in g.weights] == [
        ("gru/kernel", (4, 15)), ("gru/recurrent_kernel", (5, 15)), ("gru/bias", (2, 15))]
    b = gm.GRU(5, reset_after=False, use_cudnn=False, seed=3, implementation=1, unroll=True)
    b(np.zeros((2, 3, 4), np.float32))
    assert [v.shape for v in b.weights] == [(4, 15), (5, 15), (15,)]
    s = gm.SimpleRNN(5, use_bias=False)
    s(np.zeros((2, 3, 4), np.float32))
    assert [v.shape for v in s.weights] == [(4, 5), (5, 5)]
    for layer in (gm.GRU(3, reset_after=False, go_backwards=True, zero_output_for_mask=True,
                         recurrent_activation="hard_sigmoid", name="g"),
                  gm.SimpleRNN(3, activation="relu", return_state=True, name="s")):
        cfg = layer.get_config()
        again = type(layer).from_config(cfg)
        assert again.get_config() == cfg
    assert gm.GRU(3, activation=None).activation == "linear"


BAD = [
    (lambda: gm.GRU(0, name="g"), ConfigError, "GRU 'g': units must be a positive int, got 0"),
    (lambda: gm.GRU(2, activation="softmax", name="g"), ConfigError,
     "GRU 'g': activation must be one of ['tanh', 'relu', 'sigmoid', 'linear'], got "
     "'softmax'"),
    (lambda: gm.GRU(2, recurrent_activation="relu", name="g"), ConfigError,
     "GRU 'g': recurrent_activation must be one of ['sigmoid', 'hard_sigmoid', 'tanh', "
     "'linear'], got 'relu'"),
    (lambda: gm.GRU(2, reset_after="yes", name="g"), ConfigError,
     "GRU 'g': reset_after must be True or False, got 'yes'"),
    (lambda: gm.GRU(2, use_cudnn="always", name="g"), ConfigError,
     "GRU 'g': use_cudnn must be 'auto', True or False, got 'always'"),
    (lambda: gm.GRU(2, dropout=1.0, name="g"), ConfigError,
     "GRU 'g': dropout must be a number in [0, 1) (the fraction of units dropped while "
     "training), got 1.0"),
    (lambda: gm.SimpleRNN(2, recurrent_dropout=-0.5, name="s"), ConfigError,
     "SimpleRNN 's': recurrent_dropout must be a number in [0, 1) (the fraction of units "
     "dropped while training), got -0.5"),
    (lambda: gm.GRU(2, dropout=0.2, seed=-1, name="g"), ConfigError,
     "GRU 'g': seed must be None or an int >= 0, got -1"),
    (lambda: gm.SimpleRNN(2, stateful=True, name="s")(gm.Input((3, 2))), ShapeError,
     "SimpleRNN 's': stateful=True needs a fixed batch size, got input shape (None, 3, 2); "
     "give the input one, e.g. Input(shape, batch_size=32) or Input(batch_shape=(32, ...))"),
    (lambda: gm.SimpleRNN(2.5, name="s"), ConfigError,
     "SimpleRNN 's': units must be a positive int, got 2.5"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments_name_the_layer_and_value(i):
    make, err, msg = BAD[i]
    with pytest.raises(err) as e:
        make()
    assert str(e.value) == msg


def test_bad_inputs_and_initial_states_change_nothing():
    x = gm.Input((5, 3), name="x")
    h = gm.Input((4,), name="h")
    g = gm.GRU(4, name="g")
    cases = [
        ((gm.Input((5,)),), {}, ShapeError,
         "GRU 'g': input must be (batch, timesteps, features) with known features, got "
         "shape (None, 5)"),
        ((x,), {"initial_state": [h, h]}, ConfigError,
         "GRU 'g': initial_state must be a tensor h or a list [h] of 1 tensor of shape "
         "(batch, 4), got 2 tensors"),
        ((x,), {"initial_state": gm.Input((3,))}, ShapeError,
         "GRU 'g': initial_state[0] (h) must have shape (None, 4) (batch, units), got "
         "(None, 3)"),
        ((x,), {"initial_state": gm.Input((4,), dtype="int32")}, ShapeError,
         "GRU 'g': initial_state[0] (h) must be a float tensor, got dtype int32"),
        ((x,), {"initial_state": np.zeros((2, 4), np.float32)}, ConfigError,
         "GRU 'g': initial_state[0] (h) must be a symbolic tensor (from Input or another "
         "layer) when the layer is called on a symbolic tensor, got ndarray"),
        (([x, h],), {}, ConfigError,
         "GRU 'g': call it on one (batch, timesteps, features) tensor and pass the state as "
         "initial_state=h, got 2 input tensors"),
    ]
    for args, kw, err, msg in cases:
        with pytest.raises(err) as e:
            g(*args, **kw)
        assert str(e.value) == msg
        assert not g.built and g.weights == []
    eager = gm.SimpleRNN(4, name="s")
    with pytest.raises(ShapeError) as e:
        eager(np.zeros((3, 5, 2), np.float32), initial_state=np.zeros((2, 4), np.float32))
    assert str(e.value) == ("SimpleRNN 's': initial_state[0] (h) must have shape (3, 4) "
                            "(batch, units), got (2, 4)")
    assert not eager.built


@pytest.mark.parametrize("cls", ["GRU", "SimpleRNN"])
def test_eager_initial_state_as_tensor_or_list(cls):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    h0 = rng.standard_normal((3, 4)).astype(np.float32)
    layer = getattr(gm, cls)(4, return_state=True)
    a = layer(x, initial_state=h0)
    b = layer(x, initial_state=[h0])
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    zero = layer(x)
    assert not np.allclose(a[1], zero[1])


@pytest.mark.parametrize("cls", ["GRU", "SimpleRNN"])
def test_fit_lowers_the_masked_loss_and_save_load_round_trip(cls, tmp_path):
    gm.set_random_seed(0)
    model = model_of(cls, return_sequences=True, **({"reset_after": False}
                                                     if cls == "GRU" else {}))
    model.compile(optimizer=gm.optimizers.Adam(0.05), loss="mse")
    y = np.random.default_rng(2).standard_normal((5, 6, 2)).astype(np.float32)
    first = model.evaluate(IDS, y, verbose=0)
    model.fit(IDS, y, epochs=20, batch_size=5, verbose=0)
    assert model.evaluate(IDS, y, verbose=0) < 0.8 * first
    path = tmp_path / "m.gm"
    model.save(path)
    again = gm.load_model(path)
    np.testing.assert_array_equal(again.predict(IDS), model.predict(IDS))
    assert again.get_layer("rnn").get_config() == model.get_layer("rnn").get_config()


def test_float64_model_gradients_match_finite_differences():
    model = model_of("GRU", dtype="float64", return_sequences=True)
    model.compile(optimizer="sgd", loss="mse")
    y = np.random.default_rng(3).standard_normal((5, 6, 2))
    loss, grads = model.loss_and_gradients(IDS, y)
    w = model.get_weights()
    names = [v.name for v in model.weights]
    i = names.index("rnn/bias")
    eps = 1e-6
    for idx in [(0, 0), (1, 5), (0, 11), (1, 9)]:
        plus = [a.copy() for a in w]
        minus = [a.copy() for a in w]
        plus[i][idx] += eps
        minus[i][idx] -= eps
        model.set_weights(plus)
        lp = model.loss_and_gradients(IDS, y)[0]
        model.set_weights(minus)
        lm = model.loss_and_gradients(IDS, y)[0]
        assert grads["rnn/bias"][idx] == pytest.approx((lp - lm) / (2 * eps), rel=1e-6,
                                                       abs=1e-9)
    model.set_weights(w)
    assert loss == pytest.approx(model.loss_and_gradients(IDS, y)[0])


def test_inspection_shows_the_layers_and_their_masks():
    ids = gm.Input((6,), dtype="int32", name="ids")
    e = gm.Embedding(V, 3, mask_zero=True, name="emb")(ids)
    seq, state = gm.GRU(4, return_sequences=True, return_state=True, name="enc")(e)
    model = gm.Model(ids, [gm.SimpleRNN(2, name="last")(seq), state])
    text = model.summary(return_string=True)
    assert "enc (GRU)" in text and "last (SimpleRNN)" in text
    assert "(None, 6, 4), (None, 4)" in text
    assert "created by 'emb' as ids != 0 -> used and passed by 'enc' -> consumed by 'last'" \
        in text
    assert "used and passed by 'enc'" in gm.inspect.explain_mask(model, "enc")
    from graphmask import viz
    dot = viz.to_dot(model)
    assert "enc" in dot and "last" in dot and "gru" in dot and "simple_rnn" in dot
    png = viz.draw_masks(model, IDS)
    assert png[:4] == b"\x89PNG"


def test_layer_and_weight_order_of_stacked_layers():
    ids = gm.Input((6,), dtype="int32")
    e = gm.Embedding(V, 3, mask_zero=True)(ids)
    h = gm.GRU(4, return_sequences=True)(e)
    h = gm.SimpleRNN(3, return_sequences=True, go_backwards=True)(h)
    model = gm.Model(ids, gm.Dense(2)(gm.GRU(2, reset_after=False)(h)))
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "Embedding", "GRU", "SimpleRNN", "GRU", "Dense"]
    assert [w.shape for w in model.get_weights()] == [
        (V, 3), (3, 12), (4, 12), (2, 12), (4, 3), (3, 3), (3,), (3, 6), (2, 6), (6,),
        (2, 2), (2,)]


@pytest.mark.parametrize("cls, kw", [("GRU", {"return_state": True}),
                                     ("SimpleRNN", {"go_backwards": True, "return_state": True}),
                                     ("GRU", {"return_sequences": True,
                                              "zero_output_for_mask": True})])
def test_testing_kit_checks_the_masked_steps_and_annotations(cls, kw):
    from graphmask.testing import check_mask_annotations, check_masked_steps

    model = model_of(cls, **kw)
    steps = check_masked_steps(model, IDS)
    name = f"layer 'rnn' ({cls})"
    want = ([f"{name} output at a masked timestep"] if kw.get("return_sequences") else
            [f"{name} final output of a sample with no kept step",
             f"{name} final state h of a sample with no kept step"])
    assert all(w in steps.checked for w in want) and not steps.skipped
    notes = check_mask_annotations(model, IDS)
    assert "rnn (gru): its mask port" in notes.checked or \
        "rnn (simple_rnn): its mask port" in notes.checked
    assert not notes.skipped


def test_threaded_kernels_repeat_bit_for_bit_and_concurrent_predicts_agree():
    """H = 64, B = 48: the multi-threaded float32 GRU kernels; two training steps from the
    same weights give the same weights bit for bit, and predicts run from two Python
    threads at once (each with its own workspace) give the single-threaded result."""
    from concurrent.futures import ThreadPoolExecutor

    from graphmask.kernels import gru as K

    rng = np.random.default_rng(5)
    ids = np.where(rng.random((48, 20)) < 0.7, rng.integers(1, V, (48, 20)), 0)
    x = gm.Input((20,), dtype="int32")
    e = gm.Embedding(V, 8, mask_zero=True)(x)
    model = gm.Model(x, gm.Dense(2)(gm.GRU(64, return_sequences=True)(e)))
    assert not K.gru_threads(int((ids != 0).sum(0).max()), 64).serial
    model.compile(optimizer="adam", loss="mse")
    y = rng.standard_normal((48, 20, 2)).astype(np.float32)
    start = model.get_weights()
    runs = []
    for _ in range(2):
        model.set_weights(start)
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(ids, y)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    want = model.predict(ids)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: model.predict(ids), range(4)))
    for g in got:
        np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("cls, rates", [("GRU", (0.5, 0.0)), ("GRU", (0.3, 0.4)),
                                        ("SimpleRNN", (0.5, 0.5))])
def test_dropout_acts_while_training_only_and_a_seed_repeats_it(cls, rates):
    kw = {"return_sequences": True, "dropout": rates[0], "recurrent_dropout": rates[1],
          "seed": 7}
    y = np.random.default_rng(4).standard_normal((5, 6, 2)).astype(np.float32)
    results = []
    for _ in range(2):
        gm.clear_session()
        model = model_of(cls, **kw)
        plain = model_of(cls, return_sequences=True)  # the same weights (same seed)
        np.testing.assert_array_equal(model.predict(IDS), plain.predict(IDS))
        model.compile(optimizer="sgd", loss="mse")
        plain.compile(optimizer="sgd", loss="mse")
        loss = model.train_on_batch(IDS, y)
        assert loss != pytest.approx(plain.train_on_batch(IDS, y), rel=1e-4)
        results.append((loss, model.get_weights()))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
    cfg = model.get_layer("rnn").get_config()
    assert (cfg["dropout"], cfg["recurrent_dropout"]) == rates
