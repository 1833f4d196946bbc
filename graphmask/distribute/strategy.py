"""``DaskStrategy``: data-parallel ``fit`` / ``evaluate`` / ``predict`` on Dask distributed.

The driver (the process that calls ``fit``) keeps the weights and the optimizer state.
Each step it scatters the weights once (each worker gets one copy), sends each of
``n_shards`` contiguous shards of the global batch as one task, gathers per shard the
loss numerators and counts, the metric sums and the gradients of the numerators, adds
them in shard order, divides by the global counts and applies the optimizer once. The fit loop, its
callbacks, History and progress bar are the local ones: while a distributed call runs,
the model's batch functions (``_train_step``, ``_evaluate_batch``, ``_predict_arrays``)
are these sharded ones.
"""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

import numpy as np

from graphmask.distribute import program as prog
from graphmask.distribute.worker import run_shard
from graphmask.errors import ConfigError, DistributedError, GraphmaskError, NumericalError
from graphmask.utils import rng

_BOUND = ("_train_step", "_evaluate_batch", "_predict_arrays")


def _positive_int(who, arg, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{who}: {arg} must be a positive int, got {value!r}")
    return int(value)


def shard_bounds(n: int, n_shards: int) -> list[slice]:
    """Contiguous, non-empty shards of ``range(n)``: sizes differ by at most one."""
    cuts = [n * i // n_shards for i in range(n_shards + 1)]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


class DaskStrategy:
    """Run ``fit``, ``evaluate`` and ``predict`` data-parallel on a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
        A connected client (``Client(LocalCluster(...))`` or ``Client("tcp://host:8786")``).
    n_shards : int, optional
        Shards per global batch; default: the number of workers when the strategy is made.
        Fixed for the strategy's life, so results do not depend on which or how many
        workers are alive: a shard of a lost worker is recomputed elsewhere.
    threads_per_shard : int
        numba threads a shard may use on its worker (default 1: one worker process per
        core, each single-threaded).
    retries : int
        How often a step is resent after its workers or their data were lost.

    Examples
    --------
    >>> strategy = gm.distribute.DaskStrategy(client)            # doctest: +SKIP
    >>> model.fit(x, y, batch_size=128, distribute=strategy)      # doctest: +SKIP
    """

    def __init__(self, client, n_shards: int | None = None, threads_per_shard: int = 1,
                 retries: int = 2):
        who = "DaskStrategy"
        for attr in ("scatter", "submit", "gather", "scheduler_info"):
            if not callable(getattr(client, attr, None)):
                raise ConfigError(f"{who}: client must be a distributed.Client, got "
                                  f"{type(client).__name__} (it has no {attr}())")
        self.client = client
        n = _positive_int(who, "n_shards", n_shards, allow_none=True)
        if n is None:
            n = len(client.scheduler_info().get("workers", {}))
            if n == 0:
                raise ConfigError(f"{who}: the cluster has no workers; start some or pass "
                                  f"n_shards=")
        self.n_shards = n
        self.threads_per_shard = _positive_int(who, "threads_per_shard", threads_per_shard)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{who}: retries must be a non-negative int, got {retries!r}")
        self.retries = retries
        self._session = None
        #: counters since the strategy was made: sharded runs, resent runs, worker errors
        #: rerun locally, wall seconds of the sharded runs and the seconds of their
        #: slowest shard's plan (the difference is the scheduling and transfer overhead)
        self.stats = {"steps": 0, "resent": 0, "local_reruns": 0, "seconds": 0.0,
                      "shard_seconds": 0.0}

    def __repr__(self) -> str:
        return (f"<DaskStrategy {self.n_shards} shards on "
                f"{getattr(self.client, 'scheduler', None) and self.client.scheduler.address}>")

    # ---- the public entry points (called by Model.fit/evaluate/predict) ----------------
    def fit(self, model, *args, **kwargs):
        """``model.fit(*args, **kwargs)`` with every step (and validation) sharded."""
        with self._bound(model):
            return model.fit(*args, **kwargs)

    def evaluate(self, model, *args, **kwargs):
        """``model.evaluate(*args, **kwargs)`` with every batch sharded."""
        with self._bound(model):
            return model.evaluate(*args, **kwargs)

    def predict(self, model, *args, **kwargs):
        """``model.predict(*args, **kwargs)`` with every batch sharded."""
        with self._bound(model):
            return model.predict(*args, **kwargs)

    # ---- binding -------------------------------------------------------------------------
    @contextmanager
    def _bound(self, model):
        if self._session is not None:
            raise ConfigError("DaskStrategy: already running a distributed call; one call "
                              "at a time per strategy")
        if any(k in model.__dict__ for k in _BOUND):
            raise ConfigError(f"DaskStrategy: model {model.name!r} is already in a "
                              f"distributed call")
        self._session = _Session(self, model)
        model._train_step = self._session.train_step
        model._evaluate_batch = self._session.evaluate_batch
        model._predict_arrays = self._session.predict_arrays
        try:
            yield
        finally:
            for k in _BOUND:
                model.__dict__.pop(k, None)
            self._session.close()
            self._session = None


class _Session:
    """One distributed call: programs and weights scattered to the workers, reused.

    The program (once per call) and the weights (once per step) are scattered to one
    worker; every other worker fetches them from there once, worker to worker, when its
    first shard needs them: no task carries them. (``scatter(broadcast=True)`` does the
    same copies through the scheduler's ``replicate``, which keeps retrying a worker that
    was killed after the copy began.)
    """

    def __init__(self, strategy: DaskStrategy, model):
        self.s, self.client, self.model = strategy, strategy.client, model
        self.programs, self.futures = {}, {}
        self.weights_version, self.weights_future = 0, None
        self.tag = uuid.uuid4().hex[:12]

    def close(self):
        self.programs.clear()
        self.futures.clear()
        self.weights_future = None

    # ---- what the workers hold ---------------------------------------------------------
    def _built(self, kind):
        if kind not in self.programs:
            self.programs[kind] = prog.build(self.model, kind)
        return self.programs[kind]

    def _program(self, kind):
        self._built(kind)
        if kind not in self.futures:
            [self.futures[kind]] = self.client.scatter([self.programs[kind]], hash=False)
        return self.programs[kind], self.futures[kind]

    def _weights(self):
        if self.weights_future is None:
            [self.weights_future] = self.client.scatter([self.model._variables()],
                                                        hash=False)
        return self.weights_future

    def _forget(self):
        """Drop what the workers hold: the next attempt scatters it again."""
        self.futures.clear()
        self.weights_future = None

    # ---- one sharded run ------------------------------------------------------------------
    def _map(self, kind, feeds: dict, n: int, seeds=None, local=None):
        """Run ``kind`` on the shards of a batch of ``n`` rows; results in shard order.

        A graphmask error from a worker is raised as the local path raises it: ``local``
        reruns the batch on the driver (no update) to give the identical message.
        """
        bounds = shard_bounds(n, self.s.n_shards)
        program = self._built(kind)
        rs = None
        if program.random:
            rs = int(rng().integers(2**62))
        attempt, t0 = 0, time.perf_counter()
        while True:
            futures = []
            try:
                _, pf = self._program(kind)
                wf = self._weights()
                futures = [self.client.submit(
                    run_shard, pf, wf, {k: v[sl] for k, v in feeds.items()}, seeds,
                    None if rs is None else rs + i, self.s.threads_per_shard, pure=False,
                    key=f"graphmask-{kind}-{self.tag}-{self.s.stats['steps']}-{attempt}-{i}")
                    for i, sl in enumerate(bounds)]
                out = self.client.gather(futures)
            except GraphmaskError as e:
                self._cancel(futures)
                self.s.stats["local_reruns"] += 1
                if local is not None:
                    try:
                        local()
                    except GraphmaskError as mine:
                        raise mine from None
                raise e from None
            except Exception as e:  # lost workers or data: resend, up to `retries` times
                self._cancel(futures)
                if attempt >= self.s.retries:
                    raise DistributedError(
                        f"DaskStrategy: the {kind} step failed {attempt + 1} times on the "
                        f"cluster ({type(e).__name__}: {e}); the weights are those from "
                        f"before this step") from e
                attempt += 1
                self.s.stats["resent"] += 1
                self._forget()
                self._wait_for_a_worker()
                continue
            self.s.stats["steps"] += 1
            self.s.stats["seconds"] += time.perf_counter() - t0
            self.s.stats["shard_seconds"] += max(r["seconds"] for r in out)
            return out

    def _wait_for_a_worker(self):
        try:  # a nanny restarts a lost worker within seconds
            self.client.wait_for_workers(1, timeout=60)
        except Exception:  # noqa: S110  (the next attempt reports what is wrong)
            pass

    def _cancel(self, futures):
        try:
            self.client.cancel(futures)
        except Exception:  # noqa: S110  (best effort: the step has failed already)
            pass

    # ---- the model's batch functions, sharded -------------------------------------------
    def train_step(self, xs, ys, sws):
        model = self.model
        program = self._built("train")
        feeds = model._feeds(xs, ys, sws)
        n = len(xs[0])
        k = program.n_losses
        if k > 1:
            counts = prog.global_counts(program, feeds, model._variables())
            seeds = [w / c if c else 0.0 for w, c in zip(program.loss_weights, counts)]
        else:
            seeds = list(program.loss_weights)
        results = self._map("train", feeds, n, seeds,
                            local=lambda: type(model)._gradients(model, xs, ys, sws))
        losses, pairs, counts = self._combine(program, results)
        by_name = _add_grads(program, results)
        if k == 1 and counts[0]:
            by_name = {nm: g / counts[0] for nm, g in by_name.items()}
        total = losses[0]
        if not np.isfinite(total):
            raise NumericalError(f"the loss is {total}; the weights were left as they were "
                                 f"before this step")
        for name, g in by_name.items():
            if not np.all(np.isfinite(g)):
                raise NumericalError(f"the gradient of {name!r} is not finite (loss {total}); "
                                     f"the weights were left as they were before this step")
        if not any(counts):
            return losses, pairs  # nothing kept anywhere: the step changes nothing
        params = [var.value for var in model.trainable_weights]
        grads = [by_name.get(var.name, np.zeros_like(var.value))
                 for var in model.trainable_weights]
        model.optimizer.apply(params, grads)
        self.weights_future = None  # the next step sends the new weights
        return losses, pairs

    def evaluate_batch(self, xs, ys, sws):
        model = self.model
        program = self._built("evaluate")
        results = self._map("evaluate", model._feeds(xs, ys, sws), len(xs[0]),
                            local=lambda: type(model)._evaluate_batch(model, xs, ys, sws))
        losses, pairs, _ = self._combine(program, results)
        return losses, pairs, []

    def predict_arrays(self, xs):
        model = self.model
        results = self._map("predict", model._feeds(xs), len(xs[0]),
                            local=lambda: type(model)._predict_arrays(model, xs))
        outs = [np.concatenate([r["outputs"][j] for r in results], axis=0)
                for j in range(len(results[0]["outputs"]))]
        return outs[0] if model._single_output else outs

    def _combine(self, program, results):
        """(losses as ``_split_results`` gives them, metric pairs, global counts)."""
        nums = [sum(r["losses"][k][0] for r in results) for k in range(program.n_losses)]
        counts = [sum(r["losses"][k][1] for r in results) for k in range(program.n_losses)]
        per_loss = [float(np.asarray(t / c if c else 0.0, dtype=dt))
                    for t, c, dt in zip(nums, counts, program.loss_dtypes)]
        total = float(sum(w * v for w, v in zip(program.loss_weights, per_loss)))
        per_output = per_loss if len(self.model.outputs) > 1 else []
        pairs = [(sum(r["metrics"][i][0] for r in results),
                  sum(r["metrics"][i][1] for r in results)) for i in range(program.n_metrics)]
        return [total, *per_output], pairs, counts


def _add_grads(program, results) -> dict:
    """Each weight's gradient, added over the shards in shard order (sparse rows too)."""
    out = {}
    for name in program.grad_names:
        acc = None
        for r in results:
            g = r["grads"][name]
            if isinstance(g, dict):  # an Embedding table's rows
                if acc is None:
                    acc = np.zeros(program.sparse[name], g["rows"].dtype)
                acc[g["ids"]] += g["rows"]
            else:
                acc = g.copy() if acc is None else acc + g
        out[name] = acc
    return out
