"""The bad input catalogue: one test per kind of bad input, through the real CLI.

Every case starts from a project that has synced once (so there is a snapshot, a run history and
a destination holding data to damage), breaks one thing, runs ``retl sync`` and checks three
things: the message names what is wrong and where; the exit code is the one DESIGN.md gives
(1: nothing could safely be done; 2: the run completed, some rows were refused and will be
retried); the snapshot and the destination stay consistent (a configuration or model error
changes neither; a refused row is not in the snapshot and every other row is delivered).

Unit-level checks of the same errors live in tests/core/test_config.py and test_models.py;
these prove the whole path from the command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from reverse_etl.cli.main import cli
from reverse_etl.sandbox import SandboxServer
from reverse_etl.sandbox.base import Emulator
from reverse_etl.sandbox.braze import BrazeEmulator
from reverse_etl.sandbox.http import Response
from reverse_etl.sandbox.odp import OdpEmulator
from reverse_etl.sandbox.optimizely import OptimizelyEmulator
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project
from tests.reliability.harness import snapshot_rows

TRAITS = ["user_id", "plan", "country"]
GOOD = [("u1", "pro", "US"), ("u2", "free", "DE")]


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--project-dir", str(root), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


@dataclass
class Synced:
    """A project that synced once, and what it and Braze held afterwards."""

    root: Path
    emulator: BrazeEmulator
    snapshots: dict[str, dict[Any, dict[str, Any]]]
    held: dict[str, Any]

    def capture(self) -> tuple[dict[str, dict[Any, dict[str, Any]]], dict[str, Any]]:
        return {s: snapshot_rows(self.root, s) for s in ("members", "traits")}, self.emulator.dump()

    def assert_untouched(self) -> None:
        """Neither the snapshot nor the destination changed."""
        snapshots, held = self.capture()
        assert snapshots == self.snapshots, "the snapshot changed"
        assert held == self.held, "the destination changed"

    def write_syncs(self, group: str, text: str) -> None:
        (self.root / "syncs" / f"{group}.yml").write_text(text)


@pytest.fixture
def synced(tmp_path: Path, braze: SandboxServer) -> Synced:
    emulator: BrazeEmulator = braze.emulator  # type: ignore[assignment]
    write_project(
        tmp_path,
        models={"members": values_sql(["user_id"], [("u1",), ("u2",)]), "traits": values_sql(TRAITS, GOOD)},
        syncs={"audiences": [audience_sync()], "traits": [records_sync(fields={"plan": "plan", "country": "country"})]},
        destinations={"braze": {"type": "braze", "base_url": braze.url, "api_key": "sandbox-key", "max_retries": 1}},
    )
    code, out, err = run(tmp_path, "sync", "--format", "json")
    assert code == 0, out + err
    project = Synced(tmp_path, emulator, {}, {})
    project.snapshots, project.held = project.capture()
    return project


def json_error(out: str) -> str:
    return str(json.loads(out)["error"])


def only_run(out: str, sync: str) -> dict[str, Any]:
    (found,) = [r for r in json.loads(out)["runs"] if r["sync"] == sync]
    return found


# --- configuration ---------------------------------------------------------------------------------
def test_malformed_yaml(synced: Synced) -> None:
    synced.write_syncs("audiences", "syncs:\n  - name: members\n    model: [members\n")
    code, out, err = run(synced.root, "sync", "--format", "json")
    assert code == 1
    assert re.search(r"syncs/audiences.yml:\d+: invalid YAML", json_error(out))
    assert "error:" in err
    synced.assert_untouched()


def test_unknown_key(synced: Synced) -> None:
    synced.write_syncs("traits", "syncs:\n  - name: traits\n    modle: traits\n    destination: braze\n    type: records\n"
                                 "    primary_key: user_id\n    identifiers: {external_id: user_id}\n")
    code, _, err = run(synced.root, "sync")
    assert code == 1
    assert "syncs/traits.yml:3" in err and "unknown key 'modle'" in err and "did you mean 'model'" in err
    synced.assert_untouched()


@pytest.mark.parametrize(("where", "key", "value", "message"), [
    ("destination", "batch_size", "lots", "batch_size: Input should be a valid integer"),
    ("destination", "max_retries", -1, "max_retries: Input should be greater than or equal to 0"),
    ("sync", "primary_key", {"a": 1}, "primary_key: expected a string or a list"),
    ("sync", "enabled", "maybe", "enabled: Input should be a valid boolean"),
])
def test_wrong_type(synced: Synced, braze: SandboxServer, where: str, key: str, value: Any, message: str) -> None:
    if where == "destination":
        dest = {"type": "braze", "base_url": braze.url, "api_key": "sandbox-key", key: value}
        write_project(synced.root, models={}, destinations={"braze": dest})
        located = "profiles.yml:"
    else:
        synced.write_syncs("traits", json.dumps({"syncs": [records_sync(**{key: value})]}))
        located = "syncs/traits.yml:"
    code, _, err = run(synced.root, "sync")
    assert code == 1
    assert message in err and located in err
    assert "not defined in the target" not in err  # one problem, one message
    synced.assert_untouched()


def test_missing_env_var(synced: Synced) -> None:
    dest = {"type": "braze", "instance": "US-03", "api_key": "{{ env_var('RETL_TEST_NO_SUCH_KEY') }}"}
    write_project(synced.root, models={}, destinations={"braze": dest})
    code, out, _ = run(synced.root, "sync", "--format", "json", env={"RETL_TEST_NO_SUCH_KEY": None})  # type: ignore[dict-item]
    assert code == 1
    assert "environment variable 'RETL_TEST_NO_SUCH_KEY' is not set" in json_error(out)
    assert "profiles.yml" in json_error(out)
    synced.assert_untouched()


# --- models ----------------------------------------------------------------------------------------
def test_sql_syntax_error(synced: Synced) -> None:
    set_model(synced.root, "traits", "SELECT user_id, plan,\n  country\nFROM (VALUES ('u1', 'pro', 'US')) t(user_id, plan, country\nWHERE (")
    code, _, err = run(synced.root, "sync")
    assert code == 1
    assert "models/traits.sql:" in err
    synced.assert_untouched()


def test_model_reads_a_missing_table(synced: Synced) -> None:
    set_model(synced.root, "traits", "SELECT user_id, plan, country FROM no_such_table")
    code, out, _ = run(synced.root, "sync", "--format", "json")
    assert code == 1
    error = json_error(out)
    assert "models/traits.sql" in error and "no_such_table does not exist" in error
    synced.assert_untouched()


def test_mapped_column_missing(synced: Synced) -> None:
    set_model(synced.root, "traits", values_sql(["user_id", "plan"], [("u1", "pro")]))
    code, _, err = run(synced.root, "sync")
    assert code == 1
    assert "sync 'traits': fields.country names column 'country', which model 'traits' does not produce" in err
    assert "syncs/traits.yml" in err
    synced.assert_untouched()


def test_null_primary_key(synced: Synced) -> None:
    set_model(synced.root, "traits", values_sql(TRAITS, [*GOOD, (None, "team", "FR")]))
    code, out, _ = run(synced.root, "sync", "--format", "json")
    assert code == 1
    error = only_run(out, "traits")["error"]
    assert "model 'traits': 1 row(s) have a NULL primary key (user_id)" in error
    synced.assert_untouched()


def test_duplicate_primary_key(synced: Synced) -> None:
    set_model(synced.root, "traits", values_sql(TRAITS, [*GOOD, ("u1", "team", "FR")]))
    code, out, _ = run(synced.root, "sync", "--format", "json")
    assert code == 1
    error = only_run(out, "traits")["error"]
    assert "primary key (user_id) is not unique" in error and "'u1' x2" in error
    synced.assert_untouched()


# --- values the destination forbids: the row is refused, the others go, the refusal is retried ----
def assert_refused_alone(synced: Synced, bad_key: str, *reason: str) -> None:
    """``bad_key`` was refused with ``reason``; every other row was delivered; the refused row is
    not in the snapshot, so the next run sends it again (and it is refused again)."""
    code, out, _ = run(synced.root, "sync", "traits", "--format", "json")
    assert code == 2
    result = only_run(out, "traits")
    assert (result["status"], result["rejected"]) == ("partial", 1)
    (sample,) = result["rejected_sample"]
    assert sample["key"] == bad_key and all(part in sample["reason"] for part in reason), sample
    assert bad_key not in snapshot_rows(synced.root, "traits")
    assert synced.emulator.user("u3") is not None and synced.emulator.user("u3")["plan"] == "team"  # type: ignore[index]
    code, out, _ = run(synced.root, "sync", "traits", "--format", "json")
    assert code == 2 and only_run(out, "traits")["added"] == 1  # retried, not forgotten


def test_bad_country_code(synced: Synced) -> None:
    set_model(synced.root, "traits", values_sql(TRAITS, [*GOOD, ("u3", "team", "FR"), ("u4", "pro", "XX")]))
    assert_refused_alone(synced, "u4", "country", "XX")
    assert synced.emulator.user("u4") is None


def test_too_long_string(synced: Synced) -> None:
    set_model(synced.root, "traits", values_sql(TRAITS, [*GOOD, ("u3", "team", "FR"), ("u4", "x" * 300, "US")]))
    assert_refused_alone(synced, "u4", "plan", "255")
    assert synced.emulator.user("u4") is None


def test_row_over_the_payload_limit(synced: Synced) -> None:
    # one row alone over Braze's 4 MB request limit (20,000 array items of 250 characters, each
    # within Braze's limits): refused before sending, so Braze never answers 413
    synced.write_syncs("traits", json.dumps({"syncs": [records_sync(fields={"plan": "plan", "country": "country", "tags": "tags"})]}))
    rows = values_sql(TRAITS, [*GOOD, ("u3", "team", "FR")])
    set_model(synced.root, "traits", f"SELECT *, ['x'] AS tags FROM ({rows}) AS good UNION ALL "
                                     "SELECT 'u4', 'pro', 'US', list_transform(range(20000), lambda i: repeat('t', 250))")
    assert_refused_alone(synced, "u4", "4 MB")
    assert all(status != 413 for _, _, status in synced.emulator.request_log)


def optimizely_project(root: Path, url: str, sync: dict[str, Any], model: str) -> None:
    dest = {"type": "optimizely", "base_url": url + "/v2", "events_url": url + "/v1/events", "token": "sandbox-key",
            "project_id": 1000, "account_id": 2000, "max_retries": 1}
    write_project(root, models={sync["model"]: model}, syncs={"opti": [sync]}, destinations={"optimizely": dest})


def test_pii_values_in_an_optimizely_list(tmp_path: Path) -> None:
    emulator = OptimizelyEmulator()
    sync = {"name": "vip", "model": "vip", "destination": "optimizely", "type": "audience", "mode": "mirror",
            "primary_key": "user_id", "identifiers": {"user_id": "user_id"},
            "audience": {"list_attribute": "vip", "key_field": "user_id"}}
    with SandboxServer(emulator) as server:
        optimizely_project(tmp_path, server.url, sync, values_sql(["user_id"], [("u1",), ("jane@example.com",)]))
        code, out, _ = run(tmp_path, "sync", "--format", "json")
    assert code == 2
    result = only_run(out, "vip")
    assert result["rejected"] == 1 and "looks like an e-mail address" in result["rejected_sample"][0]["reason"]
    assert emulator.list_members("vip", 1000) == ["u1"]  # the address never reached Optimizely
    assert set(snapshot_rows(tmp_path, "vip")) == {"u1"}


def test_pii_column_for_an_optimizely_list(tmp_path: Path) -> None:
    sync = {"name": "vip", "model": "vip", "destination": "optimizely", "type": "audience", "mode": "mirror",
            "primary_key": "email", "identifiers": {"email": "email"},
            "audience": {"list_attribute": "vip", "key_field": "email"}}
    optimizely_project(tmp_path, "http://127.0.0.1:9", sync, values_sql(["email"], [("jane@example.com",)]))
    code, _, err = run(tmp_path, "sync")
    assert code == 1
    assert "Optimizely's terms forbid PII" in err and "syncs/opti.yml" in err
    assert not (tmp_path / ".retl" / "state.duckdb").exists()  # refused before anything was opened


def test_event_over_the_optimizely_payload_limit(tmp_path: Path) -> None:
    emulator = OptimizelyEmulator()
    sync = {"name": "orders", "model": "orders", "destination": "optimizely", "type": "events", "primary_key": "event_id",
            "identifiers": {"visitor_id": "user_id"}, "fields": {"note": "note"},
            "event": {"key": "purchase", "time": "ts", "entity_id": "1"}}
    model = ("SELECT * FROM (VALUES ('e1', 'u1', TIMESTAMP '2026-01-01', 'ok'), "
             "('e2', 'u2', TIMESTAMP '2026-01-02', repeat('z', 4000000))) t(event_id, user_id, ts, note)")
    with SandboxServer(emulator) as server:
        optimizely_project(tmp_path, server.url, sync, model)
        code, out, _ = run(tmp_path, "sync", "--format", "json")
    assert code == 2
    result = only_run(out, "orders")
    assert result["sent"] == 1 and "over the Event API's" in result["rejected_sample"][0]["reason"]
    assert [e["visitor_id"] for e in emulator.conversion_events()] == ["u1"]
    assert set(snapshot_rows(tmp_path, "orders")) == {"e1"}


# --- text that is not UTF-8 ----------------------------------------------------------------------------
def test_non_utf8_model_file(synced: Synced) -> None:
    (synced.root / "models" / "traits.sql").write_bytes(b"SELECT 'u1' AS user_id, 'caf\xe9' AS plan, 'US' AS country\n")
    code, _, err = run(synced.root, "sync")
    assert code == 1 and "models/traits.sql: not valid UTF-8" in err
    synced.assert_untouched()


def test_non_utf8_sync_file(synced: Synced) -> None:
    path = synced.root / "syncs" / "traits.yml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    code, _, err = run(synced.root, "sync")
    assert code == 1 and "syncs/traits.yml: not valid UTF-8" in err
    synced.assert_untouched()


def test_non_utf8_data_file(synced: Synced) -> None:
    (synced.root / "data").mkdir()
    (synced.root / "data" / "traits.csv").write_bytes(b"user_id,plan,country\nu1,caf\xe9,US\n")
    set_model(synced.root, "traits", "SELECT * FROM read_csv('data/traits.csv')")
    code, _, err = run(synced.root, "sync")
    assert code == 1 and "models/traits.sql" in err and "not utf-8" in err.lower()
    synced.assert_untouched()


def test_non_utf8_bytes_in_a_value(synced: Synced) -> None:
    # a BLOB column (raw bytes from the warehouse); u4's are Latin-1, not UTF-8
    set_model(synced.root, "traits", "SELECT user_id, plan::BLOB AS plan, country FROM (VALUES ('u1', 'pro', 'US'), "
                                     "('u2', 'free', 'DE'), ('u3', 'team', 'FR')) t(user_id, plan, country) "
                                     "UNION ALL SELECT 'u4', '\\xE9\\x41'::BLOB, 'US'")
    code, out, _ = run(synced.root, "sync", "traits", "--format", "json")
    held = synced.emulator.user("u4")
    assert held is None or "\ufffd" not in str(held.get("plan")), "Braze holds a replacement character"
    assert code == 2 and "plan" in only_run(out, "traits")["rejected_sample"][0]["reason"]


# --- names with quotes and semicolons: quoted everywhere, never executed -------------------------------
def test_quotes_and_semicolons_in_model_and_column_names(synced: Synced) -> None:
    warehouse = synced.root / ".retl" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("CREATE TABLE users AS SELECT 'u1' AS id, 'pro' AS plan")
    column = 'id"); DROP TABLE users; --'
    model = 'm"; DROP TABLE users; --'
    quoted = '"' + column.replace('"', '""') + '"'
    set_model(synced.root, model, f"SELECT id AS {quoted}, plan AS \"pl'an;\" FROM users")
    synced.write_syncs("traits", json.dumps({"syncs": [records_sync(
        name="evil", model=model, primary_key=column, identifiers={"external_id": column}, fields={"plan": "pl'an;"})]}))
    code, out, err = run(synced.root, "sync", "evil", "--format", "json")
    assert code == 0, out + err
    assert only_run(out, "evil")["sent"] == 1 and synced.emulator.user("u1")["plan"] == "pro"  # type: ignore[index]
    code, out, _ = run(synced.root, "diff", "evil", "--format", "json")
    assert code == 0 and json.loads(out)["plans"][0]["added"] == 0
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)  # the table is still there
    assert set(snapshot_rows(synced.root, "evil")) == {"u1"}


def test_quotes_and_semicolons_in_a_sync_name(synced: Synced) -> None:
    synced.write_syncs("traits", json.dumps({"syncs": [records_sync(name='t"; DROP TABLE _retl_runs; --')]}))
    code, _, err = run(synced.root, "sync")
    assert code == 1
    assert "a sync name uses letters, digits, _ and -" in err and "Value error" not in err
    synced.assert_untouched()


# --- a destination answering garbage ----------------------------------------------------------------------
def garbage(emulator: Emulator, status: int, content_type: str, body: bytes) -> None:
    """Make every answer ``body`` (e.g. a proxy's HTML page); nothing is applied."""
    answer = Response(status, body, {"Content-Type": content_type})
    emulator.dispatch = lambda request: emulator._log(request, answer)  # type: ignore[method-assign]


def healthy(emulator: Emulator) -> None:
    del emulator.dispatch  # the class's own again


HTML_502 = (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>")
HTML_200 = (200, "text/html", b"<html><body>Welcome! Please log in to the network.</body></html>")
TRUNCATED_JSON = (201, "application/json", b'{"message": "succ')

# A 2xx answer whose body is not the API's JSON (a proxy's HTML page, a cut-off body) is no proof of
# delivery: its rows stay undelivered and are sent again (was a bug of issue 3, fixed there).


def destination_project(root: Path, kind: str, url: str) -> tuple[str, int]:
    """A two-row sync to ``kind``; its name and how many rows it sends."""
    users = values_sql(["user_id"], [("u1",), ("u2",)])
    orders = ("SELECT * FROM (VALUES ('e1', 'u1', TIMESTAMP '2026-01-01'), ('e2', 'u2', TIMESTAMP '2026-01-02')) "
              "t(event_id, user_id, ts)")
    event = {"name": "orders", "model": "orders", "type": "events", "primary_key": "event_id"}
    if kind == "braze":
        write_project(root, models={"members": users}, syncs={"s": [audience_sync()]},
                      destinations={"braze": {"type": "braze", "base_url": url, "api_key": "sandbox-key", "max_retries": 1}})
        return "members", 2
    if kind == "odp":
        sync = {**event, "destination": "odp", "identifiers": {"customer_id": "user_id"},
                "event": {"type": "order", "time": "ts"}}
        write_project(root, models={"orders": orders}, syncs={"s": [sync]},
                      destinations={"odp": {"type": "odp", "base_url": url + "/v3", "api_key": "sandbox-key", "max_retries": 1}})
        return "orders", 2
    sync = {**event, "destination": "optimizely", "identifiers": {"visitor_id": "user_id"},
            "event": {"key": "purchase", "time": "ts", "entity_id": "1"}}
    optimizely_project(root, url, sync, orders)
    return "orders", 2


EMULATORS: dict[str, type[Emulator]] = {"braze": BrazeEmulator, "odp": OdpEmulator, "optimizely": OptimizelyEmulator}


def held_rows(kind: str, emulator: Any) -> int:
    if kind == "braze":
        return sum(1 for u in emulator.users().values() if u.get("vip") is True)
    if kind == "odp":
        return len(emulator.events())
    return len(emulator.conversion_events())


def assert_garbage_is_not_delivery(tmp_path: Path, kind: str, answer: tuple[int, str, bytes]) -> str:
    """Rows answered with garbage stay undelivered (exit 2, not in the snapshot) and are sent when
    the destination is healthy again; return the reason the run gave."""
    emulator = EMULATORS[kind]()
    with SandboxServer(emulator) as server:
        sync, rows = destination_project(tmp_path, kind, server.url)
        garbage(emulator, *answer)
        code, out, err = run(tmp_path, "sync", "--format", "json")
        result = only_run(out, sync)
        assert code == 2, (out, err)
        assert (result["sent"], result["undelivered"]) == (0, rows)
        assert snapshot_rows(tmp_path, sync) == {}
        healthy(emulator)
        code, out, _ = run(tmp_path, "sync", "--format", "json")
        assert code == 0 and only_run(out, sync)["sent"] == rows
        assert held_rows(kind, emulator) == rows
    return str(result["rejected_sample"][0]["reason"])


@pytest.mark.parametrize("kind", ["braze", "odp", "optimizely"])
def test_destination_answers_an_html_error_page(tmp_path: Path, kind: str) -> None:
    reason = assert_garbage_is_not_delivery(tmp_path, kind, HTML_502)
    assert "502" in reason and "Bad Gateway" in reason and "gave up after 2 attempts" in reason


@pytest.mark.parametrize("kind", ["braze", "odp", "optimizely"])
def test_destination_answers_2xx_with_an_html_page(tmp_path: Path, kind: str) -> None:
    assert_garbage_is_not_delivery(tmp_path, kind, HTML_200)


@pytest.mark.parametrize("kind", ["braze", "odp"])
def test_destination_answers_2xx_with_cut_off_json(tmp_path: Path, kind: str) -> None:
    assert_garbage_is_not_delivery(tmp_path, kind, TRUNCATED_JSON)
