"""Strict local emulators of the destination APIs, served over real HTTP on loopback.

An :class:`~reverse_etl.sandbox.base.Emulator` holds one API's behaviour and state;
:class:`~reverse_etl.sandbox.server.SandboxServer` serves it on 127.0.0.1. Profiles with
``sandbox: true`` start one in-process for the run; ``retl sandbox serve NAME`` runs one standalone.
"""

from __future__ import annotations

from reverse_etl.sandbox.base import Emulator, Faults, RateLimit
from reverse_etl.sandbox.http import Request, Response
from reverse_etl.sandbox.registry import emulator_class, emulator_names
from reverse_etl.sandbox.server import SandboxServer

__all__ = [
    "Emulator",
    "Faults",
    "RateLimit",
    "Request",
    "Response",
    "SandboxServer",
    "emulator_class",
    "emulator_names",
]
