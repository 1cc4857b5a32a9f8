"""Emulators by destination type, imported only when asked for."""

from __future__ import annotations

import importlib

from reverse_etl.sandbox.base import Emulator

_EMULATORS: dict[str, str] = {
    "braze": "reverse_etl.sandbox.braze:BrazeEmulator",
    "odp": "reverse_etl.sandbox.odp:OdpEmulator",
    "optimizely": "reverse_etl.sandbox.optimizely:OptimizelyEmulator",
}


def emulator_names() -> list[str]:
    return sorted(_EMULATORS)


def emulator_class(name: str) -> type[Emulator]:
    """The emulator class for a destination type; KeyError names the known ones."""
    try:
        target = _EMULATORS[name]
    except KeyError:
        raise KeyError(f"no sandbox emulator for {name!r}; known: {', '.join(emulator_names())}") from None
    module_name, _, attr = target.partition(":")
    cls: type[Emulator] = getattr(importlib.import_module(module_name), attr)
    return cls
