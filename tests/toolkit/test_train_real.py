"""Slow: the default seed training on the shared real MNIST reaches the foundation bar (>= 99.4 %)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_default_seed_training_reaches_99_4_on_the_official_test_set(real_seed_model: Path) -> None:
    side = json.loads(real_seed_model.with_name(real_seed_model.name + ".json").read_text())
    assert side["arch"] == "seed" and side["config"]["augment"] is True
    assert side["test_size"] == 10000 and side["train_size"] + side["val_size"] == 24345
    assert side["test_accuracy"] >= 0.994, side["test_accuracy"]
    assert side["train_seconds"] <= 600
