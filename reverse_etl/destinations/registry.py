"""Destination types by name, imported when first used."""

from __future__ import annotations

import importlib

from reverse_etl.destinations.base import Destination

_DESTINATIONS: dict[str, str] = {
    "braze": "reverse_etl.destinations.braze.destination:BrazeDestination",
    "odp": "reverse_etl.destinations.odp.destination:OdpDestination",
    "optimizely": "reverse_etl.destinations.optimizely.destination:OptimizelyDestination",
}


def destination_types() -> list[str]:
    return sorted(_DESTINATIONS)


def destination_class(type_name: str) -> type[Destination]:
    try:
        target = _DESTINATIONS[type_name]
    except KeyError:
        raise KeyError(f"unknown destination type {type_name!r}; known: {', '.join(destination_types())}") from None
    module_name, _, attr = target.partition(":")
    cls: type[Destination] = getattr(importlib.import_module(module_name), attr)
    return cls
