"""Data for ``graphmask demo``: lines of Python source from the interpreter's own stdlib.

Nothing is downloaded: the standard library of the running Python (located with
``sysconfig``) is the corpus. Files and lines are chosen by a seeded generator, so the
same seed on the same Python gives the same data. Lines have very different lengths
(a ``)`` and a 79-character call sit side by side), so batches are padded with id 0
and the padding is masked.

Encoding: 0 is padding, 1 starts a line, 2 ends it, 3.. are the printable ASCII
characters. A line ``c1..cn`` becomes the input ``[start, c1..cn]`` and the target
``[c1..cn, end]``; both are padded to the same width with 0.
"""
from __future__ import annotations

import math
import os
import sysconfig
from dataclasses import dataclass

import numpy as np

PAD, START, END = 0, 1, 2
CHARS = "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = 3 + len(CHARS)
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


def encode(text: str) -> list[int]:
    """Ids of the characters of ``text`` (printable ASCII only)."""
    return [3 + CHARS.index(ch) for ch in text]


def decode(ids) -> str:
    """Text of ``ids``: stops at the end id, skips padding and the start id."""
    out = []
    for i in ids:
        i = int(i)
        if i == END:
            break
        if i >= 3:
            out.append(CHARS[i - 3])
    return "".join(out)


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def source_files(root: str | None = None) -> list[str]:
    """Every ``.py`` file of the standard library (tests and site-packages excluded), sorted."""
    root = root or stdlib_dir()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        found += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    if not found:
        raise FileNotFoundError(f"no Python files found under {root!r}")
    return sorted(found)


def _usable(line: str, max_len: int) -> bool:
    return 2 <= len(line) <= max_len and line.strip() != "" and all(
        " " <= ch <= "~" for ch in line)


def file_lines(path: str, max_len: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read().splitlines()
    except OSError:
        return []
    lines = (ln.rstrip().replace("\t", "    ") for ln in raw)
    return [ln for ln in lines if _usable(ln, max_len)]


@dataclass
class Corpus:
    """Encoded, padded train and validation sets (ids ``(N, max_len + 1)``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_lines: list[str]
    val_lines: list[str]
    files: list[str]

    @property
    def kept_fraction(self) -> float:
        """Share of positions that are real characters (not padding)."""
        return float((self.x_train != PAD).mean())


def _pad(lines: list[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(lines), width), np.int32)
    y = np.zeros((len(lines), width), np.int32)
    for i, line in enumerate(lines):
        ids = encode(line)
        x[i, :len(ids) + 1] = [START, *ids]
        y[i, :len(ids) + 1] = [*ids, END]
    return x, y


def load_corpus(n_lines: int, seed: int, max_len: int = 80, per_file: int = 40,
                val_fraction: float = 0.1, root: str | None = None) -> Corpus:
    """Pick about ``n_lines`` lines from seeded-random stdlib files.

    At most ``per_file`` lines come from one file (a seeded sample, kept in file order).
    The validation lines come from files that contribute nothing to training, so the
    held-out score measures generalisation to unseen modules.
    """
    r = np.random.default_rng(seed)
    files = source_files(root)
    n_val = max(1, round(n_lines * val_fraction))
    n_train = n_lines - n_val
    train, val, used = [], [], []
    for k in r.permutation(len(files)):
        if len(val) >= n_val and len(train) >= n_train:
            break
        lines = file_lines(files[k], max_len)
        if not lines:
            continue
        if len(lines) > per_file:
            pick = np.sort(r.choice(len(lines), per_file, replace=False))
            lines = [lines[i] for i in pick]
        target = train if len(train) < n_train else val
        room = (n_train if target is train else n_val) - len(target)
        target.extend(lines[:room])
        used.append(os.path.relpath(files[k], root or stdlib_dir()))
    if not train or not val:
        raise ValueError(f"not enough source lines under {root or stdlib_dir()!r}")
    xt, yt = _pad(train, max_len + 1)
    xv, yv = _pad(val, max_len + 1)
    return Corpus(xt, yt, xv, yv, train, val, used)


def unigram_perplexity(y_train: np.ndarray, y_val: np.ndarray) -> float:
    """Perplexity on the kept validation positions of character frequencies from training.

    Add-one smoothing over the ``VOCAB_SIZE - 1`` possible targets (padding never is one).
    """
    counts = np.bincount(y_train[y_train != PAD], minlength=VOCAB_SIZE).astype(np.float64)
    counts[1:] += 1.0
    counts[PAD] = 0.0
    p = counts / counts.sum()
    kept = y_val[y_val != PAD]
    return float(math.exp(-np.mean(np.log(p[kept]))))
