"""``keras.models`` names: ``Model``, ``Sequential``, ``load_model``, ``model_from_json``."""
from graphmask.io.saving import load_model
from graphmask.models.functional import Model
from graphmask.models.sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "model_from_json"]


def model_from_json(json_string: str, custom_objects=None):
    """A new, uncompiled model from ``Model.to_json()`` (or Keras 3's ``to_json``), with
    fresh weights, as ``keras.models.model_from_json``. ``custom_objects`` is accepted for
    Keras compatibility; custom layers come from graphmask's registry."""
    import json

    from graphmask.errors import FileFormatError
    from graphmask.io.keras_format import model_from_config
    try:
        config = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise FileFormatError(f"model_from_json: not a JSON model config ({e})") from None
    return model_from_config(config, "model_from_json")
