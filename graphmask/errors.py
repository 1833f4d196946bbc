"""graphmask's error hierarchy.

Every error a user can see is a :class:`GraphmaskError`. Each also subclasses the
built-in exception a Python user would expect (``ValueError``, ``TypeError``,
``IndexError``), so ``except ValueError`` keeps working. Messages name the layer, the
argument and the offending value or position.
"""
from __future__ import annotations


class GraphmaskError(Exception):
    """Base class of every error graphmask raises on purpose."""


class ShapeError(GraphmaskError, ValueError):
    """A shape or rank does not fit (at graph build, compile or run time)."""


class MaskError(GraphmaskError, ValueError):
    """A mask reaches a layer that cannot take one, or masks do not fit together."""


class InputError(GraphmaskError, ValueError):
    """Data handed to predict/evaluate/fit is malformed (dtype, NaN, empty batch...)."""


class InputTypeError(GraphmaskError, TypeError):
    """Data or an argument has the wrong type (strings, object arrays, ...)."""


class IdRangeError(GraphmaskError, IndexError):
    """An id fed to an Embedding is negative or >= input_dim."""


class ConfigError(GraphmaskError, ValueError):
    """A layer, model, loss or optimizer was configured with an invalid value."""


class GraphError(GraphmaskError, ValueError):
    """The graph itself is invalid: cycles, disconnected outputs, a pass run out of order."""


class FileFormatError(GraphmaskError, ValueError):
    """A model file is truncated, corrupted or not a graphmask file."""


class NumericalError(GraphmaskError, FloatingPointError):
    """Training produced a non-finite loss; the weights were left as before the step."""


class DistributedError(GraphmaskError, RuntimeError):
    """Distributed training lost its workers or their data more often than it may retry;
    the weights are those from before the step that failed."""
