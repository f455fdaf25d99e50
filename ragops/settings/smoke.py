"""ragops.yaml `smoke`: the golden-query check added to every smoke test (ragops/golden.py)."""
from __future__ import annotations

from pydantic import Field

from ragops.config_types import Strict


class SmokeSettings(Strict):
    """ragops.yaml `smoke`: the golden-query check of every smoke test (off without `golden`)."""
    golden: str | None = None                         # a YAML file (relative to ragops.yaml)
    golden_k: int = Field(3, ge=1, le=50)             # recall@k (random answers hit k/corpus size by chance)
    golden_min_recall: float = Field(0.8, ge=0, le=1)
