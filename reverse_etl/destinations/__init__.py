"""Destinations: one folder each (config, pure payload builders, writer)."""

from __future__ import annotations

from reverse_etl.destinations.base import (
    ChunkResult,
    DeltaRow,
    Destination,
    DestinationConfig,
    Writer,
)
from reverse_etl.destinations.registry import destination_class, destination_types

__all__ = [
    "ChunkResult",
    "DeltaRow",
    "Destination",
    "DestinationConfig",
    "Writer",
    "destination_class",
    "destination_types",
]
