"""JSON files are strict JSON: a NaN or infinity (a ratio over zero, an empty family) is written as null."""

from __future__ import annotations

import json
from pathlib import Path

from digitkit.runtime.fileio import atomic_write_json


def test_json_files_never_hold_nan_or_infinity(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"ratio": float("nan"), "rows": [1.5, float("inf"), {"x": -float("inf")}],
                               "pair": (0.25, float("nan")), "name": "NaN", "n": 3})
    text = target.read_text()
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    assert json.loads(text) == {"ratio": None, "rows": [1.5, None, {"x": None}], "pair": [0.25, None],
                                "name": "NaN", "n": 3}
