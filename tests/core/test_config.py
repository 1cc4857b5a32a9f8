"""Configuration errors: each names its file and line, all are reported at once, nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reverse_etl.errors import ConfigError, ConfigErrors, ModelError
from reverse_etl.project import Project
from tests.helpers import audience_sync, records_sync, write_project

MEMBERS = "SELECT 'u1' AS user_id, 10.0 AS ltv, 'pro' AS plan"


def load(root: Path) -> Project:
    return Project.load(root)


def test_valid_project_loads(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": MEMBERS}, syncs={"audiences": [audience_sync()]})
    project = load(tmp_path)
    assert list(project.syncs) == ["members"]
    assert project.syncs["members"].config.mode == "mirror"
    assert project.syncs["members"].where == "syncs/audiences.yml:2"


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": MEMBERS})
    (tmp_path / "syncs" / "bad.yml").write_text("syncs:\n  - name: a\n    model: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load(tmp_path)
    assert "syncs/bad.yml:" in str(exc.value)
    assert "invalid YAML" in str(exc.value)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    sync = audience_sync()
    sync["identifers"] = sync.pop("identifiers")
    write_project(tmp_path, models={"members": MEMBERS}, syncs={"audiences": [sync]})
    with pytest.raises(ConfigError) as exc:
        load(tmp_path)
    text = str(exc.value)
    assert "unknown key 'identifers'" in text
    assert "did you mean 'identifiers'" in text
    assert "syncs/audiences.yml:" in text


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    bad_model = audience_sync(name="a", model="nope")
    bad_dest = audience_sync(name="b", destination="brazee")
    bad_mode = records_sync(name="c", model="members", mode="mirrorr")
    dup = audience_sync(name="a")
    write_project(tmp_path, models={"members": MEMBERS}, syncs={"audiences": [bad_model, bad_dest, bad_mode, dup]})
    with pytest.raises(ConfigErrors) as exc:
        load(tmp_path)
    text = str(exc.value)
    assert "model 'nope' not found" in text
    assert "destination 'brazee' is not defined" in text and "did you mean 'braze'" in text
    assert "mode 'mirrorr' is not valid for type records" in text
    assert "duplicate sync name 'a'" in text
    assert len(exc.value.errors) == 4


def test_missing_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETL_TEST_BRAZE_KEY", raising=False)
    write_project(
        tmp_path, models={"members": MEMBERS}, syncs={"audiences": [audience_sync()]},
        destinations={"braze": {"type": "braze", "instance": "US-03", "api_key": "{{ env_var('RETL_TEST_BRAZE_KEY') }}"}},
    )
    with pytest.raises(ConfigError, match="environment variable 'RETL_TEST_BRAZE_KEY' is not set"):
        load(tmp_path)
    monkeypatch.setenv("RETL_TEST_BRAZE_KEY", "secret-value")
    project = load(tmp_path)
    assert project.destinations["braze"].auth_headers() == {"Authorization": "Bearer secret-value"}


def test_secrets_are_not_in_the_config_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETL_TEST_BRAZE_KEY", "very-secret-key")
    write_project(
        tmp_path, models={"members": MEMBERS}, syncs={"audiences": [audience_sync()]},
        destinations={"braze": {"type": "braze", "instance": "US-03", "api_key": "{{ env_var('RETL_TEST_BRAZE_KEY') }}"}},
    )
    project = load(tmp_path)
    assert "very-secret-key" not in repr(project.destinations["braze"].config)


def test_http_base_url_only_for_loopback(tmp_path: Path) -> None:
    write_project(
        tmp_path, models={"members": MEMBERS}, syncs={"audiences": [audience_sync()]},
        destinations={"braze": {"type": "braze", "base_url": "http://example.com", "api_key": "k"}},
    )
    with pytest.raises(ConfigError, match="https unless the host is loopback"):
        load(tmp_path)


def test_target_selection_and_unknown_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, models={"members": MEMBERS}, syncs={"audiences": [audience_sync()]})
    with pytest.raises(ConfigError, match="target 'prod' is not defined"):
        Project.load(tmp_path, target="prod")
    monkeypatch.setenv("RETL_TARGET", "staging")
    with pytest.raises(ConfigError, match="target 'staging' is not defined"):
        Project.load(tmp_path)


def test_profiles_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, models={"members": MEMBERS})
    (tmp_path / "profiles.yml").rename(tmp_path / "profiles.example.yml")
    assert Project.load(tmp_path).target.path.name == "profiles.example.yml"
    monkeypatch.setenv("RETL_PROFILES", str(tmp_path / "missing.yml"))
    with pytest.raises(ConfigError, match=r"missing.yml \(from \$RETL_PROFILES\) does not exist"):
        Project.load(tmp_path)


def test_audience_sync_needs_audience_block(tmp_path: Path) -> None:
    sync = audience_sync()
    del sync["audience"]
    write_project(tmp_path, models={"members": MEMBERS}, syncs={"audiences": [sync]})
    with pytest.raises(ConfigError, match="needs `audience:`"):
        load(tmp_path)


def test_selectors(tmp_path: Path) -> None:
    write_project(
        tmp_path, models={"members": MEMBERS, "traits": MEMBERS},
        syncs={"audiences": [audience_sync(tags=["daily"])], "traits": [records_sync()]},
    )
    project = load(tmp_path)
    assert [s.name for s in project.select(["audiences"])] == ["members"]
    assert [s.name for s in project.select(["tag:daily"])] == ["members"]
    assert [s.name for s in project.select(["destination:braze"])] == ["members", "traits"]
    assert [s.name for s in project.select(["trait*"])] == ["traits"]
    with pytest.raises(ConfigError, match="did you mean 'traits'"):
        project.select(["trait"])


def test_model_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": "SELECT 1 AS user_id\nFROM t WHERE (", "ok": MEMBERS})
    with pytest.raises((ModelError, ConfigError)) as exc:
        load(tmp_path)
    assert "models/members.sql:2" in str(exc.value)


def test_model_must_be_one_select(tmp_path: Path) -> None:
    write_project(tmp_path, models={"members": "DELETE FROM users"})
    with pytest.raises((ModelError, ConfigError), match="must be a SELECT"):
        load(tmp_path)


def test_model_cycle_is_reported(tmp_path: Path) -> None:
    write_project(tmp_path, models={"a": "SELECT * FROM b", "b": "SELECT * FROM c", "c": "SELECT * FROM a"})
    with pytest.raises((ModelError, ConfigError), match="cycle"):
        load(tmp_path)
