"""dbt integration: dbt models as sync sources (manifest.json) and ``retl init --from-dbt``."""

from __future__ import annotations

from reverse_etl.dbt.manifest import DbtModel, Manifest, dbt_models, dbt_ref

__all__ = ["DbtModel", "Manifest", "dbt_models", "dbt_ref"]
