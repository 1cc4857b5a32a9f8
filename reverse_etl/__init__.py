"""reverse_etl: warehouse-first reverse ETL to Braze, Optimizely Data Platform and Optimizely.

The library API (the CLI is a thin shell over it)::

    import reverse_etl
    plan = reverse_etl.diff("my_project", ["audiences"])      # preview, sends nothing
    result = reverse_etl.sync("my_project", ["audiences"])    # send what changed
"""

from __future__ import annotations

__version__ = "0.1.0"

from reverse_etl.api import diff, history, run_detail, sync, validate
from reverse_etl.errors import RetlError
from reverse_etl.results import DiffResult, SyncResult, SyncRun

__all__ = [
    "DiffResult",
    "RetlError",
    "SyncResult",
    "SyncRun",
    "__version__",
    "diff",
    "history",
    "run_detail",
    "sync",
    "validate",
]
