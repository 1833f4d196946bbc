"""One cache key for all kernels: a kernel's cached machine code is reused only while
*every* source file of ``graphmask/kernels`` is unchanged.

numba keys a cached function on its own source file. A kernel in ``gru.py`` that inlines
a helper from ``lstm.py`` or ``fastmath.py`` keeps its machine code when only the helper's
file changes (a ``git pull`` in a development checkout, an edit), and then runs the old
helper: results that silently disagree with the source. :func:`install` puts locators in
front of numba's own that add a digest of all kernel sources to the stamp numba compares,
for functions defined under this package only; everything else numba caches as before.
"""
from __future__ import annotations

import hashlib
import os

from numba.core import caching

KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def sources_digest(root: str = KERNELS_DIR) -> str:
    """SHA-1 of the relative paths and contents of every ``.py`` file under ``root``."""
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(f for f in filenames if f.endswith(".py")):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


_DIGEST = sources_digest()


def _in_kernels(py_file: str) -> bool:
    return os.path.abspath(py_file).startswith(KERNELS_DIR + os.sep)


def _kernel_locator(base):
    """``base`` (one of numba's file-backed locators), for kernel sources only, with the
    digest of all kernel sources in its stamp."""

    class Locator(base):
        def get_source_stamp(self):
            return (super().get_source_stamp(), _DIGEST)

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _in_kernels(py_file):
                return None
            return super().from_function(py_func, py_file)

    Locator.__name__ = Locator.__qualname__ = f"GraphmaskKernels{base.__name__}"
    return Locator


_BASES = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")


def install() -> None:
    """Put the kernel locators first in numba's list (once; numba tries them in order,
    as it does its own: a user's ``NUMBA_CACHE_DIR``, then next to the source, then the
    user-wide folder)."""
    classes = caching.CacheImpl._locator_classes
    if any(c.__name__.startswith("GraphmaskKernels") for c in classes):
        return
    ours = [_kernel_locator(getattr(caching, name)) for name in _BASES
            if hasattr(caching, name)]
    classes[:0] = ours
