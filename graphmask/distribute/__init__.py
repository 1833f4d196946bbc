"""Data-parallel training on Dask distributed (``pip install 'graphmask[distributed]'``).

``model.fit(x, y, batch_size=GLOBAL, distribute=DaskStrategy(client))`` splits every
global batch into contiguous shards run by Dask workers and adds their loss sums, kept
counts and gradients on the driver, so the result is one-process training's, also when
shards keep different numbers of positions. See docs/distributed.md.
"""
from graphmask.distribute.strategy import DaskStrategy, shard_bounds
from graphmask.distribute.worker import worker_env

__all__ = ["DaskStrategy", "shard_bounds", "worker_env"]
