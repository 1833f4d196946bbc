"""Accumulating losses and metrics over batches, as Keras's trackers do."""
from __future__ import annotations


class Tracker:
    """Keras's trackers over batches: each loss is the batch-size-weighted mean of the
    batch losses; each metric accumulates (total, count) and is total / count (0 if no
    position counted)."""

    def __init__(self):
        self.loss_sums, self.n, self.pairs = None, 0, None

    def add(self, losses, pairs, batch_size: int) -> None:
        sums = [v * batch_size for v in losses]
        self.loss_sums = sums if self.loss_sums is None else \
            [a + b for a, b in zip(self.loss_sums, sums)]
        self.pairs = list(pairs) if self.pairs is None else \
            [(t + p, c + q) for (t, c), (p, q) in zip(self.pairs, pairs)]
        self.n += batch_size

    def values(self) -> list[float]:
        return [v / self.n for v in self.loss_sums] + \
            [t / c if c else 0.0 for t, c in self.pairs]
