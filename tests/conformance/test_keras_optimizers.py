"""Optimizers, clipping, weight decay and learning-rate schedules against Keras 3: the
weights after N steps on the same gradients, and every schedule's values."""
from __future__ import annotations

import numpy as np

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402

STEPS = 6
F32 = np.float32

CASES = [
    ("AdamW", {"learning_rate": 0.01}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adagrad", {"learning_rate": 0.05, "initial_accumulator_value": 0.5, "epsilon": 1e-4}),
    ("Adamax", {"learning_rate": 0.01}),
    ("Adamax", {"learning_rate": 0.02, "beta_1": 0.8, "beta_2": 0.9}),
    ("Nadam", {"learning_rate": 0.01}),
    ("Nadam", {"learning_rate": 0.02, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-5}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adadelta", {"learning_rate": 0.5, "rho": 0.8}),
    ("Lion", {"learning_rate": 0.01}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9}),
    ("SGD", {"learning_rate": 0.1, "weight_decay": 0.05}),
    ("Adam", {"learning_rate": 0.01, "clipvalue": 0.3}),
    ("Nadam", {"learning_rate": 0.01, "global_clipnorm": 0.5}),
    ("Adagrad", {"learning_rate": 0.1, "clipnorm": 0.4}),
    ("RMSprop", {"learning_rate": 0.01, "weight_decay": 0.01, "global_clipnorm": 1.0}),
]


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal((5, 3)).astype(F32), rng.standard_normal(3).astype(F32)]
    grads = [[rng.standard_normal(w.shape).astype(F32) for w in w0] for _ in range(STEPS)]
    for k in range(2, STEPS):
        grads[k][0][1] = 0  # a row without gradient: momentum and decay still move it
    return w0, grads


def _keras_run(opt, w0, grads):
    ws = [keras.Variable(w.copy()) for w in w0]
    out = []
    for g in grads:
        opt.apply_gradients(zip([keras.ops.convert_to_tensor(a) for a in g], ws))
        out.append([np.asarray(w.numpy()) for w in ws])
    return out


def _ours_run(opt, w0, grads):
    ws = [w.copy() for w in w0]
    out = []
    for g in grads:
        opt.apply(ws, g)
        out.append([w.copy() for w in ws])
    return out


def _compare(ours, theirs, what, rtol=2e-5, atol=2e-6):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for k, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol,
                                       err_msg=f"{what}: weight {k} after step {step + 1}")


def test_weights_after_steps_match_keras():
    """Every case in one test (Keras's per-test session reset costs more than a case)."""
    w0, grads = _problem()
    for name, cfg in CASES:
        ours = _ours_run(getattr(gm.optimizers, name)(**cfg), w0, grads)
        theirs = _keras_run(getattr(keras.optimizers, name)(**cfg), w0, grads)
        # float32 update rules in Keras's operation order: a few ulps per step
        _compare(ours, theirs, f"{name}({cfg})")


SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}),
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5,
                          "staircase": True}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.2, "decay_steps": 2, "decay_rate": 0.7}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.2, "decay_steps": 2, "decay_rate": 0.7,
                          "staircase": True}),
    ("PiecewiseConstantDecay", {"boundaries": [2, 5], "values": [0.1, 0.05, 0.01]}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 7}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "alpha": 0.2}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 6, "warmup_target": 0.1,
                     "warmup_steps": 3}),
    ("CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": 4, "alpha": 0.1,
                     "warmup_target": 0.2, "warmup_steps": 2}),
]


def test_schedule_values_match_keras():
    for name, cfg in SCHEDULES:
        ours = getattr(gm.optimizers.schedules, name)(**cfg)
        theirs = getattr(keras.optimizers.schedules, name)(**cfg)
        for step in range(14):
            a, b = ours(step), float(np.asarray(theirs(step)))
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{name}({cfg}) step {step}")


def test_training_with_a_schedule_matches_keras():
    cfg = {"initial_learning_rate": 0.05, "decay_steps": 4, "warmup_target": 0.2,
           "warmup_steps": 2}
    w0, grads = _problem(1)
    for opt in ("SGD", "Adam", "Nadam"):
        ours = _ours_run(getattr(gm.optimizers, opt)(
            learning_rate=gm.optimizers.schedules.CosineDecay(**cfg)), w0, grads)
        theirs = _keras_run(getattr(keras.optimizers, opt)(
            learning_rate=keras.optimizers.schedules.CosineDecay(**cfg)), w0, grads)
        _compare(ours, theirs, f"{opt} with CosineDecay")


def test_model_fit_with_adamw_and_a_schedule_matches_keras():
    """End to end: a masked LSTM model trained by fit on both libraries."""
    from tests.conformance import twin as tw
    spec = [("embedding", {"input_dim": 9, "output_dim": 3, "mask_zero": True}),
            ("lstm", {"units": 4, "return_sequences": True}),
            ("dense", {"units": 3, "activation": "softmax"})]
    t = tw.build_twin(spec, (5,), "int32", seed=3)
    rng = np.random.default_rng(4)
    x = tw.ids_for(tw.mask_pattern("mixed", 12, 5, rng), 9, rng)
    y = rng.integers(0, 3, size=(12, 5)).astype(np.int32)
    sched = {"initial_learning_rate": 0.02, "decay_steps": 2, "decay_rate": 0.5}
    t.gm.compile(gm.optimizers.AdamW(gm.optimizers.schedules.ExponentialDecay(**sched),
                                     weight_decay=0.05), "sparse_categorical_crossentropy")
    t.keras.compile(keras.optimizers.AdamW(keras.optimizers.schedules.ExponentialDecay(**sched),
                                           weight_decay=0.05), "sparse_categorical_crossentropy")
    hg = t.gm.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    hk = t.keras.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hg.history["loss"], hk.history["loss"], rtol=1e-4)
    for a, b in zip(t.gm.get_weights(), tw.keras_weights(t.keras)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
