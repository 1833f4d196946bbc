"""The progress display while numba compiles: "compiling kernels, first run only" once,
and no time per step or time left computed from a step that compiled."""
import re
import sys
import threading

import numba
import numpy as np
import pytest
from numba.core import event

import graphmask as gm
from graphmask.training.callbacks import COMPILING, ProgressBar, StepTimes

X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(32, 2)
Y = (X @ np.array([[2.0], [-1.0]], np.float32)) + 0.5


def _model():
    x = gm.Input(shape=(2,))
    m = gm.Model(x, gm.Dense(1)(x))
    m.compile(optimizer=gm.optimizers.SGD(learning_rate=0.1), loss="mse")
    return m


def _compile_now(k):
    """Compile a function numba has never seen (a new dispatcher always compiles)."""
    return numba.njit(lambda v: v + k)(1.0)


class Clock:
    """A clock the steps move: the display reads it, the patched steps advance it."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _steps(monkeypatch, m, method, plan):
    """Patch ``m.<method>``: step ``i`` advances the clock by ``plan[i][0]`` seconds and
    compiles a new function first if ``plan[i][1]``."""
    clock, orig, i = Clock(), getattr(m, method), [0]
    monkeypatch.setattr(ProgressBar, "clock", staticmethod(clock))

    def step(*args, **kwargs):
        seconds, compiles = plan[min(i[0], len(plan) - 1)]
        if compiles:
            _compile_now(i[0])
        i[0] += 1
        clock.t += seconds
        return orig(*args, **kwargs)
    monkeypatch.setattr(m, method, step)


def _ours():
    return [lis for lis in event._registered["numba:compile"]
            if type(lis).__name__ == "CompileWatch"]


def test_log_says_it_once_and_the_time_per_step_leaves_compiling_steps_out(capsys,
                                                                          monkeypatch):
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)  # the model's own kernels are ready
    capsys.readouterr()
    _steps(monkeypatch, m, "_train_step", [(100.0, True), (100.0, True), (0.25, False),
                                           (0.35, False)])
    m.fit(X, Y, epochs=1, batch_size=8, verbose=2)
    out = capsys.readouterr().out
    # two steps compiled: the message once, when the first began; 0.6 s over two clean steps
    assert re.fullmatch(r"Epoch 1/1\ncompiling kernels, first run only\n"
                        r"4/4 - 201s - 300ms/step - loss: \S+\n", out), out
    assert _ours() == []  # the listener lived only while the steps ran


def test_warm_kernels_show_no_message(capsys):
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    capsys.readouterr()
    fresh = _model()  # a new model whose kernels this process has already compiled
    fresh.fit(X, Y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert COMPILING not in out
    assert re.fullmatch(r"(Epoch \d/2\n4/4 - \d+s - \d+(us|ms)/step - loss: \S+\n){2}", out)


def test_the_bar_shows_it_while_compiling_and_estimates_from_clean_steps(capsys,
                                                                        monkeypatch):
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    capsys.readouterr()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(ProgressBar, "refresh", 0)  # draw every step
    _steps(monkeypatch, m, "_train_step", [(3600.0, True), (2.0, False), (3.0, False),
                                           (2.0, False)])
    m.fit(X, Y, epochs=1, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    frames = [f.strip() for f in out.split("\r") if "|" in f]
    status = {}
    for f in frames:  # the frames drawn at each step count: "n/4 |bar| text"
        n, text = re.fullmatch(r"(\d)/4 \|[^|]*\|\s*(.*)", f).groups()
        status.setdefault(int(n), []).append(text)
    assert COMPILING in status[0]  # said while step 1 compiled, before it finished
    after = [re.sub(r"loss: \S+", "loss: L", s) for s in (status[n][-1] for n in (1, 2, 3))]
    assert after == [
        "loss: L",  # step 1 compiled: no estimate yet (not 3 hours), and the message is gone
        "ETA 4s - 2s/step - samples_per_s: 4 - loss: L",  # step 2: 2 s
        "ETA 2s - 2s/step - samples_per_s: 3 - loss: L",  # steps 2-3: 5 s / 2 steps
    ]
    assert re.search(r"4/4 - 3607s - 2s/step - loss: \S+\n$", out)
    assert sum(COMPILING in f for f in frames) == 1


@pytest.mark.parametrize("how", ["evaluate", "predict"])
def test_evaluate_and_predict_say_it_too(how, capsys, monkeypatch):
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    m.evaluate(X, Y, verbose=0)
    m.predict(X, verbose=0)
    method = "_eval_step" if how == "evaluate" else "_predict_arrays"
    _steps(monkeypatch, m, method, [(60.0, True), (0.5, False), (0.25, False),
                                    (0.75, False)])
    if how == "evaluate":
        m.evaluate(X, Y, batch_size=8, verbose=1)
    else:
        m.predict(X, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    tail = r" - loss: \S+\n" if how == "evaluate" else r"\n"
    # step 1 compiled: 1.5 s over the three others
    assert re.fullmatch(rf"compiling kernels, first run only\n4/4 - 62s - 500ms/step{tail}",
                        out), out


def test_validation_compiling_is_said_and_verbose_0_listens_to_nothing(capsys, monkeypatch):
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    seen = []
    orig_train, orig_eval = m._train_step, m._eval_step

    def train(*a):
        seen.append(len(_ours()))
        return orig_train(*a)

    def evaluate(*a, **k):
        _compile_now(7)
        return orig_eval(*a, **k)
    monkeypatch.setattr(m, "_train_step", train)
    monkeypatch.setattr(m, "_eval_step", evaluate)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0, validation_data=(X, Y))
    assert seen == [0] * 4 and capsys.readouterr().out == ""
    m.fit(X, Y, epochs=1, batch_size=8, verbose=2, validation_data=(X, Y))
    assert seen[4:] == [1] * 4  # one listener while each step ran under the display
    out = capsys.readouterr().out
    assert re.fullmatch(r"Epoch 1/1\ncompiling kernels, first run only\n"
                        r"4/4 - \d+s - \d+(us|ms)/step - loss: \S+ - val_loss: \S+\n", out)


def test_a_failing_step_removes_the_listener_and_user_threads_are_not_heard(capsys,
                                                                           monkeypatch):
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    orig = m._train_step

    def other_thread_compiles(*a):
        t = threading.Thread(target=_compile_now, args=(11,))
        t.start()
        t.join()
        return orig(*a)
    monkeypatch.setattr(m, "_train_step", other_thread_compiles)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=2)
    assert COMPILING not in capsys.readouterr().out

    def runtime_thread_compiles(*a):  # the runtime's side-by-side helper threads are heard
        t = threading.Thread(target=_compile_now, args=(12,), name="graphmask-side-0")
        t.start()
        t.join()
        return orig(*a)
    monkeypatch.setattr(m, "_train_step", runtime_thread_compiles)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=2)
    assert capsys.readouterr().out.count(COMPILING) == 1

    def fails(*a):
        raise RuntimeError("boom")
    monkeypatch.setattr(m, "_train_step", fails)
    with pytest.raises(RuntimeError, match="boom"):
        m.fit(X, Y, epochs=1, batch_size=8, verbose=2)
    assert _ours() == []


def test_the_background_compile_thread_is_not_announced(capsys, monkeypatch):
    """The parallel drivers compile on a background thread while steps run on the other
    tier (graphmask/kernels/launch.py): no step waits, so no message."""
    from graphmask.kernels.launch import BACKGROUND_THREAD
    m = _model()
    m.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    orig = m._train_step

    def background_compiles(*a):
        t = threading.Thread(target=_compile_now, args=(13,), name=BACKGROUND_THREAD)
        t.start()
        t.join()
        return orig(*a)
    monkeypatch.setattr(m, "_train_step", background_compiles)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=2)
    assert COMPILING not in capsys.readouterr().out


def test_step_times_leave_compiling_steps_and_keras_first_step_out():
    t = StepTimes()
    assert t.per_step() is None and t.samples_per_s() is None
    t.add(30.0, 6, compiled=True)
    assert t.per_step() is None  # only a compiling step so far: no estimate
    t.add(0.5, 6, compiled=False)
    assert t.per_step() == 0.5 and t.samples_per_s() == 12.0
    t.add(0.25, 6, compiled=False)
    assert t.per_step() == 0.375 and t.samples_per_s() == 16.0
    t.add(9.0, 4, compiled=True)
    t.add(0.75, 3, compiled=False)
    assert t.per_step() == 0.5 and t.samples_per_s() == 10.0
    warm = StepTimes()  # the pass's first step is clean (a warm cache): Keras's rule
    warm.add(0.5, 2, compiled=False)
    warm.add(7.0, 2, compiled=True)
    assert warm.per_step() == 0.5  # the only clean step
    warm.add(0.25, 2, compiled=False)
    assert warm.per_step() == 0.25 and warm.samples_per_s() == 8.0  # the first left out


COLD_FIT = """
import numpy as np
import graphmask as gm
x = gm.Input(shape=(2,))
m = gm.Model(x, gm.Dense(1)(x))
m.compile(optimizer="sgd", loss="mse")
X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(32, 2)
m.fit(X, X[:, :1], epochs=1, batch_size=8, verbose=2)
"""


@pytest.mark.slow
def test_a_cold_numba_cache_says_it_and_the_warm_cache_does_not(tmp_path):
    """The real thing: the model's own kernels compile in a fresh process with an empty
    cache (every kernel of the step), then load from that cache in the next process."""
    import os
    import subprocess
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    outs = [subprocess.run([sys.executable, "-c", COLD_FIT], env=env, capture_output=True,
                           text=True, timeout=900) for _ in range(2)]
    for r in outs:
        assert r.returncode == 0, r.stderr
    line = r"4/4 - \d+s - \d+(us|ms|s)/step - loss: \S+\n"
    assert re.fullmatch(rf"Epoch 1/1\ncompiling kernels, first run only\n{line}",
                        outs[0].stdout), outs[0].stdout
    assert re.fullmatch(rf"Epoch 1/1\n{line}", outs[1].stdout), outs[1].stdout
