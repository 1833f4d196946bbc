"""Conformance suite against Keras 3 (an optional oracle, never a dependency).

The backend must be chosen before keras is first imported anywhere in the process.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
