"""Optimizers: Keras 3 update rules, clipping, state, config, validation."""
from __future__ import annotations

import numpy as np
import pytest

from graphmask import optimizers
from graphmask.errors import ConfigError, InputError

F32 = np.float32


# ---- plain NumPy transcription of Keras 3's update_step (float32, Keras's op order) ------


def np_step(kind, cfg, w, g, state, t):
    lr = F32(cfg.get("learning_rate", {"sgd": 0.01}.get(kind, 0.001)))
    if kind == "sgd":
        mom = cfg.get("momentum", 0.0)
        if mom == 0:
            return w - g * lr
        m = state.setdefault("m", np.zeros_like(w))
        m[...] = m * F32(mom) - g * lr
        if cfg.get("nesterov"):
            return w + (m * F32(mom) - g * lr)
        return w + m
    if kind == "adam":
        b1, b2 = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999)
        eps = F32(cfg.get("epsilon", 1e-7))
        m = state.setdefault("m", np.zeros_like(w))
        v = state.setdefault("v", np.zeros_like(w))
        b1p, b2p = F32(b1) ** F32(t), F32(b2) ** F32(t)
        alpha = lr * np.sqrt(F32(1) - b2p) / (F32(1) - b1p)
        m += (g - m) * F32(1 - b1)
        v += (g * g - v) * F32(1 - b2)
        if cfg.get("amsgrad"):
            vh = state.setdefault("vh", np.zeros_like(w))
            vh[...] = np.maximum(vh, v)
            return w - (m * alpha) / (np.sqrt(vh) + eps)
        return w - (m * alpha) / (np.sqrt(v) + eps)
    rho, mom = cfg.get("rho", 0.9), cfg.get("momentum", 0.0)
    eps = F32(cfg.get("epsilon", 1e-7))
    v = state.setdefault("v", np.zeros_like(w))
    v[...] = F32(rho) * v + F32(1 - rho) * (g * g)
    if cfg.get("centered"):
        a = state.setdefault("a", np.zeros_like(w))
        a[...] = F32(rho) * a + F32(1 - rho) * g
        den = v - a * a + eps
    else:
        den = v + eps
    inc = (lr * g) / np.sqrt(den)
    if mom > 0:
        mm = state.setdefault("mom", np.zeros_like(w))
        mm[...] = F32(mom) * mm + inc
        return w - mm
    return w - inc


CONFIGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("adam", {}), ("adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("adam", {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
    ("rmsprop", {}), ("rmsprop", {"centered": True}), ("rmsprop", {"momentum": 0.5}),
    ("rmsprop", {"momentum": 0.5, "centered": True, "rho": 0.8}),
]
CLS = {"sgd": optimizers.SGD, "adam": optimizers.Adam, "rmsprop": optimizers.RMSprop}


def _problem(seed=0, steps=6):
    rng = np.random.default_rng(seed)
    w0 = [rng.standard_normal((5, 3)).astype(F32), rng.standard_normal(3).astype(F32)]
    grads = [[rng.standard_normal(w.shape).astype(F32) for w in w0] for _ in range(steps)]
    for k in range(2, steps):
        grads[k][0][1] = 0  # an embedding row without gradient in later batches
    return w0, grads


@pytest.mark.parametrize("kind,cfg", CONFIGS)
def test_matches_numpy_transcription(kind, cfg):
    w0, grads = _problem()
    opt = CLS[kind](**cfg)
    ws = [w.copy() for w in w0]
    ids = [id(w) for w in ws]
    ref = [w.copy() for w in w0]
    states = [{} for _ in w0]
    for t, gs in enumerate(grads, start=1):
        opt.apply(ws, gs)
        ref = [np_step(kind, cfg, w, g, s, t) for w, g, s in zip(ref, gs, states)]
        for a, b in zip(ws, ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert [id(w) for w in ws] == ids and all(w.dtype == F32 for w in ws)
    assert opt.iterations == len(grads)


def test_sgd_step_is_exact():
    w = np.array([1.0, -2.0, 3.5], F32)
    g = np.array([0.25, 1.0, -4.0], F32)
    want = w - F32(0.1) * g
    optimizers.SGD(learning_rate=0.1).apply([w], [g])
    np.testing.assert_array_equal(w, want)


def test_zero_gradient_rows_still_move_under_adam():
    w0, grads = _problem(steps=4)
    ws = [w.copy() for w in w0]
    opt = optimizers.Adam(learning_rate=0.1)
    opt.apply(ws, grads[0])
    before = ws[0][1].copy()
    opt.apply(ws, [np.zeros_like(ws[0]), grads[1][1]])
    assert np.all(ws[0][1] != before)  # momentum from step 1 keeps moving the row
    opt.apply(ws, [None, grads[2][1]])  # None is a zero gradient
    assert opt.iterations == 3


@pytest.mark.parametrize("kind,cfg", [("adam", {"amsgrad": True}), ("sgd", {"momentum": 0.9}),
                                      ("rmsprop", {"centered": True, "momentum": 0.3})])
def test_state_save_restore_continues_identically(kind, cfg):
    w0, grads = _problem(steps=6)
    a = CLS[kind](**cfg)
    wa = [w.copy() for w in w0]
    for gs in grads[:3]:
        a.apply(wa, gs)
    state, config = a.get_state(), a.get_config()
    assert state[0] == 3 and state[0].dtype == np.int64
    assert len(state) == 1 + len(a.slot_names()) * 2
    b = CLS[kind].from_config(config)
    b.set_state(state)  # before the first apply: state is kept until build
    assert b.iterations == 3
    wb = [w.copy() for w in wa]
    for gs in grads[3:]:
        a.apply(wa, gs)
        b.apply(wb, gs)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    c = optimizers.get(optimizers.serialize(b))
    c.build(wb)
    c.set_state(b.get_state())
    assert c.iterations == 6
    with pytest.raises(ConfigError, match="state has"):
        c.set_state(state[:-1])


def test_clipping():
    g = np.array([3.0, 4.0], F32)
    w = np.zeros(2, F32)
    optimizers.SGD(learning_rate=1.0, clipnorm=1.0).apply([w], [g])
    np.testing.assert_allclose(w, [-0.6, -0.8], rtol=1e-6)
    w = np.zeros(2, F32)
    optimizers.SGD(learning_rate=1.0, clipvalue=3.5).apply([w], [g])
    np.testing.assert_array_equal(w, [-3.0, -3.5])
    ws = [np.zeros(2, F32), np.zeros(1, F32)]
    optimizers.SGD(learning_rate=1.0, global_clipnorm=2.5).apply(
        ws, [g, np.array([0.0], F32)])
    np.testing.assert_allclose(ws[0], [-1.5, -2.0], rtol=1e-6)
    w = np.zeros(2, F32)
    optimizers.SGD(learning_rate=1.0, global_clipnorm=10.0).apply([w], [g])
    np.testing.assert_allclose(w, -g, rtol=1e-6)
    with pytest.raises(ConfigError, match="only one of"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)


def test_get_config_validation():
    assert isinstance(optimizers.get("ADAM"), optimizers.Adam)
    assert isinstance(optimizers.get("RMSprop"), optimizers.RMSprop)
    opt = optimizers.SGD(momentum=0.5)
    assert optimizers.get(opt) is opt
    with pytest.raises(ConfigError, match="did you mean 'rmsprop'"):
        optimizers.get("rmsprob")
    cfg = optimizers.Adam(learning_rate=0.01, amsgrad=True).get_config()
    assert cfg["learning_rate"] == 0.01 and cfg["amsgrad"] is True and cfg["beta_1"] == 0.9
    assert optimizers.Adam.from_config(cfg).get_config() == cfg
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    with pytest.raises(ConfigError, match=r"learning_rate must be > 0, got -1"):
        opt.learning_rate = -1
    for bad in ({"learning_rate": 0}, {"beta_1": 1.0}, {"epsilon": -1.0},
                {"amsgrad": "yes"}, {"clipnorm": 0.0}, {"learning_rate": float("nan")}):
        name = next(iter(bad))
        with pytest.raises(ConfigError, match=name):
            optimizers.Adam(**bad)
    with pytest.raises(ConfigError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ConfigError, match="rho"):
        optimizers.RMSprop(rho=1.0)


def test_apply_errors():
    opt = optimizers.Adam()
    w = np.zeros((2, 3), F32)
    with pytest.raises(InputError, match="gradient 0 has shape"):
        opt.apply([w], [np.zeros(3, F32)])
    with pytest.raises(InputError, match="1 weights but 2 gradients"):
        opt.apply([w], [w, w])
    with pytest.raises(InputError, match="C-contiguous"):
        opt.apply([np.zeros((3, 2), F32).T], [np.zeros((2, 3), F32)])


def test_float64_weights():
    w = np.array([1.0, 2.0])
    optimizers.Adam(learning_rate=0.1).apply([w], [np.array([1.0, -1.0])])
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, [0.9, 2.1], rtol=1e-6)


# ---------------------------------------------------------------- optional Keras oracle


@pytest.mark.parametrize("kind,cfg", CONFIGS + [("adam", {"clipnorm": 0.5}),
                                                ("sgd", {"global_clipnorm": 0.5})])
def test_against_keras3(kind, cfg):
    from tests.conformance.oracle import import_keras
    keras = import_keras()  # Keras 3 on torch; the skip names what is missing
    w0, grads = _problem(seed=3)
    theirs = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
              "rmsprop": keras.optimizers.RMSprop}[kind](**cfg)
    vs = [keras.Variable(w) for w in w0]
    ours = CLS[kind](**cfg)
    ws = [w.copy() for w in w0]
    for gs in grads:
        theirs.apply([keras.ops.convert_to_tensor(g) for g in gs], vs)
        ours.apply(ws, gs)
    for w, v in zip(ws, vs):
        np.testing.assert_allclose(w, np.asarray(v), rtol=1e-6, atol=1e-7)


# ---- the Keras 3 optimizers added later: plain NumPy transcriptions (torch's op order) ----
def np_extra(kind, cfg, w, g, st, t):
    lr = F32(cfg.get("learning_rate", 0.001))
    if kind == "adagrad":
        acc = st.setdefault("acc", np.full_like(w, cfg.get("initial_accumulator_value", 0.1)))
        acc += g * g
        return w - (g * lr) / np.sqrt(acc + F32(1e-7))
    if kind == "adamax":
        b1, b2 = F32(0.9), F32(0.999)
        m, u = st.setdefault("m", np.zeros_like(w)), st.setdefault("u", np.zeros_like(w))
        m[...] = m * b1 + g * F32(1 - 0.9)
        u[...] = np.maximum(u * b2, np.abs(g))
        return w - (m * lr) / ((u + F32(1e-7)) * (F32(1) - b1 ** F32(t)))
    if kind == "adadelta":
        rho = F32(0.95)
        ag, adv = st.setdefault("ag", np.zeros_like(w)), st.setdefault("adv", np.zeros_like(w))
        ag[...] = ag * rho + (g * g) * F32(1 - 0.95)
        d = -((np.sqrt(adv + F32(1e-7)) * g) / np.sqrt(ag + F32(1e-7)))
        adv[...] = adv * rho + (d * d) * F32(1 - 0.95)
        return w + d * lr
    if kind == "lion":
        m = st.setdefault("m", np.zeros_like(w))
        c = m * F32(0.9) + g * F32(1 - 0.9)
        out = w - np.sign(c) * lr
        m[...] = m * F32(0.99) + g * F32(1 - 0.99)
        return out
    if kind == "adamw":
        w = w * (F32(1) - F32(0.004) * lr)
        return np_step("adam", cfg, w, g, st, t)
    # nadam
    b1, b2 = F32(0.9), F32(0.999)

    def u(s):
        return b1 * (F32(1) - F32(0.5) * F32(0.96) ** F32(s))
    prod = F32(np.prod([u(s) for s in range(1, t + 1)], dtype=F32))
    m, v = st.setdefault("m", np.zeros_like(w)), st.setdefault("v", np.zeros_like(w))
    m[...] = m * b1 + g * F32(1 - 0.9)
    v[...] = v * b2 + (g * g) * F32(1 - 0.999)
    m_hat = (m * u(t + 1)) / (F32(1) - prod * u(t + 1)) + (g * (F32(1) - u(t))) / (F32(1) - prod)
    v_hat = v / (F32(1) - b2 ** F32(t))
    return w - (m_hat * lr) / (np.sqrt(v_hat) + F32(1e-7))


EXTRA = {"adagrad": optimizers.Adagrad, "adamax": optimizers.Adamax,
         "adadelta": optimizers.Adadelta, "lion": optimizers.Lion, "adamw": optimizers.AdamW,
         "nadam": optimizers.Nadam}


@pytest.mark.parametrize("kind", sorted(EXTRA))
def test_new_optimizers_match_numpy_transcription(kind):
    w0, grads = _problem()
    cfg = {"learning_rate": 0.01}
    opt = EXTRA[kind](**cfg)
    ws, ref, states = [w.copy() for w in w0], [w.copy() for w in w0], [{} for _ in w0]
    for t, gs in enumerate(grads, start=1):
        opt.apply(ws, gs)
        ref = [np_extra(kind, cfg, w, g, s, t) for w, g, s in zip(ref, gs, states)]
        for a, b in zip(ws, ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"{kind} step {t}")


@pytest.mark.parametrize("kind", sorted(EXTRA))
def test_new_optimizers_state_and_config_round_trip(kind):
    w0, grads = _problem(steps=6)
    sched = optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    a = EXTRA[kind](learning_rate=sched, global_clipnorm=2.0)
    wa = [w.copy() for w in w0]
    for gs in grads[:3]:
        a.apply(wa, gs)
    assert a.learning_rate == pytest.approx(float(sched(3)))
    cfg = a.get_config()
    assert cfg["learning_rate"] == {"class_name": "ExponentialDecay",
                                    "config": sched.get_config()}
    b = optimizers.deserialize(optimizers.serialize(a))
    assert b.get_config() == cfg
    b.set_state(a.get_state())
    wb = [w.copy() for w in wa]
    for gs in grads[3:]:
        a.apply(wa, gs)
        b.apply(wb, gs)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)  # Nadam's momentum product follows iterations


def test_weight_decay_on_any_optimizer_and_adamw_defaults():
    w = np.array([1.0, -2.0], F32)
    optimizers.SGD(learning_rate=0.1, weight_decay=0.5).apply([w], [np.zeros(2, F32)])
    np.testing.assert_array_equal(w, np.array([1.0, -2.0], F32) * (F32(1) - F32(0.5) * F32(0.1)))
    assert optimizers.AdamW().get_config()["weight_decay"] == 0.004
    assert isinstance(optimizers.get("adamw"), optimizers.AdamW)
    with pytest.raises(ConfigError, match="AdamW: weight_decay must be a float, got None"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ConfigError, match="beta_1 must be > 0.0, got 0"):
        optimizers.Lion(beta_1=0)
    with pytest.raises(ConfigError, match="weight_decay must be >= 0, got -1"):
        optimizers.SGD(weight_decay=-1)


def test_schedules_values_and_errors():
    s = optimizers.schedules
    e = s.ExponentialDecay(1.0, decay_steps=2, decay_rate=0.5, staircase=True)
    assert [float(e(k)) for k in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    p = s.PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.25])
    assert [float(p(k)) for k in range(6)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    i = s.InverseTimeDecay(1.0, decay_steps=1, decay_rate=1.0)
    assert [float(i(k)) for k in range(3)] == [1.0, 0.5, F32(1 / 3)]
    c = s.CosineDecay(0.0, decay_steps=2, warmup_target=1.0, warmup_steps=2)
    # float32 cosine: cos(pi / 2) is not exactly 0
    np.testing.assert_allclose([c(k) for k in range(6)], [0.0, 0.5, 1.0, 0.5, 0.0, 0.0],
                               atol=1e-7)
    with pytest.raises(ConfigError, match="PiecewiseConstantDecay: values must have one more "
                                          "entry than boundaries; got 2 boundaries and 2"):
        s.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ConfigError, match="ExponentialDecay: decay_steps must be > 0, got 0"):
        s.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ConfigError, match="CosineDecay: warmup_target=0.1 needs warmup_steps"):
        s.CosineDecay(0.0, 5, warmup_target=0.1)
    opt = optimizers.SGD(learning_rate=e)
    with pytest.raises(ConfigError, match="ReduceLROnPlateau: the optimizer's learning rate "
                                          "is the schedule ExponentialDecay"):
        opt.learning_rate_settable("ReduceLROnPlateau")


def test_model_file_keeps_a_new_optimizer_its_schedule_and_state(tmp_path):
    import graphmask as gm
    x = gm.Input((3,))
    m = gm.Model(x, gm.Dense(2)(x))
    sched = optimizers.schedules.CosineDecay(0.01, 5, warmup_target=0.1, warmup_steps=2)
    m.compile(optimizers.Nadam(sched, weight_decay=0.01), "mse")
    xs, ys = np.linspace(0, 1, 12, dtype=F32).reshape(4, 3), np.zeros((4, 2), F32)
    m.fit(xs, ys, epochs=2, batch_size=2, verbose=0)
    m.save(tmp_path / "m.gmz")
    m2 = gm.load_model(tmp_path / "m.gmz")
    assert m2.optimizer.get_config() == m.optimizer.get_config()
    assert m2.optimizer.iterations == 4
    for model in (m, m2):
        model.fit(xs, ys, epochs=1, batch_size=2, verbose=0, shuffle=False)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
