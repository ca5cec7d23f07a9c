"""``python -m server``: what ``kb serve`` runs. Settings from ``KB_*`` variables (an edge builds them)."""

from __future__ import annotations

import sys

from app.settings import SettingsError, load_settings
from core.errors import KbError
from server.app import serve


def main() -> int:
    try:
        serve(load_settings())
    except (SettingsError, KbError) as exc:
        print(f"kb serve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
