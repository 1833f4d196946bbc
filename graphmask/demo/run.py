"""``graphmask demo``: a masked character-level language model on Python source.

``graphmask demo`` trains ``Embedding(mask_zero=True) -> LSTM(return_sequences=True) ->
Dense(softmax)`` to predict the next character of lines of Python taken from the running
interpreter's standard library (no download), with masked sparse crossentropy and Adam.
Every epoch it prints loss and perplexity on the kept (non-padding) positions for the
training and the held-out lines, next to the perplexity of a unigram (character
frequency) model; at the end it generates a few lines and writes the mask-flow picture
and the trained model to ``--out``.

``graphmask demo seed`` runs the two masking examples the project started from and
prints the checks with their numbers; the exit code is 0 only when both hold.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

DEFAULTS = {"lines": 20000, "epochs": 5, "units": 256, "embed": 48, "batch_size": 32,
            "max_len": 80, "lr": 0.005}
QUICK = {"lines": 3000, "epochs": 3, "units": 128, "embed": 32}
TINY = {"lines": 240, "epochs": 1, "units": 16, "embed": 8, "max_len": 40, "batch_size": 24}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("example", nargs="?", default="lm", choices=("lm", "seed"),
                        help="'lm' (default): train the character language model; "
                             "'seed': run the two masking checks")
    parser.add_argument("--out", default="./graphmask-out",
                        help="folder for the model, the mask-flow picture and the history "
                             "(default ./graphmask-out)")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller model and data set (under a minute)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help="seed for data, weights, sampling")
    parser.add_argument("--lines", type=int, help=f"source lines used (default "
                                                  f"{DEFAULTS['lines']})")
    parser.add_argument("--epochs", type=int, help=f"default {DEFAULTS['epochs']}")
    parser.add_argument("--units", type=int, help=f"LSTM units (default {DEFAULTS['units']})")
    parser.add_argument("--embed", type=int, help=f"embedding width (default "
                                                  f"{DEFAULTS['embed']})")
    parser.add_argument("--batch-size", type=int, dest="batch_size",
                        help=f"default {DEFAULTS['batch_size']}")
    parser.add_argument("--max-len", type=int, dest="max_len",
                        help=f"longest line kept, in characters (default {DEFAULTS['max_len']})")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS['lr']})")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="fit's verbosity: 1 progress bar (default), 2 one line per epoch")


def settings(args) -> dict:
    """The run's settings: defaults, then --quick/--tiny, then explicit options."""
    s = dict(DEFAULTS)
    if args.quick:
        s.update(QUICK)
    if getattr(args, "tiny", False):
        s.update(TINY)
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    return s


def run(args) -> int:
    if args.example == "seed":
        return run_seed()
    return run_lm(args)


# ---- the language model ---------------------------------------------------------------
def build_model(vocab: int, embed: int, units: int, lr: float):
    import graphmask as gm
    ids = gm.Input(shape=(None,), dtype="int32", name="chars")
    x = gm.Embedding(vocab, embed, mask_zero=True, name="embedding")(ids)
    x = gm.LSTM(units, return_sequences=True, name="lstm")(x)
    probs = gm.Dense(vocab, activation="softmax", name="next_char")(x)
    model = gm.Model(ids, probs, name="char_lm")
    model.compile(optimizer=gm.optimizers.Adam(learning_rate=lr),
                  loss="sparse_categorical_crossentropy",
                  metrics=["sparse_categorical_crossentropy", "accuracy"])
    return model


def _perplexity_printer(baseline: float):
    import graphmask as gm

    class Perplexity(gm.Callback):
        """One line per epoch: loss and perplexity on kept positions, train and held out.

        The line is printed when the next epoch begins (or training ends), so it comes
        after fit's own progress output for the epoch.
        """

        pending = None

        def on_epoch_end(self, epoch, logs=None):
            tr = logs["sparse_categorical_crossentropy"]
            va = logs.get("val_sparse_categorical_crossentropy", float("nan"))
            self.pending = (f"epoch {epoch + 1}: train loss {tr:.4f} perplexity "
                            f"{math.exp(tr):.2f} | held-out loss {va:.4f} perplexity "
                            f"{math.exp(va):.2f} | unigram baseline {baseline:.2f}")

        def _flush(self):
            if self.pending:
                print(self.pending, flush=True)
                self.pending = None

        def on_epoch_begin(self, epoch, logs=None):
            self._flush()

        def on_train_end(self, logs=None):
            self._flush()

    return Perplexity()


def generate(model, prompt: str, seed: int, max_chars: int = 60,
             temperature: float = 0.7) -> str:
    """Continue ``prompt`` one character at a time, sampling with ``temperature``.

    ``temperature=0`` is greedy. Sampling uses its own generator seeded with ``seed``.
    """
    from graphmask.demo.data import END, START, decode, encode
    r = np.random.default_rng(seed)
    ids = [START, *encode(prompt)]
    for _ in range(max_chars):
        p = model.predict(np.array([ids], np.int32))[0, -1].astype(np.float64)
        p[0] = 0.0  # padding is never a character
        if temperature == 0:
            nxt = int(np.argmax(p))
        else:
            logp = np.log(np.maximum(p, 1e-12)) / temperature
            q = np.exp(logp - logp.max())
            nxt = int(r.choice(len(q), p=q / q.sum()))
        if nxt == END:
            break
        ids.append(nxt)
    return decode(ids[1:])


def _render(model, path: str) -> str:
    """Draw the mask-flow picture (matplotlib, a required dependency: nothing to skip)."""
    from graphmask.viz import render
    render(model, path)
    return f"mask-flow picture:  {path}"


def run_lm(args) -> int:
    train_lm(args)
    return 0


def train_lm(args) -> dict:
    """Run the demo; returns the model, corpus, history and output paths (for tests)."""
    import graphmask as gm
    from graphmask.demo import data as D
    s = settings(args)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    gm.set_random_seed(args.seed)
    t0 = time.perf_counter()
    corpus = D.load_corpus(s["lines"], args.seed, max_len=s["max_len"])
    kept = int((corpus.y_train != D.PAD).sum())
    print(f"data: {len(corpus.train_lines)} training lines and {len(corpus.val_lines)} held-out "
          f"lines from {len(corpus.files)} files of {D.stdlib_dir()}")
    lens = (corpus.x_train != D.PAD).sum(axis=1)
    print(f"      line lengths {lens.min() - 1}..{lens.max() - 1} characters, padded to "
          f"{corpus.x_train.shape[1]}: {kept} kept positions, "
          f"{100 * (1 - corpus.kept_fraction):.0f}% of the batch is masked padding")
    baseline = D.unigram_perplexity(corpus.y_train, corpus.y_val)
    print(f"unigram baseline (character frequencies): held-out perplexity {baseline:.2f}")
    model = build_model(D.VOCAB_SIZE, s["embed"], s["units"], s["lr"])
    print(f"model: Embedding({D.VOCAB_SIZE}, {s['embed']}, mask_zero=True) -> "
          f"LSTM({s['units']}, return_sequences=True) -> Dense({D.VOCAB_SIZE}, softmax); "
          f"{model.count_params()} parameters; Adam(learning_rate={s['lr']})")
    history = model.fit(corpus.x_train, corpus.y_train, batch_size=s["batch_size"],
                        epochs=s["epochs"], verbose=args.verbose,
                        validation_data=(corpus.x_val, corpus.y_val, None),
                        callbacks=[_perplexity_printer(baseline)])
    final = math.exp(history.history["val_sparse_categorical_crossentropy"][-1])
    verdict = "beats" if final < baseline else "does NOT beat"
    print(f"held-out perplexity {final:.2f} {verdict} the unigram baseline {baseline:.2f} "
          f"({baseline / final:.1f}x lower)")
    print("samples (temperature 0.7):")
    for k, prompt in enumerate(("def ", "import ", "    return ", "class ")):
        print(f"  {generate(model, prompt, seed=args.seed + k)}")
    model_path = os.path.join(out, "model.gmz")
    model.save(model_path)
    print(f"trained model:      {model_path}  (graphmask.load_model)")
    picture = os.path.join(out, "mask_flow.svg")
    print(_render(model, picture))
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({"settings": s, "seed": args.seed, "history": history.history,
                   "unigram_perplexity": baseline, "val_perplexity": final}, f, indent=1)
    print(f"done in {time.perf_counter() - t0:.0f} s; output in {out}")
    return {"model": model, "corpus": corpus, "history": history.history, "out": out,
            "model_path": model_path, "picture": picture, "baseline": baseline,
            "val_perplexity": final}


# ---- the seed checks --------------------------------------------------------------------
def run_seed() -> int:
    """The two examples of the Keras masking explanation, checked with numbers."""
    import graphmask as gm
    gm.set_random_seed(0)
    ok = True

    print("1) Embedding(5, 5, mask_zero=True) -> LSTM(3, return_sequences=True)")
    print("   input [[1, 0, 2, 0]]: 0 is padding, so steps 1 and 3 are masked")
    x = gm.Input(shape=(4,), dtype="int32")
    e = gm.Embedding(5, 5, mask_zero=True)(x)
    rnn = gm.LSTM(3, return_sequences=True)(e)
    out = gm.Model(inputs=x, outputs=rnn).predict(np.array([[1, 0, 2, 0]]))
    with np.printoptions(precision=6, suppress=True):
        for t in range(4):
            print(f"   step {t} ({'masked' if t in (1, 3) else 'kept  '}): {out[0, t]}")
    for masked, prev in ((1, 0), (3, 2)):
        same = bool(np.array_equal(out[0, masked], out[0, prev]))
        ok &= same
        print(f"   check: output at masked step {masked} repeats step {prev}: "
              f"{'OK' if same else 'FAILED'}")
    moved = not np.array_equal(out[0, 2], out[0, 0])
    ok &= moved
    print(f"   check: the kept step 2 has a new output: {'OK' if moved else 'FAILED'}")

    print("2) Embedding(5, 5, mask_zero=True) -> Dense(3), loss mse")
    print("   input [[1, 2, 0, 0]], target arange(12).reshape(1, 4, 3)")
    x = gm.Input(shape=(4,))
    d = gm.Dense(3)(gm.Embedding(5, 5, mask_zero=True)(x))
    m2 = gm.Model(inputs=x, outputs=d)
    m2.compile(loss="mse", optimizer="adam")
    ids = np.array([[1, 2, 0, 0]])
    y = np.arange(12).reshape(1, 4, 3)
    got = m2.evaluate(ids, y, verbose=0)
    emb, kernel, bias = m2.get_weights()
    pred = emb[ids[0]] @ kernel + bias
    kept = float(np.mean((y[0, :2] - pred[:2]) ** 2))
    every = float(np.mean((y[0] - pred) ** 2))
    print(f"   evaluate():                        {got:.6f}")
    print(f"   mean squared error, kept steps 0-1: {kept:.6f}")
    print(f"   mean squared error, all 4 steps:    {every:.6f} (padding included)")
    close = math.isclose(got, kept, rel_tol=1e-6)
    ok &= close
    print(f"   check: loss equals the mean over kept steps: {'OK' if close else 'FAILED'}")
    print("all checks hold" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1
