"""Models: templates, dependency order with sqlglot, errors naming the model file, column checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from reverse_etl.config.templating import TemplateError, render
from reverse_etl.errors import ConfigError, ConfigErrors, ModelError
from reverse_etl.modeling.model import compile_model
from reverse_etl.project import Project
from reverse_etl.runner import Runner
from tests.helpers import audience_sync, write_project


def test_render_env_var_var_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETL_T_X", "42")
    assert render("{{ env_var('RETL_T_X') }}") == "42"
    assert render("{{ env_var('RETL_T_MISSING', 'd') }}") == "d"
    assert render("{{ var('n') }} {{var(\"m\", 3)}}", variables={"n": 7}) == "7 3"
    with pytest.raises(TemplateError, match="variable 'n' is not defined"):
        render("{{ var('n') }}")
    with pytest.raises(TemplateError, match="unsupported template expression"):
        render("{{ os.system('x') }}")
    with pytest.raises(TemplateError, match="only be used in models"):
        render("{{ ref('m') }}")


def test_dependencies_found_with_sqlglot_ignoring_ctes_and_qualified_tables(tmp_path: Path) -> None:
    model = compile_model(
        "m", tmp_path / "m.sql",
        "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent JOIN {{ ref('users') }} u USING (id) "
        "JOIN raw.main.events e USING (id) JOIN read_csv('x.csv') c USING (id)",
        variables={},
    )
    assert model.refs == {"orders", "users"}
    assert model.depends_on({"users", "m", "other"}) == {"users"}


def test_other_dialect_is_transpiled_to_duckdb(tmp_path: Path) -> None:
    model = compile_model("m", tmp_path / "m.sql", "-- dialect: snowflake\nSELECT IFF(a > 1, 'x', 'y') AS v FROM t", variables={})
    assert model.dialect == "snowflake"
    assert "CASE WHEN" in model.sql.upper() or "IF(" in model.sql.upper()


def test_models_run_in_dependency_order_and_vars_apply(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        models={
            "members": "SELECT user_id FROM {{ ref('base') }} WHERE score >= {{ var('min_score') }}",
            "base": "SELECT * FROM scored",
            "scored": "SELECT * FROM (VALUES ('u1', 5), ('u2', 1)) t(user_id, score)",
        },
        syncs={"audiences": [audience_sync()]},
        target_extra={"vars": {"min_score": 3}},
    )
    project = Project.load(tmp_path)
    assert project.graph.upstream(["members"]) == ["scored", "base", "members"]
    plan = Runner(project).diff(["members"]).plans[0]
    assert plan.added == 1
    assert plan.sample["added"][0]["key"] == {"user_id": "u1"}


def test_missing_table_names_the_model_file(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": "SELECT user_id FROM no_such_table"}, syncs={"audiences": [audience_sync()]})
    with pytest.raises(ModelError) as exc:
        Runner(Project.load(tmp_path)).diff()
    assert "models/members.sql" in str(exc.value)
    assert "no_such_table" in str(exc.value)


def test_mapped_columns_must_exist_all_reported(tmp_path: Path) -> None:
    sync = audience_sync(identifiers={"external_id": "uid"})
    other = dict(audience_sync(name="other", primary_key="id"))
    write_project(tmp_path, models={"members": "SELECT 'u1' AS user_id"}, syncs={"audiences": [sync, other]})
    with pytest.raises(ConfigErrors) as exc:
        Runner(Project.load(tmp_path)).diff()
    text = str(exc.value)
    assert "identifiers.external_id names column 'uid'" in text
    assert "primary_key names column 'id'" in text
    assert "syncs/audiences.yml" in text


def test_duplicate_model_names_across_folders(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": "SELECT 1 AS user_id"})
    (tmp_path / "models" / "sub").mkdir()
    (tmp_path / "models" / "sub" / "members.sql").write_text("SELECT 2 AS user_id")
    with pytest.raises(ConfigError, match="model name 'members' is also defined"):
        Project.load(tmp_path)
