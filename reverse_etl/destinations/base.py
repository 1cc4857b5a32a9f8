"""What a destination is: its config model, how it checks a sync, and its writer.

A destination knows its API and nothing of the warehouse. The runner hands a writer chunks of
the delta (:class:`DeltaChunk`: Arrow columns or :class:`DeltaRow` objects); the writer answers
with a :class:`ChunkResult` saying, per row, whether the destination accepted it, rejected it
(with a reason) or could not be reached (failed).

Delivering a chunk has two halves. :meth:`Writer.stage` does the CPU work (payloads, local
validation) and no I/O, so a ``PIPELINED`` writer's next chunk is staged in a worker thread
while the current one is on the wire; :meth:`Writer.send` does the I/O.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, ClassVar

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from reverse_etl import secrets
from reverse_etl.config.profiles import Strict
from reverse_etl.config.syncs import SyncConfig
from reverse_etl.config.urls import check_url
from reverse_etl.delivery.client import Call, DeliveryClient, DeliverySettings
from reverse_etl.delivery.transport import Answer
from reverse_etl.destinations.chunk import ChunkResult, DeltaChunk, DeltaRow
from reverse_etl.errors import AuthError, is_transient

__all__ = [
    "ACTIONS", "BatchWriter", "ChunkResult", "DeltaChunk", "DeltaRow", "Destination", "DestinationConfig",
    "MemoryState", "Staged", "Writer", "WriterState", "dumps", "json_default",
]

# What a writer is asked to do with a row (the plan's mode already applied).
ACTIONS = ("upsert", "update", "insert", "remove", "join", "leave", "track")


def _version() -> str:
    from reverse_etl import __version__

    return __version__


class DestinationConfig(Strict):
    """Keys every destination accepts."""

    type: str
    sandbox: bool = False
    base_url: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=5, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=8, ge=1, le=256)
    checkpoint_rows: int | None = Field(
        default=None, ge=1,
        description="rows sent between snapshot commits (default: adaptive, from batch_size x max(concurrency, 32))",
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, "base_url")

    @model_validator(mode="after")
    def _clean_secrets(self) -> DestinationConfig:
        # A key read from a file often ends in a newline, a pasted one may carry a typographic
        # character: no HTTP header can carry either, and the error an HTTP client raises quotes
        # the value. Say which key, never its value.
        for name, value in self.__dict__.items():
            if isinstance(value, SecretStr) and any(not 32 <= ord(c) < 127 for c in value.get_secret_value()):
                raise ValueError(
                    f"{name} contains a control character (a trailing newline from a file?) or a non-ASCII "
                    "character, which no HTTP header can carry; fix the value"
                )
        return self

    def secret_values(self) -> tuple[str, ...]:
        return tuple(v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr))


def unreadable_success(response: Answer, *, empty_ok: bool = False) -> str | None:
    """Why a 2xx answer cannot count as delivery, or None: a body that is not JSON (a proxy's or
    captive portal's HTML page, a cut-off answer) says nothing about the rows, so they stay
    undelivered and are sent again by the next run."""
    body = response.content
    if not body:
        return None if empty_ok else f"answered {response.status_code} with an empty body; not known to be delivered"
    kind = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        orjson.loads(body)
        if not kind or "json" in kind:
            return None
    except orjson.JSONDecodeError:
        pass
    excerpt = secrets.redact(body[:100].decode("utf-8", "replace")).strip()
    return (f"answered {response.status_code} with a body that is not the API's JSON ({excerpt!r}); "
            "not known to be delivered, sent again next run")


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot send a value of type {type(value).__name__} as JSON")


def dumps(payload: Any) -> bytes:
    """JSON for request bodies: naive timestamps are UTC, decimals become numbers."""
    return orjson.dumps(payload, default=json_default, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)


class WriterState(ABC):
    """What a writer may keep and read in the state store; the runner sets :attr:`Writer.state`.

    ``get`` / ``put`` hold small values between runs under keys the writer chooses (ids learnt
    from an API, the content of a list an API can only replace whole). Keys are shared by every
    sync and destination of the state store, so a writer namespaces them. ``snapshot`` streams
    this sync's snapshot rows (what the destination is known to hold); read it in
    :meth:`Writer.prepare`, before the first chunk is acknowledged.
    """

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""

    @abstractmethod
    def put(self, key: str, value: str | None) -> None:
        """Store ``value`` under ``key`` (None forgets the key); committed at once."""

    @abstractmethod
    def snapshot(self, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """This sync's snapshot rows, as tuples of ``columns`` (key or value columns)."""


class MemoryState(WriterState):
    """A :class:`WriterState` in memory: the default outside a run (unit tests of writers)."""

    def __init__(self, values: dict[str, str] | None = None, snapshot_rows: Sequence[dict[str, Any]] = ()) -> None:
        self.values = dict(values or {})
        self.snapshot_rows = list(snapshot_rows)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value

    def snapshot(self, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        for row in self.snapshot_rows:
            yield tuple(row[c] for c in columns)


class Writer(ABC):
    """Writes one sync's delta in chunks. One instance per sync per run.

    Class constants say how the runner may drive it:

    ``COLUMNAR``   :meth:`stage` reads ``chunk.table`` (Arrow); the runner fetches Arrow, and
                   no Python object is made per value unless the writer asks for ``rows``.
    ``PIPELINED``  :meth:`stage` touches no I/O and no :attr:`state`, so the runner stages the
                   next chunk in a worker thread while this one is being sent.
    """

    COLUMNAR: ClassVar[bool] = False
    PIPELINED: ClassVar[bool] = False

    def __init__(self, destination: Destination, sync: SyncConfig, client: DeliveryClient) -> None:
        self.destination = destination
        self.sync = sync
        self.client = client
        self.state: WriterState = MemoryState()  # the runner replaces it with the state store's

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Called once before the first chunk (e.g. create a list if missing)."""

    def stage(self, chunk: DeltaChunk) -> Any:
        """The CPU half of delivering ``chunk`` (no I/O); what :meth:`send` then sends."""
        return chunk

    async def send(self, staged: Any) -> ChunkResult:
        """The I/O half: deliver what :meth:`stage` made; say per row what happened."""
        return await self.write(staged.rows)

    @abstractmethod
    async def write(self, rows: Sequence[DeltaRow]) -> ChunkResult:
        """Deliver ``rows``; say per row what happened. Raise AuthError to stop the run."""

    async def finish(self) -> None:  # noqa: B027 - optional hook
        """Called once after the last chunk."""


@dataclass(frozen=True)
class Staged:
    """A chunk made ready to send: its requests, and the rows rejected locally (never sent)."""

    calls: list[Call]
    rejected: dict[int, str]


class BatchWriter(Writer):
    """A writer whose requests are independent batches: build calls, send concurrently, read results."""

    PIPELINED = True

    @abstractmethod
    def build(self, rows: Sequence[DeltaRow]) -> tuple[list[Call], dict[int, str]]:
        """Requests for ``rows``, and rows rejected locally (seq -> reason) that are never sent."""

    def build_chunk(self, chunk: DeltaChunk) -> tuple[list[Call], dict[int, str]]:
        """Requests for a chunk; columnar writers override this to read ``chunk.table``."""
        return self.build(chunk.rows)

    @abstractmethod
    def outcome(self, call: Call, response: Answer) -> ChunkResult:
        """Per-row results of one call from its response (2xx or a non-retryable 4xx)."""

    def stage(self, chunk: DeltaChunk) -> Staged:
        calls, rejected = self.build_chunk(chunk)
        return Staged(calls, rejected)

    async def send(self, staged: Staged) -> ChunkResult:
        result = ChunkResult(rejected=dict(staged.rejected))
        calls = staged.calls
        outcomes = await asyncio.gather(*(self.send_call(call) for call in calls), return_exceptions=True)
        denied: AuthError | None = None
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, ChunkResult):
                result.merge(outcome)
            elif isinstance(outcome, Exception) and is_transient(outcome):
                reason = getattr(outcome, "message", str(outcome))
                result.failed.update({seq: reason for seq in call.seqs})
            elif isinstance(outcome, AuthError):  # refused unread; the run stops after this chunk
                denied = denied or outcome
                result.failed.update(dict.fromkeys(call.seqs, f"not sent: {outcome.message}"))
                result.refused.update(call.seqs)
            else:  # other terminal errors stop the run at once; so do bugs
                raise outcome
        if denied is not None:
            denied.partial = result  # what the chunk's other requests did is acknowledged first
            raise denied
        return result

    async def write(self, rows: Sequence[DeltaRow]) -> ChunkResult:
        return await self.send(self.stage(DeltaChunk.from_rows(rows)))

    async def send_call(self, call: Call) -> ChunkResult:
        """Send one call and read its per-row results; override to follow up (e.g. resend the valid rows)."""
        response = await self.client.send(call)
        result = self.outcome(call, response)
        if response.doubtful:  # an earlier attempt may have applied what this answer refuses
            result.doubt(call.seqs)
        return result


class Destination(ABC):
    """A destination type (Braze, ODP, Optimizely) configured under one profile key."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[DestinationConfig]]
    default_batch_size: ClassVar[int] = 100
    max_batch_size: ClassVar[int] = 1000
    default_requests_per_second: ClassVar[float | None] = None
    supported: ClassVar[dict[str, tuple[str, ...]]] = {}  # sync type -> modes
    sandbox_path: ClassVar[str] = ""  # appended to the emulator's URL to make base_url

    def __init__(self, name: str, config: DestinationConfig) -> None:
        self.name = name
        self.config = config
        secrets.register_model(config)  # masked wherever text leaves the process

    @property
    def batch_size(self) -> int:
        return self.config.batch_size or self.default_batch_size

    def check_sync(self, sync: SyncConfig) -> list[str]:
        """Problems with ``sync`` for this destination (empty if none). Override and extend."""
        problems: list[str] = []
        modes = self.supported.get(sync.type)
        if modes is None:
            problems.append(f"{self.type_name} does not support type {sync.type!r} syncs")
        elif sync.effective_mode not in modes:
            problems.append(f"{self.type_name} does not support mode {sync.mode!r} for {sync.type} syncs")
        if self.config.batch_size and self.config.batch_size > self.max_batch_size:
            problems.append(f"batch_size {self.config.batch_size} is over {self.type_name}'s limit of {self.max_batch_size}")
        return problems

    def extra_columns(self, sync: SyncConfig) -> list[str]:
        """Model columns a sync uses beyond primary key, identifiers and fields (e.g. event time)."""
        return []

    def identity(self, sync: SyncConfig) -> dict[str, Any]:
        """What makes this sync's destination this one; when it changes, the snapshot (what this
        destination is known to hold) no longer applies and starts afresh.

        Where the API is (the sandbox, or the resolved base URL) and the sync's target (list,
        audience, event, object, catalog). Credentials are left out on purpose: rotating a key
        must not resend everything. Destinations add what else names an account (a project id).
        """
        where = f"sandbox:{self.name}" if self.config.sandbox and not self.config.base_url else self.base_url()
        return {
            "type": self.type_name, "where": where, "audience": sync.audience, "event": sync.event,
            "object": sync.object, "catalog": sync.catalog,
        }

    def identity_key(self, sync: SyncConfig) -> str:
        import hashlib

        return hashlib.sha256(orjson.dumps(self.identity(sync), option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:16]

    def sandbox_options(self, syncs: Sequence[SyncConfig] = ()) -> dict[str, Any]:
        """Constructor options for this destination's emulator (e.g. the profile's project ids);
        ``syncs``: the project's syncs to this destination (what the emulator must know of)."""
        return {}

    def use_sandbox(self, root_url: str) -> str:
        """Point this destination at its emulator at ``root_url``; return the base_url to use.

        Destinations with more than one host (Optimizely's Event API) override this.
        """
        return root_url + self.sandbox_path

    @abstractmethod
    def base_url(self) -> str:
        """Where the API is, after ``base_url`` / instance / region."""

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every request."""

    @abstractmethod
    def writer(self, sync: SyncConfig, client: DeliveryClient) -> Writer:
        """A writer for one run of ``sync``."""

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Load what the first chunk will need (modules imported on first use, engines), on a
        helper thread while the sync is diffed (DuckDB's work leaves the interpreter free), so a
        fresh process does not pay for it between the diff and the first request."""

    def delivery_settings(self, base_url: str | None = None) -> DeliverySettings:
        return DeliverySettings(
            base_url=base_url or self.base_url(),
            headers={"User-Agent": f"reverse_etl/{_version()}"},
            auth_headers=self.auth_headers(),
            requests_per_second=self.config.requests_per_second or self.default_requests_per_second,
            max_retries=self.config.max_retries,
            timeout_s=self.config.timeout_s,
            concurrency=self.config.concurrency,
            secrets=self.config.secret_values(),
        )
