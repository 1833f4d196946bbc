"""Where the batches of fit / evaluate / predict come from, and how epochs walk them.

Three sources, as Keras 3's data adapters: arrays (checked once, cut into batches of
``batch_size``, reshuffled on every pass), a :class:`graphmask.utils.PyDataset` (batch
``i`` is ``dataset[i]``; the batch order is shuffled on every pass when ``shuffle``), and
a Python generator or iterator (batches in the order it yields them). A batch from a
dataset or a generator is checked when it arrives, so each may have its own sequence
length: the masks make padding each batch on its own correct.

:class:`Epochs` is Keras's ``EpochIterator``: with ``steps`` (``steps_per_epoch``,
``validation_steps``, ``steps``) an epoch takes that many batches and the next epoch goes
on where it stopped (a new pass starts when a finite source is used up); without it an
epoch is one pass. A source that runs out before ``steps`` batches ends the epoch early
with Keras's warning; a generator cannot restart, so then ``ran_out`` tells the loop to
stop.
"""
from __future__ import annotations

import collections.abc
import itertools
import types
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphmask.errors import ConfigError, GraphmaskError, InputError
from graphmask.training.data import batches
from graphmask.utils import PyDataset, rng

RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset "
           "or generator can generate at least `steps_per_epoch * epochs` batches.")


def is_batch_source(x) -> bool:
    """A PyDataset, a generator or an iterator (not an array or a list of arrays)."""
    return isinstance(x, (PyDataset, types.GeneratorType)) or (
        isinstance(x, collections.abc.Iterator) and not isinstance(x, np.ndarray))


def unpack(batch, who: str, index: int):
    """``(x, y, sample_weight)`` of one batch: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sw)``
    (a dict is the inputs by name)."""
    if isinstance(batch, (np.ndarray, dict)):
        return batch, None, None
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple) or len(batch) not in (1, 2, 3):
        raise InputError(f"{who}: batch {index} must be x, (x,), (x, y) or "
                         f"(x, y, sample_weight); got {type(batch).__name__}"
                         f"{' of length ' + str(len(batch)) if isinstance(batch, tuple) else ''}")
    return tuple(batch) + (None,) * (3 - len(batch))


class ArraySource:
    """Arrays already checked (``xs``, ``ys``, ``sws`` lists), served in batches."""

    prepared = True

    def __init__(self, xs, ys, sws, batch_size, shuffle: bool, who: str):
        self.xs, self.ys, self.sws, self.shuffle = xs, ys, sws, shuffle
        self.n = len(xs[0])
        self.slices = batches(self.n, batch_size, who)
        self.num_batches = len(self.slices)

    def iterator(self):
        order = rng().permutation(self.n) if self.shuffle else None
        for sl in self.slices:
            idx = sl if order is None else order[sl]
            yield ([a[idx] for a in self.xs],
                   None if self.ys is None else [None if a is None else a[idx] for a in self.ys],
                   None if self.sws is None else [None if a is None else a[idx]
                                                  for a in self.sws])

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


class DatasetSource:
    """A :class:`PyDataset`: batch ``i`` is ``dataset[i]``; ``workers > 1`` threads prepare
    up to ``max_queue_size`` batches ahead, in order."""

    prepared = False

    def __init__(self, dataset: PyDataset, shuffle: bool, who: str):
        self.dataset, self.shuffle, self.who = dataset, shuffle, who
        n = self.num_batches
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                              or n < 0):
            raise ConfigError(f"{who}: {type(dataset).__name__}.num_batches must be a "
                              f"non-negative int or None, got {n!r}")

    @property
    def num_batches(self):
        return self.dataset.num_batches

    def _get(self, i):
        try:
            return unpack(self.dataset[i], self.who, i)
        except GraphmaskError:
            raise
        except Exception as e:
            raise InputError(f"{self.who}: {type(self.dataset).__name__}[{i}] raised "
                             f"{type(e).__name__}: {e}") from e

    def iterator(self):
        n = self.num_batches
        if n is None:
            order = itertools.count()
        else:
            order = rng().permutation(n).tolist() if self.shuffle else range(n)
        workers = self.dataset.workers
        if workers <= 1:
            for i in order:
                yield self._get(i)
            return
        order = iter(order)
        ahead = max(self.dataset.max_queue_size, workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="graphmask-data") as pool:
            queue = collections.deque(pool.submit(self._get, i)
                                      for i in itertools.islice(order, ahead))
            while queue:
                batch = queue.popleft().result()
                nxt = next(order, None)
                if nxt is not None:
                    queue.append(pool.submit(self._get, nxt))
                yield batch

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


class GeneratorSource:
    """A generator or iterator: one pass is what it yields; it cannot restart."""

    prepared = False
    num_batches = None

    def __init__(self, gen, who: str):
        self.gen, self.who, self.count = gen, who, 0

    def iterator(self):
        for batch in self.gen:
            self.count += 1
            yield unpack(batch, self.who, self.count - 1)

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


def source_for(x, y, sample_weight, who: str, shuffle: bool, batch_size=None,
               class_weight=None):
    """The source of a PyDataset or generator ``x`` (y, sample_weight and batch_size must
    be None: the batches carry them), after Keras's checks."""
    kind = "a PyDataset" if isinstance(x, PyDataset) else "a generator"
    for arg, val in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size)):
        if val is not None:
            raise ConfigError(f"{who}: {arg} must be None when x is {kind} (its batches "
                              f"carry {'their size' if arg == 'batch_size' else arg}); got "
                              f"{arg}={_short(val)}")
    if isinstance(x, PyDataset):
        return DatasetSource(x, shuffle, who)
    if class_weight is not None:
        raise ConfigError(f"{who}: class_weight is not supported when x is a generator (as in "
                          f"Keras); yield (x, y, sample_weight) batches or use a PyDataset")
    if shuffle:
        warnings.warn(f"{who}: shuffle=True cannot shuffle a generator; its batches are used "
                      f"in the order it yields them (pass shuffle=False to silence this)",
                      stacklevel=4)
    return GeneratorSource(x, who)


def _short(value) -> str:
    return f"an array of shape {np.shape(value)}" if isinstance(value, np.ndarray) \
        else repr(value)[:60]


class Epochs:
    """Keras's EpochIterator over a source: ``epoch()`` yields ``(step, batch)``."""

    def __init__(self, source, steps, who: str, arg: str = "steps_per_epoch"):
        if steps is not None and (isinstance(steps, bool) or not isinstance(
                steps, (int, np.integer)) or steps <= 0):
            raise ConfigError(f"{who}: {arg} must be a positive int or None, got {steps!r}")
        self.source, self.steps, self.who = source, steps, who
        self._it, self._seen, self.ran_out, self._passes = None, 0, False, 0

    def restart(self) -> None:
        """Start a new pass at the next epoch (Keras resets its evaluation iterator before
        every ``evaluate``, so validation starts from the first batch each time; a
        generator cannot restart and goes on)."""
        self._it, self._seen = None, 0

    @property
    def num_batches(self):
        """Batches per epoch, None if unknown."""
        return self.steps or self.source.num_batches

    def epoch(self):
        src, n = self.source, self.source.num_batches
        src.on_epoch_begin()
        if self.steps is None or self._it is None:
            self._it, self._seen = src.iterator(), 0
        got = 0
        for step in range(self.steps) if self.steps else itertools.count():
            if n is not None and self._seen >= n:
                if self.steps:  # a finite source: the next epoch starts a new pass
                    warnings.warn(RAN_OUT, stacklevel=3)
                break
            try:
                batch = next(self._it)
            except StopIteration:
                self._it = None
                if self.steps:
                    warnings.warn(RAN_OUT, stacklevel=3)
                    self.ran_out = True
                break
            self._seen += 1
            got += 1
            yield step, batch
        if not got and n is None and not self.ran_out:
            if self._passes:  # a generator used up by an earlier epoch
                warnings.warn(RAN_OUT, stacklevel=3)
                self.ran_out = True
            else:
                raise InputError(f"{self.who}: the generator gave no batches")
        self._passes += 1
        if n is not None and self._seen >= n:
            self._it = None  # a finite source starts a new pass next epoch
        src.on_epoch_end()
