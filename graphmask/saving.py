"""``keras.saving`` names: the public namespace ``graphmask.saving``.

Saving and loading models: one zip file, JSON and ``.npz`` inside, never pickle.
The implementation lives in ``graphmask/io/saving.py``.
"""
from graphmask.io.saving import (
    FORMAT,
    LAYER_CLASSES,
    VERSION,
    ModelFileExistsError,
    get_registered_name,
    load_model,
    load_weights,
    read_config,
    register_keras_serializable,
    register_serializable,
    save_model,
    save_weights,
)

__all__ = [
    "FORMAT",
    "LAYER_CLASSES",
    "ModelFileExistsError",
    "VERSION",
    "get_registered_name",
    "load_model",
    "load_weights",
    "read_config",
    "register_keras_serializable",
    "register_serializable",
    "save_model",
    "save_weights",
]
