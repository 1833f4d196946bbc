"""A 2-process Dask cluster for the whole session (started once, closed at the end).

Before the workers start, every kernel the tests use is compiled into numba's on-disk
cache, so the worker processes load it instead of compiling; ``worker_env()`` pins
numba, OpenMP and BLAS to one thread per worker.
"""
import os

import pytest

pytest.importorskip("distributed", reason="Dask distributed is not installed: "
                    "pip install -e '.[distributed]'")
pytest.importorskip("pytest_timeout", reason="pytest-timeout is not installed (every "
                    "distributed test has a timeout): pip install -e '.[test]'")


@pytest.fixture(scope="session")
def client():
    from distributed import Client, LocalCluster

    from graphmask.distribute import worker_env
    from tests.distributed.models import warm_up

    warm_up()
    before = dict(os.environ)  # a nanny sets OMP_NUM_THREADS etc. in *this* process too
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", env=worker_env())
    c = Client(cluster)
    _restore(before)
    c.run(__import__, "graphmask.distribute.worker")
    yield c
    c.close()
    cluster.close()
    _restore(before)


def _restore(env):
    """Undo what the nannies wrote into this process's environment before spawning."""
    for key in set(os.environ) - set(env):
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture
def strategy(client):
    from graphmask.distribute import DaskStrategy
    # two shards whatever the number of live workers (a test may have killed one)
    return DaskStrategy(client, n_shards=2)
