"""JSON out: always valid JSON. A non-finite number (NaN, infinity), which `json.dumps` would write as the
invalid tokens ``NaN`` / ``Infinity``, is written as ``null``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def json_text(value: Any, **options: Any) -> str:
    """`json.dumps` of `value` with non-finite numbers as null (never the invalid NaN / Infinity)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **options)


def write_json(path: Path, value: Any, **options: Any) -> Path:
    """Write `value` as strict JSON (see `json_text`) to `path`; returns the path."""
    path = Path(path)
    path.write_text(json_text(value, **options), encoding="utf-8")
    return path
