"""The one exception hierarchy of reverse_etl.

::

    RetlError                      every error this package raises on purpose
    ├── ConfigError                profiles, syncs, models: bad or missing configuration
    │   └── ConfigErrors           several ConfigError found in one load, reported together
    ├── ModelError                 a model's SQL failed (syntax, missing table, cycle)
    ├── DataError                  the model's data breaks a rule (null / duplicate primary key, type)
    ├── StateError                 the state store is corrupt or from a newer version
    │   └── StateBusyError         another process has it open (a sync is running)
    ├── WarehouseLockedError       the warehouse file is held by another writer (retry later)
    ├── WarehouseError             the warehouse cannot be reached, or its driver is missing
    ├── GuardError                 a guard refused the plan (pass --force to apply)
    ├── PlanMismatchError          a saved plan no longer matches the data
    ├── AlreadyRunningError        another process holds the sync's lock
    └── DeliveryError              a destination call failed
        ├── TransientError         worth retrying: 429, 5xx, timeouts, dropped connections
        └── TerminalError          retrying cannot help: 4xx, bad credentials, bad payload
            └── AuthError          401/403: every later call would fail too; the run stops

Whether an error is worth retrying is said by two mixins, :class:`Transient` and
:class:`Terminal` (dlt's pattern): the delivery layer retries ``isinstance(exc, Transient)``
and nothing else, so a new error class only has to pick its side.

Every error says what went wrong, where (file, sync, model, column, row) and how to fix it.
"""

from __future__ import annotations


class RetlError(Exception):
    """Root of every error raised on purpose by reverse_etl."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(RetlError):
    """A configuration problem in a profile, sync file or model file."""

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message, hint=hint)


class ConfigErrors(ConfigError):
    """Several configuration problems found in one pass, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        lines = [f"{len(errors)} configuration problem(s):"]
        lines += [f"  - {e.message}" + (f" ({e.hint})" if e.hint else "") for e in errors]
        RetlError.__init__(self, "\n".join(lines))
        self.file = None


class ModelError(RetlError):
    """A model could not be compiled or run."""


class DataError(RetlError):
    """The data a model produced breaks a rule the sync depends on."""


class StateError(RetlError):
    """The state store cannot be used as it is."""


class StateBusyError(StateError):
    """Another process has the state store open (a sync is running); try again later."""


class WarehouseLockedError(RetlError):
    """Another process holds the warehouse; reverse_etl never steals the lock."""


class WarehouseError(RetlError):
    """The warehouse cannot be reached, refused a statement, or its driver is not installed."""


class GuardError(RetlError):
    """A sync's guard refused to apply the plan."""


class PlanMismatchError(RetlError):
    """A saved plan no longer matches what the data says now."""


class AlreadyRunningError(RetlError):
    """Another process is running the same sync."""


class Transient:
    """Mixin: the same call may succeed if it is tried again later."""


class Terminal:
    """Mixin: the same call fails the same way however often it is tried."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the call that raised ``exc`` may help."""
    return isinstance(exc, Transient)


class DeliveryError(RetlError):
    """A call to a destination failed."""

    status_code: int | None = None

    def __init__(self, message: str, *, status_code: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code


class TransientError(Transient, DeliveryError):
    """A delivery failure that may succeed when retried."""


class TerminalError(Terminal, DeliveryError):
    """A delivery failure that will fail again the same way."""


class UnreachableError(TransientError):
    """The destination could not be connected to, through every retry: the run stops after the
    chunk (what was answered is acknowledged) instead of trying each remaining request."""


class AuthError(TerminalError):
    """401/403: the credentials are wrong or lack a permission; every later call would fail too."""

    # Set by a writer that sent a chunk when one of its requests met the 401/403: what the
    # chunk's other requests did (a ChunkResult), acknowledged before the run stops.
    partial: object | None = None
