"""dbt models as sources: a real dbt-duckdb project built in the test, ``retl init --from-dbt``.

dbt-core pins dependencies (pathspec < 0.13) that conflict with this project's test tools, so dbt
lives in a venv of its own: ``$RETL_DBT``, else ``.venv-dbt/bin/dbt`` (``.ci/run`` creates it),
else ``dbt`` on the PATH. Without one the dbt build test is skipped (failed in CI); the manifest
tests below it run on a small hand-written manifest either way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

import reverse_etl
from reverse_etl.cli.main import cli
from reverse_etl.dbt.manifest import Manifest, dbt_ref
from reverse_etl.errors import ConfigError
from reverse_etl.sandbox import SandboxServer
from tests.conftest import braze_destination
from tests.helpers import write_project

REPO = Path(__file__).resolve().parents[2]


def dbt_executable() -> str | None:
    for candidate in (os.environ.get("RETL_DBT"), str(REPO / ".venv-dbt" / "bin" / "dbt"), shutil.which("dbt")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def write_dbt_project(path: Path, warehouse: Path) -> None:
    files = {
        "dbt_project.yml": """
            name: shop
            version: "1.0"
            profile: shop
            model-paths: [models]
            seed-paths: [seeds]
        """,
        "profiles.yml": f"""
            shop:
              target: dev
              outputs:
                dev: {{type: duckdb, path: "{warehouse}", threads: 1}}
        """,
        "seeds/raw_users.csv": "user_id,plan,ltv\nu1,pro,250.5\nu2,free,0\nu3,team,120\n",
        "models/dim_users.sql": """
            {{ config(materialized='table', tags=['retl'], meta={'retl': {'fields': {'plan': 'plan', 'ltv': 'ltv'}}}) }}
            select user_id, plan, ltv from {{ ref('raw_users') }}
        """,
        "models/vip_users.sql": """
            {{ config(materialized='view', tags=['retl'], meta={'retl': {'type': 'audience', 'audience': {'name': 'vip'}}}) }}
            select user_id from {{ ref('dim_users') }} where ltv > 100
        """,
        "models/internal_only.sql": "select 1 as id",
        "models/schema.yml": """
            version: 2
            models:
              - name: dim_users
                description: One row per user.
                columns:
                  - name: user_id
                    tests: [unique, not_null]
                  - name: plan
                  - name: ltv
        """,
    }
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).strip() + "\n")


@pytest.mark.dbt
def test_dbt_duckdb_project_scaffolded_and_synced(tmp_path: Path, braze: SandboxServer) -> None:
    dbt = dbt_executable()
    if dbt is None:
        if os.environ.get("CI"):
            pytest.fail("dbt is missing in CI: .ci/run should have created .venv-dbt")
        pytest.skip("no dbt executable (RETL_DBT, .venv-dbt/bin/dbt or dbt on PATH)")
    root, dbt_dir = tmp_path / "retl", tmp_path / "shop"
    warehouse = root / ".retl" / "warehouse.duckdb"
    warehouse.parent.mkdir(parents=True)
    write_dbt_project(dbt_dir, warehouse)
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    built = subprocess.run([dbt, "build", "--project-dir", str(dbt_dir), "--profiles-dir", str(dbt_dir)],
                           capture_output=True, text=True, env=env, cwd=dbt_dir, timeout=240)
    assert built.returncode == 0, built.stdout + built.stderr

    write_project(root, models={}, destinations=braze_destination(braze), target_extra={"dbt_project": str(dbt_dir)})
    result = CliRunner().invoke(cli, ["init", "--from-dbt", str(dbt_dir / "target" / "manifest.json"), "--project-dir", str(root)])
    assert result.exit_code == 0, result.output
    syncs = yaml.safe_load((root / "syncs" / "dbt.yml").read_text())["syncs"]
    by_name = {s["name"]: s for s in syncs}
    assert set(by_name) == {"dim_users", "vip_users"}  # only models tagged retl
    assert by_name["dim_users"]["primary_key"] == "user_id"  # from the unique test
    assert by_name["dim_users"]["fields"] == {"plan": "plan", "ltv": "ltv"}
    assert by_name["vip_users"]["type"] == "audience"

    runs = {r.sync: r for r in reverse_etl.sync(root).runs}
    assert (runs["dim_users"].status, runs["dim_users"].sent) == ("success", 3)
    assert (runs["vip_users"].status, runs["vip_users"].sent) == ("success", 2)
    assert braze.emulator.user("u1")["plan"] == "pro"  # type: ignore[attr-defined]
    assert braze.emulator.user("u3")["vip"] is True  # type: ignore[attr-defined]
    assert all(r.sent == 0 for r in reverse_etl.sync(root).runs)


# --- manifest resolution without dbt -----------------------------------------------------
def manifest(path: Path) -> Path:
    nodes: dict[str, Any] = {
        "model.shop.dim_users": {"resource_type": "model", "name": "dim_users", "database": "analytics",
                                 "schema": "marts", "alias": "users_v2", "tags": ["retl"],
                                 "columns": {"user_id": {}, "plan": {}}, "config": {"meta": {}}},
        "test.shop.unique_dim_users_user_id": {"resource_type": "test", "column_name": "user_id",
                                               "test_metadata": {"name": "unique"}, "attached_node": "model.shop.dim_users"},
    }
    path.write_bytes(orjson.dumps({"metadata": {"project_name": "shop"}, "nodes": nodes}))
    return path


@pytest.mark.parametrize("spelling", ["dbt:dim_users", "{{ ref('dim_users') }}", '{{ref("dim_users")}}'])
def test_both_spellings_name_the_dbt_model(spelling: str) -> None:
    assert dbt_ref(spelling) == "dim_users"
    assert dbt_ref("dim_users") is None


def test_relation_comes_from_the_manifest_quoted_per_dialect(tmp_path: Path) -> None:
    node = Manifest.load(manifest(tmp_path / "manifest.json")).model("dim_users")
    assert node.relation("postgres") == '"analytics"."marts"."users_v2"'
    assert node.relation("bigquery") == "`analytics`.`marts`.`users_v2`"
    assert node.unique_columns == ("user_id",)
    with pytest.raises(ConfigError, match="did you mean 'dim_users'"):
        Manifest.load(tmp_path / "manifest.json").model("dim_user")


def test_a_dbt_model_without_dbt_project_is_a_config_error(tmp_path: Path, braze: SandboxServer) -> None:
    sync = {"name": "s", "model": "{{ ref('dim_users') }}", "destination": "braze", "type": "audience",
            "primary_key": "user_id", "identifiers": {"external_id": "user_id"}, "audience": {"name": "vip"}}
    write_project(tmp_path, models={}, syncs={"dbt": [sync]}, destinations=braze_destination(braze))
    with pytest.raises(ConfigError, match="dbt_project"):
        reverse_etl.validate(tmp_path)
    write_project(tmp_path, models={}, syncs={"dbt": [{**sync, "model": "dbt:nope"}]}, destinations=braze_destination(braze),
                  target_extra={"dbt_project": str(manifest(tmp_path / "manifest.json"))})
    with pytest.raises(ConfigError, match="nope"):
        reverse_etl.validate(tmp_path)
