"""Seeing the mask flow as text and data: ``summary`` (the table with a mask column) and
``explain`` (per-edge mask records, provenance chains, concrete masks, ``debugprint``).
Pictures are in ``graphmask.viz``.
"""
from graphmask.inspect.explain import (
    GroupCall,
    MaskEdge,
    MaskStatus,
    concrete_masks,
    debugprint,
    explain_mask,
    group_calls,
    mask_edges,
    mask_status,
)
from graphmask.inspect.summary import summary

__all__ = [
    "GroupCall",
    "MaskEdge",
    "MaskStatus",
    "concrete_masks",
    "debugprint",
    "explain_mask",
    "group_calls",
    "mask_edges",
    "mask_status",
    "summary",
]
