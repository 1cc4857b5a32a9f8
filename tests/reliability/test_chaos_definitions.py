"""Chaos for Optimizely definitions: attributes, custom events and audiences through the REST API.

A records sync to ``object: attributes`` / ``custom_events`` / ``audiences`` sends one request
per row: POST to create, PATCH to update (or rename, or restore an archived object), DELETE to
archive a mirror removal. The emulator answers 20% of those requests with 5xx or 429, drops
connections before and after applying them, answers some slowly and refuses 2% of writes
unapplied. Syncs run until a run finds nothing left to send; then the definitions change (fields
change, some leave, some arrive - a few under the key of one that left, which restores the
archived object - and attributes and audiences are renamed), one run goes through the faults, the
data changes again, and the syncs converge.

The sharp edge is a POST the API applied whose answer was lost: sent again, it would create a
second audience (an audience name is not unique). A create is never resent after an attempt that
may have been applied; the next run finds what the lost attempt created, by key or name. After
each round the emulator must hold every model definition exactly once, with the model's values,
under the object it had before (a rename updates in place), every removed one archived, and
nothing else live.

The REST API allows about 2 requests/s; here client and emulator agree on far more, so the
test is about faults, not pacing (the limit itself is tested with the emulator).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import reverse_etl
from reverse_etl.sandbox import RateLimit, SandboxServer
from reverse_etl.sandbox.http import Request, Response
from reverse_etl.sandbox.optimizely import OptimizelyEmulator
from reverse_etl.sandbox.optimizely_rest import error_response
from tests.reliability.harness import NAMES, ROWS, SEED, Convergence, chaos_faults, converge, play

PROJECT = 1000
SIZE = max(40, ROWS // 20)  # definitions per kind: one request each, so far fewer than users
ROUNDS = 2
REST_RATE = RateLimit(requests=200, per_seconds=1.0)
CATEGORIES = ["add_to_cart", "save", "search", "share", "purchase", "convert", "sign_up", "subscribe", "other"]
PLANS = ["free", "pro", "team", "enterprise"]


@dataclass(frozen=True)
class Kind:
    """One definition type as the test models it: its sync, its key column and match field."""

    sync: str
    object: str  # the sync's ``object:``
    primary_key: str
    match: str  # the API's match field (``key``, an audience's ``name``), also the model column
    fields: tuple[str, ...]  # mapped fields besides the match field, model column = API field


ATTRIBUTES = Kind("opti_attributes", "attributes", "id", "key", ("name", "description"))
EVENTS = Kind("opti_custom_events", "custom_events", "key", "key", ("name", "category", "description"))
AUDIENCES = Kind("opti_audiences", "audiences", "id", "name", ("conditions", "description"))
KINDS = (ATTRIBUTES, EVENTS, AUDIENCES)


@dataclass
class Definitions:
    """What the warehouse says: per kind, primary key -> the definition's columns."""

    rows: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=lambda: {k.object: {} for k in KINDS})
    left: dict[str, list[str]] = field(default_factory=lambda: {k.object: [] for k in KINDS})  # match values freed
    next_id: int = 1
    next_name: int = 0

    @classmethod
    def initial(cls, n: int, rng: random.Random) -> Definitions:
        world = cls()
        for kind in KINDS:
            for _ in range(n):
                world.arrive(kind, rng)
        return world

    def fresh(self, kind: Kind) -> str:
        """A match value never used before (attribute keys allow only [a-zA-Z0-9_\\- .])."""
        self.next_name += 1
        if kind is AUDIENCES:
            return f"{NAMES[self.next_name % len(NAMES)]} audience {self.next_name:05d}"
        return f"{kind.object[:4]}_{self.next_name:05d}"

    def values(self, kind: Kind, rng: random.Random) -> dict[str, Any]:
        text = f"{rng.choice(NAMES)} {rng.randrange(10**6)}"
        description = None if rng.random() < 0.2 else f"about {rng.choice(NAMES)}"  # None clears it
        if kind is AUDIENCES:
            condition = ["and", {"type": "custom_attribute", "name": "plan", "value": rng.choice(PLANS)}]
            return {"conditions": orjson.dumps(condition).decode(), "description": description}
        extra = {"category": rng.choice(CATEGORIES)} if kind is EVENTS else {}
        return {"name": text, "description": description, **extra}

    def arrive(self, kind: Kind, rng: random.Random, *, reuse: bool = False) -> None:
        """A new definition; with ``reuse``, under the match value of one that left (the API
        keeps archived objects and their keys, so the archived one is restored)."""
        freed = self.left[kind.object]
        match = freed.pop(rng.randrange(len(freed))) if reuse and freed else self.fresh(kind)
        values = {kind.match: match, **self.values(kind, rng)}
        if kind.primary_key == kind.match:
            self.rows[kind.object][match] = values
        else:
            self.rows[kind.object][self.next_id] = {kind.primary_key: self.next_id, **values}
            self.next_id += 1

    def mutate(self, rng: random.Random) -> None:
        """A day of changes per kind: 10% change a field, 5% are renamed (where the primary key
        is not the match field), 5% leave, 5% arrive, half of those under a key that left."""
        for kind in KINDS:
            rows = self.rows[kind.object]
            keys = sorted(rows)
            share = max(2, len(keys) // 20)
            for pk in rng.sample(keys, max(2, len(keys) // 10)):
                field_name = rng.choice(kind.fields)
                rows[pk].update({field_name: self.values(kind, rng)[field_name]})
            if kind.primary_key != kind.match:
                for pk in rng.sample(keys, share):
                    rows[pk][kind.match] = self.fresh(kind)
            for pk in rng.sample(keys, share):
                self.left[kind.object].append(rows.pop(pk)[kind.match])
            for i in range(share):
                self.arrive(kind, rng, reuse=i % 2 == 0)

    def expected(self, kind: Kind) -> dict[str, dict[str, Any]]:
        """Match value -> the fields the API must hold (an empty description is ``""``)."""
        return {
            row[kind.match]: {f: row[f] if row[f] is not None else "" for f in kind.fields}
            for row in self.rows[kind.object].values()
        }

    def write(self, root: Path) -> None:
        (root / "data").mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            rows = [self.rows[kind.object][pk] for pk in sorted(self.rows[kind.object])]
            columns = dict.fromkeys([kind.primary_key, kind.match, *kind.fields])
            table = {c: [r[c] for r in rows] for c in columns}
            types = {c: pa.int64() if c == "id" else pa.string() for c in columns}
            pq.write_table(pa.table({c: pa.array(v, types[c]) for c, v in table.items()}),
                           root / "data" / f"{kind.object}.parquet")


def write_project(root: Path, url: str, *, checkpoint_rows: int = max(20, SIZE // 2)) -> None:
    dest = {"type": "optimizely", "base_url": url + "/v2", "events_url": url + "/v1/events", "token": "sandbox-key",
            "project_id": PROJECT, "account_id": 2000, "concurrency": 8, "timeout_s": 5,
            # Few retries: a request that keeps failing leaves its row undelivered for the next
            # run (a path worth proving) instead of backing off for seconds.
            "max_retries": 2,
            "checkpoint_rows": checkpoint_rows, "requests_per_second": REST_RATE.requests / 2}
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "syncs").mkdir(exist_ok=True)
    syncs = []
    for kind in KINDS:
        (root / "models" / f"{kind.object}.sql").write_text(
            f"SELECT * FROM read_parquet('data/{kind.object}.parquet')\n")
        syncs.append({"name": kind.sync, "model": kind.object, "destination": "optimizely", "type": "records",
                      "mode": "mirror", "object": kind.object, "primary_key": kind.primary_key,
                      "identifiers": {kind.match: kind.match}, "fields": {f: f for f in kind.fields}})
    (root / "syncs" / "definitions.yml").write_text(yaml.safe_dump({"syncs": syncs}, sort_keys=False, allow_unicode=True))
    dev = {"warehouse": {"type": "duckdb", "path": ".retl/warehouse.duckdb"}, "destinations": {"optimizely": dest}}
    (root / "profiles.yml").write_text(yaml.safe_dump({"target": "dev", "targets": {"dev": dev}}, sort_keys=False))


def objects(emulator: OptimizelyEmulator, kind: Kind) -> list[dict[str, Any]]:
    return {"attributes": emulator.attributes, "custom_events": emulator.custom_events,
            "audiences": emulator.audiences}[kind.object](PROJECT)


def check(emulator: OptimizelyEmulator, world: Definitions, kind: Kind, ever: set[str]) -> tuple[dict[str, int], int]:
    """The emulator holds exactly the model's definitions of ``kind``: return match value -> id,
    and how many extra objects resent POSTs created (archived)."""
    objs = objects(emulator, kind)
    live_twins = {m: n for m, n in Counter(o[kind.match] for o in objs if not o["archived"]).items() if n > 1}
    assert not live_twins, f"{kind.object}: live twins (a lost reply, then a blind retry?): {live_twins}"
    extra = sum(n - 1 for n in Counter(o[kind.match] for o in objs).values())
    live = {o[kind.match]: o for o in objs if not o["archived"]}
    expected = world.expected(kind)
    assert set(live) >= set(expected), f"{kind.object} lost: {sorted(set(expected) - set(live))[:5]}"
    assert set(live) <= set(expected), f"{kind.object} live but not in the model: {sorted(set(live) - set(expected))[:5]}"
    for match, want in expected.items():
        held = {f: live[match][f] for f in kind.fields}
        assert held == want, f"{kind.object} {match!r}: the API holds {held}, the model says {want}"
    archived = {o[kind.match] for o in objs if o["archived"]}
    assert archived <= ever, f"{kind.object} archived but never in the model: {sorted(archived - ever)[:5]}"
    return {m: o["id"] for m, o in live.items()}, extra


def kind_path(kind: Kind) -> str:
    return f"/v2/projects/{PROJECT}/custom_events" if kind is EVENTS else f"/v2/{kind.object}"


def ids_by_key(world: Definitions, kind: Kind, ids: dict[str, int]) -> dict[Any, int]:
    return {pk: ids[row[kind.match]] for pk, row in world.rows[kind.object].items()}


@pytest.mark.chaos
@pytest.mark.timeout(900 if ROWS >= 4000 else 300)
def test_optimizely_definitions_converge_exactly_without_twins(tmp_path: Path, record_property: Any) -> None:
    rng = random.Random(SEED + 3)
    world = Definitions.initial(SIZE, rng)
    emulator = OptimizelyEmulator(faults=chaos_faults(SEED + 3), rest_rate_limit=REST_RATE)
    ever: dict[str, set[str]] = {k.object: set() for k in KINDS}

    def seen(w: Definitions) -> None:
        for kind in KINDS:
            ever[kind.object].update(row[kind.match] for row in w.rows[kind.object].values())

    rounds: list[Convergence] = []
    before: dict[str, dict[Any, int]] = {}
    twins: dict[str, int] = {}
    with SandboxServer(emulator) as server:
        write_project(tmp_path, server.url)
        for round_no in range(ROUNDS):
            rounds.append(play(tmp_path, world, rng, round_no, seen))
            for kind in KINDS:
                ids, extra = check(emulator, world, kind, ever[kind.object])
                lost_posts = sum(1 for req, _ in emulator.lost_replies if (req.method, req.path) == ("POST", kind_path(kind)))
                # A create is not resent after a lost answer: no object exists twice, live or archived.
                assert extra == 0, (kind.object, extra, lost_posts)
                twins[kind.object] = extra
                now = ids_by_key(world, kind, ids)
                # a definition still in the model is the same object: renamed, changed or
                # restored in place, never replaced by a new one
                moved = {pk: (before[kind.object][pk], i) for pk, i in now.items()
                         if pk in before.get(kind.object, {}) and before[kind.object][pk] != i}
                assert not moved, f"{kind.object}: definitions moved to new objects (old id, new id): {moved}"
                before[kind.object] = now
    failed = [status for _, path, status in emulator.request_log if path.startswith("/v2/") and status in (0, 429, 503)]
    assert failed, "no REST request failed: the faults did not bite"
    writes = {"POST", "PATCH", "DELETE"}
    lost_writes = Counter(req.method for req, _ in emulator.lost_replies if req.method in writes)
    assert lost_writes["POST"], "no POST lost its answer: the sharp edge was not exercised"
    facts = {"definitions": SIZE, "seed": SEED, "runs": sum(c.runs for c in rounds),
             "rejected": sum(c.total("rejected") for c in rounds), "undelivered": sum(c.total("failed") for c in rounds),
             "lost_replies": sum(lost_writes.values()), "lost_posts": lost_writes["POST"],
             "archived_audience_twins": twins["audiences"]}
    for key, value in facts.items():
        record_property(f"optimizely_definitions.{key}", value)
    print(f"\noptimizely_definitions: {facts}")


# --- the sharp edge, deterministically ---------------------------------------------------------
class LosesCreates(OptimizelyEmulator):
    """Applies the first ``lost_creates`` POSTs to each collection and drops their answers; then,
    if asked, refuses the first ``refuse_archives`` DELETEs (400) unapplied."""

    def __init__(self, *, lost_creates: int = 1, refuse_archives: int = 0) -> None:
        super().__init__()
        self.lost: Counter[str] = Counter()
        self.lost_creates = lost_creates
        self.refuse_archives = refuse_archives

    def dispatch(self, request: Request) -> Response | None:
        if request.method == "POST" and self.lost[request.path] < self.lost_creates:
            self.lost[request.path] += 1
            with self.lock:
                self.lost_replies.append((request, self.handle(request)))
                self.request_log.append((request.method, request.path, 0))
            return None
        if request.method == "DELETE" and self.refuse_archives:
            self.refuse_archives -= 1
            return self._log(request, error_response(400, "BAD_REQUEST", "refused (injected)"))
        return super().dispatch(request)


def test_a_create_applied_whose_answer_was_lost_leaves_one_object(tmp_path: Path) -> None:
    """The POST is applied and its answer lost: it is not sent again (an audience would exist
    twice); the row stays unacknowledged and the next run finds the object and updates it."""
    world = Definitions.initial(1, random.Random(SEED))
    emulator = LosesCreates(lost_creates=1)
    with SandboxServer(emulator) as server:
        write_project(tmp_path, server.url)
        world.write(tmp_path)
        first = reverse_etl.sync(tmp_path)
        assert {r.sync: (r.status, r.sent, r.failed) for r in first.runs} == {
            k.sync: ("partial", 0, 1) for k in KINDS}  # applied, but not known to be
        converge(tmp_path)
    assert len(emulator.lost_replies) == 3  # one create per kind, applied, its answer lost
    posts = Counter(path for method, path, _ in emulator.request_log if method == "POST")
    assert all(n == 1 for n in posts.values()), f"a create was sent again: {posts}"
    for kind in KINDS:
        [row] = world.rows[kind.object].values()
        assert [(o[kind.match], o["archived"]) for o in objects(emulator, kind)] == [(row[kind.match], False)]
        check(emulator, world, kind, {row[kind.match]})


def test_a_key_taken_over_while_its_old_row_is_still_to_be_archived_stays_live(tmp_path: Path) -> None:
    """An attribute leaves the model and a new row takes its key (one object: the key is unique)
    while the archive of the old row is refused: the old row's removal, sent again by the next
    run, must not archive the object the new row now holds."""
    world = Definitions.initial(1, random.Random(SEED))
    emulator = LosesCreates(lost_creates=0)
    with SandboxServer(emulator) as server:
        write_project(tmp_path, server.url, checkpoint_rows=1)  # the removal and the arrival: two chunks
        world.write(tmp_path)
        converge(tmp_path)
        [old] = world.rows["attributes"]
        world.left["attributes"].append(world.rows["attributes"].pop(old)["key"])
        world.arrive(ATTRIBUTES, random.Random(SEED), reuse=True)
        world.write(tmp_path)
        emulator.refuse_archives = 1
        first = reverse_etl.sync(tmp_path, [ATTRIBUTES.sync])
        assert (first.runs[0].status, first.runs[0].rejected) == ("partial", 1)  # the archive, refused
        converge(tmp_path)
    check(emulator, world, ATTRIBUTES, {r["key"] for r in world.rows["attributes"].values()})
    assert len(emulator.attributes()) == 1


@pytest.mark.parametrize("kind", [ATTRIBUTES, AUDIENCES], ids=lambda k: k.object)
def test_a_name_freed_by_a_rename_and_taken_in_the_same_run_makes_two_objects(tmp_path: Path, kind: Kind) -> None:
    """One definition is renamed X -> Y and a new one takes X, in the same run: the renamed one
    stays its object (renamed in place), the new one gets an object of its own, never the
    renamed one's."""
    world = Definitions.initial(1, random.Random(SEED))
    emulator = LosesCreates(lost_creates=0)
    with SandboxServer(emulator) as server:
        write_project(tmp_path, server.url)
        world.write(tmp_path)
        converge(tmp_path)
        [(pk, row)] = world.rows[kind.object].items()
        before = {o[kind.match]: o["id"] for o in objects(emulator, kind)}[row[kind.match]]
        freed = row[kind.match]
        row[kind.match] = world.fresh(kind)
        world.rows[kind.object][pk + 1] = {kind.primary_key: pk + 1, kind.match: freed, **world.values(kind, random.Random(1))}
        world.write(tmp_path)
        converge(tmp_path)
    ids, extra = check(emulator, world, kind, {freed, row[kind.match]})
    assert ids[row[kind.match]] == before, "the renamed definition moved to another object"
    assert ids[freed] != before and extra == 0
