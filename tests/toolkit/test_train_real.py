"""Slow: the default training (seed-bn, 30 epochs, all 60 000 images) on the shared real MNIST reaches issue 11's
bar for `digitkit train` + `digitkit convert` with defaults (>= 99.5 %; the int8 model is within 0.05 pp of float)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_default_training_reaches_99_5_on_the_official_test_set(real_seed_model: Path) -> None:
    side = json.loads(real_seed_model.with_name(real_seed_model.name + ".json").read_text())
    assert side["arch"] == "seed-bn" and side["config"]["augment"] is True and side["epochs"] == 30
    # 60 000 digits split 54 000 / 6 000, plus a quarter as many non-digit tiles in each split
    assert side["test_size"] == 10000 and 1.2 * 60000 <= side["train_size"] + side["val_size"] <= 1.3 * 60000
    assert side["test_accuracy"] >= 0.995, side["test_accuracy"]
