"""tunewiz's own cache folder: converted models, the listing's per-run summaries."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$TUNEWIZ_CACHE, else ~/.cache/tunewiz."""
    env = os.environ.get("TUNEWIZ_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tunewiz"
