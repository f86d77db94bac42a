"""Slow: the default seed training on the shared real MNIST reaches the foundation bar (>= 99.4 %)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli import app


@pytest.mark.slow
def test_default_seed_training_reaches_99_4_on_the_official_test_set(tmp_path: Path, real_data_dir: Path) -> None:
    out = tmp_path / "float.keras"
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--data-dir", str(real_data_dir)])
    assert result.exit_code == 0, result.output + result.stderr
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["test_size"] == 10000 and side["train_size"] + side["val_size"] == 24345
    assert side["test_accuracy"] >= 0.994, side["test_accuracy"]
    assert side["train_seconds"] <= 600
