"""graphmask/allocator.py: glibc's malloc thresholds, so that the large arrays of every
step reuse heap memory instead of faulting fresh pages in (each case in a fresh process,
since the thresholds belong to the process)."""
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's; other C libraries are left alone")

# Three arrays of 4 to 12 MB allocated, written and freed 20 times, in a second thread
# (its own malloc arena, as the side-by-side worker of graphmask.runtime) and in the main
# thread; prints the page faults of rounds 2-20 in each.
SCRIPT = r"""
import resource, threading
import numpy as np
import graphmask.runtime
from graphmask import allocator
def work(out):
    for i in range(20):
        if i == 1:
            r0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        a = np.ones(2_000_000, np.float32)
        b = np.ones(1_000_000, np.float32)
        c = np.ones(3_000_000, np.float32)
        del a, c, b
    out.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - r0)
out = []
t = threading.Thread(target=work, args=(out,))
t.start()
t.join()
work(out)
print(allocator.tune(), out[0], out[1])
"""


def _run(**env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("GRAPHMASK_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=full, timeout=300)
    assert out.returncode == 0, out.stderr
    tuned, thread, main = out.stdout.split()
    return tuned == "True", int(thread), int(main)


def test_arrays_of_every_step_reuse_memory_once_graphmask_is_imported():
    tuned, thread, main = _run()
    assert tuned
    # 19 rounds of 24 MB: about 110,000 pages would fault with glibc's defaults
    assert thread < 100 and main < 100


def test_glibc_defaults_fault_the_pages_in_again_every_round():
    # what the tuning is for: the same script with the thresholds left alone
    tuned, thread, main = _run(GRAPHMASK_MALLOC="system")
    assert not tuned
    assert thread > 10_000 and main > 10_000


def test_the_users_own_thresholds_are_kept():
    tuned, thread, _ = _run(MALLOC_TRIM_THRESHOLD_="131072")
    assert not tuned
    assert thread > 10_000  # the user's small trim threshold, not graphmask's
