"""Start the emulators of ``sandbox: true`` destinations for the length of a run."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from reverse_etl.sandbox.registry import emulator_class
from reverse_etl.sandbox.server import SandboxServer


def sandbox_state_path(root: Path, destination_name: str) -> Path:
    """Where the emulator of a destination keeps its state between runs."""
    return root / ".retl" / "sandbox" / f"{destination_name}.json"


class Sandboxes(AbstractContextManager["Sandboxes"]):
    """Lazily started emulators, one per destination name, stopped (and saved) on exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: dict[str, SandboxServer] = {}

    def url(self, destination_name: str, destination_type: str, options: dict[str, Any] | None = None) -> str:
        server = self.servers.get(destination_name)
        if server is None:
            emulator = emulator_class(destination_type)(
                state_path=sandbox_state_path(self.root, destination_name), **(options or {})
            )
            server = SandboxServer(emulator).start()
            self.servers[destination_name] = server
        return server.url

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
