"""``keras.models`` names: ``Model``, ``Sequential``, ``load_model``."""
from graphmask.model import Model
from graphmask.saving import load_model
from graphmask.sequential import Sequential

__all__ = ["Model", "Sequential", "load_model"]
