"""The intermediate representation: :class:`Graph`, a networkx graph of op applications.

Everything after the front end (passes, schedule, runtime, inspection) reads and writes
this one structure; see ``docs/architecture.md``.
"""
from graphmask.ir.graph import Graph

__all__ = ["Graph"]
