"""Braze with ``sandbox: true``: retl starts the emulator itself, and catalog syncs work there.

Real Braze needs a catalog created (with its fields) before items are written to it; the
managed emulator is created with the catalogs the destination's syncs write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import reverse_etl
from reverse_etl.api import sandbox_state
from reverse_etl.project import Project
from reverse_etl.sandbox.braze import BrazeEmulator
from reverse_etl.sandbox.manager import sandbox_state_path
from tests.helpers import audience_sync, records_sync, set_model, values_sql, write_project

SANDBOX = {"braze": {"type": "braze", "sandbox": True}}
COLS = ["sku", "title", "price", "colour"]
Rows = list[tuple[Any, ...]]
# One decimal scale for price in both versions (a changed DECIMAL type would resend every row).
V1: Rows = [("s1", "Cable", 9.99, "red"), ("s2", "Plug", 3.5, "blue"), ("s3", "Lamp", 20.0, "red")]
V2: Rows = [("s1", "Cable v2", 11.25, "black"), ("s3", "Lamp", 20.0, "red"), ("s4", "Fan", 30.75, "white")]


def catalog_sync(name: str = "products", catalog: str = "products", mode: str = "upsert", **fields: str) -> dict[str, Any]:
    return {"name": name, "model": "products", "destination": "braze", "type": "records", "mode": mode,
            "primary_key": "sku", "identifiers": {"id": "sku"}, "catalog": catalog,
            "fields": fields or {"title": "title", "price": "price"}}


def saved_items(root: Path, catalog: str = "products") -> dict[str, dict[str, Any]]:
    """What the managed emulator held when the run ended (it saves its state on stop)."""
    return BrazeEmulator(state_path=sandbox_state_path(root, "braze")).catalog_items(catalog)


def items(rows: Rows, fields: tuple[str, ...] = ("title", "price")) -> dict[str, dict[str, Any]]:
    index = {"title": 1, "price": 2, "colour": 3}
    return {r[0]: {"id": r[0], **{f: r[index[f]] for f in fields}} for r in rows}


def sync_ok(root: Path) -> int:
    result = reverse_etl.sync(root)
    assert result.exit_code == 0, result.as_dict()
    return result.runs[0].sent


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_a_catalog_sync_runs_against_the_managed_sandbox(tmp_path: Path, mode: str) -> None:
    write_project(tmp_path, models={"products": values_sql(COLS, V1)}, syncs={"catalog": [catalog_sync(mode=mode)]},
                  destinations=SANDBOX)
    assert sync_ok(tmp_path) == 3
    assert saved_items(tmp_path) == items(V1)

    set_model(tmp_path, "products", values_sql(COLS, V2))  # the emulator restarts from its saved state
    assert sync_ok(tmp_path) == (3 if mode == "mirror" else 2)  # s1 changed, s4 added (mirror: s2 deleted)
    assert saved_items(tmp_path) == (items(V2) if mode == "mirror" else {**items(V1), **items(V2)})
    assert sync_ok(tmp_path) == 0


def test_a_field_added_to_the_mapping_is_in_the_restarted_sandbox_catalog(tmp_path: Path) -> None:
    write_project(tmp_path, models={"products": values_sql(COLS, V1)}, syncs={"catalog": [catalog_sync()]},
                  destinations=SANDBOX)
    sync_ok(tmp_path)
    grown = catalog_sync(title="title", price="price", colour="colour")
    write_project(tmp_path, models={"products": values_sql(COLS, V1)}, syncs={"catalog": [grown]}, destinations=SANDBOX)
    assert sync_ok(tmp_path) == 3  # the mapping changed: every item is sent again, with its colour
    assert saved_items(tmp_path) == items(V1, ("title", "price", "colour"))


def test_the_sandbox_state_shows_the_syncs_catalogs_before_any_run(tmp_path: Path) -> None:
    write_project(tmp_path, models={"products": values_sql(COLS, V1)}, syncs={"catalog": [catalog_sync()]},
                  destinations=SANDBOX)
    state = sandbox_state(tmp_path, "braze")["state"]
    assert state["catalogs"] == {"products": {"fields": ["price", "title"], "items": {}}}


def sandbox_catalogs(root: Path) -> Any:
    return Project.load(root).sandbox_options("braze").get("catalogs")


def test_sandbox_options_name_every_catalog_sync_of_the_destination_with_its_fields(tmp_path: Path) -> None:
    syncs = [
        catalog_sync(),
        catalog_sync(name="colours", colour="colour"),  # the same catalog, another field
        catalog_sync(name="deals", catalog="deals", price="price"),
        records_sync(model="products", primary_key="sku", identifiers={"external_id": "sku"}, fields={"plan": "title"}),
        audience_sync(model="products", primary_key="sku", identifiers={"external_id": "sku"}),
    ]
    write_project(tmp_path, models={"products": values_sql(COLS, V1)}, syncs={"all": syncs}, destinations=SANDBOX)
    assert sandbox_catalogs(tmp_path) == {"deals": ["price"], "products": ["colour", "price", "title"]}


def test_a_real_braze_destination_passes_no_catalogs(tmp_path: Path) -> None:
    real = {"braze": {"type": "braze", "instance": "US-03", "api_key": "k-123"}}
    write_project(tmp_path, models={"products": values_sql(COLS, V1)}, syncs={"catalog": [catalog_sync()]},
                  destinations=real)
    assert sandbox_catalogs(tmp_path) is None
