"""Caliban's tests; `REPO` is the checkout they run from (one definition, wherever a test file sits)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
