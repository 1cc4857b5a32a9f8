"""SQL models: one SELECT per file, dependencies found with sqlglot, run in dependency order."""

from __future__ import annotations

from reverse_etl.modeling.dag import ModelGraph
from reverse_etl.modeling.model import Model, load_models

__all__ = ["Model", "ModelGraph", "load_models"]
