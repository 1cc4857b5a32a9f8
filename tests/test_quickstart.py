"""The README quickstart, as a user runs it: the example project, `retl sync audiences` twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def retl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reverse_etl", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_example_sync_end_to_end_then_nothing_to_do(tmp_path: Path) -> None:
    for part in ("models", "syncs", "data"):
        shutil.copytree(REPO / part, tmp_path / part)
    shutil.copy(REPO / "profiles.example.yml", tmp_path)

    first = retl(tmp_path, "sync", "audiences", "--format", "json")
    assert first.returncode == 0, first.stderr
    runs = json.loads(first.stdout)["runs"]
    assert runs and all(r["status"] == "success" and r["sent"] > 0 for r in runs)
    joined = {r["sync"]: r["added"] for r in runs}
    assert joined["braze_high_value"] > 0

    second = retl(tmp_path, "sync", "audiences", "--format", "json")
    assert second.returncode == 0, second.stderr
    assert all((r["added"], r["changed"], r["removed"], r["sent"]) == (0, 0, 0, 0) for r in json.loads(second.stdout)["runs"])

    shown = retl(tmp_path, "sandbox", "show", "braze")
    assert json.loads(shown.stdout)["summary"]["users"] >= joined["braze_high_value"]

    # Edit the data, preview, then sync just the change: the biggest customer's orders vanish.
    orders = (tmp_path / "data" / "orders.csv").read_text().splitlines()
    cols = orders[0].split(",")
    totals: dict[str, float] = {}
    for line in orders[1:]:
        row = dict(zip(cols, line.split(","), strict=True))
        if row["status"] == "completed":
            totals[row["user_id"]] = totals.get(row["user_id"], 0.0) + float(row["amount"])
    biggest = max(totals, key=lambda u: totals[u])
    kept = [orders[0]] + [line for line in orders[1:] if dict(zip(cols, line.split(","), strict=True))["user_id"] != biggest]
    (tmp_path / "data" / "orders.csv").write_text("\n".join(kept) + "\n")
    preview = retl(tmp_path, "diff", "braze_high_value", "--format", "json")
    assert preview.returncode == 0, preview.stderr
    plan = json.loads(preview.stdout)["plans"][0]
    assert (plan["added"], plan["removed"]) == (0, 1)
    assert plan["sample"]["removed"][0]["key"] == {"user_id": biggest}
    third = retl(tmp_path, "sync", "braze_high_value", "--format", "json")
    assert json.loads(third.stdout)["runs"][0]["sent"] == 1
    member = json.loads(retl(tmp_path, "sandbox", "show", "braze", "--user", biggest).stdout)
    assert member["profile"]["retl_high_value"] is False
