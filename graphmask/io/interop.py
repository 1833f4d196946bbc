"""``gm.from_keras(keras_model)`` and ``gm.to_keras(model)``: models across, in memory.

For notebooks where Keras 3 is importable. Both go through exactly the files of
:mod:`graphmask.io.keras_format` (written to a temporary folder and read back), so a
model converted in memory is the model a ``.keras`` file would give: same layers, same
weights, same predictions, same errors for what cannot cross.
"""
from __future__ import annotations

import os
import tempfile

from graphmask.errors import ConfigError


def _keras():
    try:
        import keras
    except ImportError:
        raise ImportError("from_keras/to_keras need Keras 3 installed (pip install keras "
                          "and a backend such as torch or jax); graphmask reads and writes "
                          ".keras files without it") from None
    if int(keras.__version__.split(".")[0]) < 3:
        raise ImportError(f"from_keras/to_keras need Keras 3, found Keras {keras.__version__}")
    return keras


def from_keras(keras_model, compile: bool = True):
    """The graphmask model of a Keras 3 ``Functional`` or ``Sequential`` model.

    Parameters
    ----------
    keras_model : keras.Model
    compile : bool
        Compile with the Keras model's loss, metrics and optimizer settings when it is
        compiled.

    Returns
    -------
    graphmask.Model
        Predicts as the Keras model does (same weights, masks derived the same way).

    Raises
    ------
    ConfigError
        ``keras_model`` is not a Keras model.
    FileFormatError
        It uses layers graphmask does not have (each one listed).
    """
    keras = _keras()
    if not isinstance(keras_model, keras.Model):
        raise ConfigError(f"from_keras: expected a keras.Model, got "
                          f"{type(keras_model).__name__}")
    from graphmask.io.keras_format import load_keras_model
    with tempfile.TemporaryDirectory(prefix="graphmask-") as folder:
        path = os.path.join(folder, "model.keras")
        keras_model.save(path)
        return load_keras_model(path, compile=compile)


def to_keras(model, compile: bool = True):
    """The Keras 3 model of a graphmask model (``keras.saving.load_model`` of the
    ``.keras`` file graphmask writes), with the same weights and predictions.

    Raises
    ------
    ConfigError
        A layer Keras cannot rebuild (``Lambda``, a custom layer), named.
    """
    keras = _keras()
    from graphmask.io.keras_format import save_keras_model
    with tempfile.TemporaryDirectory(prefix="graphmask-") as folder:
        path = os.path.join(folder, "model.keras")
        save_keras_model(model, path)
        return keras.saving.load_model(path, compile=compile)


__all__ = ["from_keras", "to_keras"]
