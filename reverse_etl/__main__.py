"""``python -m reverse_etl`` is ``retl``."""

from __future__ import annotations

from reverse_etl.cli.main import main

if __name__ == "__main__":
    main()
