"""Logging setup. Library modules use `logging.getLogger(__name__)`; only the CLI calls `setup_logging`."""

from __future__ import annotations

import logging


def setup_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
