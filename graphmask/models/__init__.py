"""``keras.models`` names: ``Model``, ``Sequential``, ``load_model``."""
from graphmask.io.saving import load_model
from graphmask.models.functional import Model
from graphmask.models.sequential import Sequential

__all__ = ["Model", "Sequential", "load_model"]
