"""Dependency order of models, with cycles reported as the loop they form."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable

from reverse_etl.errors import ModelError
from reverse_etl.modeling.model import Model


class ModelGraph:
    def __init__(self, models: dict[str, Model]) -> None:
        self.models = models
        names = set(models)
        self.deps: dict[str, set[str]] = {name: m.depends_on(names) for name, m in models.items()}
        sorter = graphlib.TopologicalSorter(self.deps)
        try:
            self.order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            files = ", ".join(str(models[n].path.name) for n in dict.fromkeys(cycle))
            raise ModelError(f"models depend on each other in a cycle: {' -> '.join(cycle)} ({files})") from None

    def upstream(self, names: Iterable[str]) -> list[str]:
        """``names`` and every model they read, in dependency order."""
        needed: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            stack.extend(self.deps.get(name, ()))
        return [n for n in self.order if n in needed]
