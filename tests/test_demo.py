"""``graphmask demo``: the seed checks, and a tiny run that writes the model and picture."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import graphmask as gm
from graphmask.demo import data as D
from graphmask.demo import run as demo


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "graphmask.cli", *argv], check=False,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_seed_passes_and_prints_the_checks():
    r = _cli("demo", "seed")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "check: output at masked step 1 repeats step 0: OK" in out
    assert "check: output at masked step 3 repeats step 2: OK" in out
    assert "check: loss equals the mean over kept steps: OK" in out
    assert "all checks hold" in out
    assert "FAILED" not in out
    # the numbers are printed: evaluate() and the kept-steps mean agree
    ev = float(out.split("evaluate():")[1].split()[0])
    kept = float(out.split("kept steps 0-1:")[1].split()[0])
    assert ev == pytest.approx(kept, rel=1e-5)


def test_demo_seed_in_process_returns_zero(capsys):
    assert demo.run_seed() == 0
    assert "all checks hold" in capsys.readouterr().out


def _args(out, *extra):
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    return p.parse_args(["--tiny", "--out", str(out), "--verbose", "0", *extra])


def test_tiny_run_writes_model_and_picture_and_the_model_reloads(tmp_path, capsys):
    res = demo.train_lm(_args(tmp_path))
    text = capsys.readouterr().out
    assert "unigram baseline" in text and "held-out perplexity" in text
    assert "epoch 1: train loss" in text and "samples (temperature 0.7):" in text
    assert os.path.isfile(res["model_path"])
    assert f"mask-flow picture:  {res['picture']}" in text
    with open(res["picture"], encoding="utf-8") as f:
        svg = f.read()
    assert svg.startswith("<?xml") and "<svg" in svg and "lstm" in svg
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["val_perplexity"] == pytest.approx(res["val_perplexity"])
    loaded = gm.load_model(res["model_path"])
    x = res["corpus"].x_val
    np.testing.assert_array_equal(loaded.predict(x), res["model"].predict(x))
    assert loaded.optimizer.iterations == res["model"].optimizer.iterations


def test_a_broken_graphmask_module_fails_loudly(tmp_path, monkeypatch):
    """An ImportError of graphmask's own code is a bug to report, never a skipped step."""
    model = demo.build_model(D.VOCAB_SIZE, 4, 4, 0.01)
    monkeypatch.setitem(sys.modules, "graphmask.viz", None)  # importing it raises
    with pytest.raises(ImportError, match="graphmask.viz"):
        demo._render(model, str(tmp_path / "m.svg"))
    assert not (tmp_path / "m.svg").exists()


def test_settings_precedence():
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    s = demo.settings(p.parse_args(["--quick", "--units", "7"]))
    assert s["units"] == 7 and s["lines"] == demo.QUICK["lines"]
    assert demo.settings(p.parse_args([])) == demo.DEFAULTS
    assert p.parse_args(["seed"]).example == "seed"


def test_corpus_is_deterministic_padded_and_masked():
    a = D.load_corpus(200, seed=3, max_len=40)
    b = D.load_corpus(200, seed=3, max_len=40)
    assert a.train_lines == b.train_lines and a.val_lines == b.val_lines
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.train_lines != D.load_corpus(200, seed=4, max_len=40).train_lines
    assert not set(a.files[-1:]) & set(a.files[:-1])
    assert len(a.train_lines) + len(a.val_lines) == 200
    lens = (a.x_train != D.PAD).sum(axis=1)
    assert lens.min() < lens.max() // 2  # very different lengths: real padding
    for line, xi, yi in zip(a.train_lines[:20], a.x_train, a.y_train):
        n = len(line)
        assert xi[0] == D.START and D.decode(xi[1:]) == line
        assert D.decode(yi) == line and yi[n] == D.END and not yi[n + 1:].any()
    assert 1 < D.unigram_perplexity(a.y_train, a.y_val) < D.VOCAB_SIZE


def test_generate_is_seeded():
    m = demo.build_model(D.VOCAB_SIZE, 4, 4, 0.01)
    s1 = demo.generate(m, "def ", seed=1, max_chars=10)
    assert s1 == demo.generate(m, "def ", seed=1, max_chars=10)
    assert s1.startswith("def ") and len(s1) <= 14
    greedy = demo.generate(m, "x", seed=0, max_chars=5, temperature=0)
    assert greedy == demo.generate(m, "x", seed=9, max_chars=5, temperature=0)


def test_tiny_run_through_the_cli(tmp_path):
    r = _cli("demo", "--tiny", "--out", str(tmp_path), "--verbose", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "model.gmz").is_file()
    assert "Epoch 1/1" in r.stdout and "held-out perplexity" in r.stdout
