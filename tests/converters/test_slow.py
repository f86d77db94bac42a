"""Real data: the quality bar on the seed model, and tflite-runtime 2.14 predicting exactly like LiteRT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed_int8(tmp_path_factory: pytest.TempPathFactory, real_data_dir: Path, real_seed_model: Path):
    """The default int8 conversion of the default seed model trained in this session."""
    from digitkit.toolkit.convert import convert

    out = tmp_path_factory.mktemp("seed_int8") / "int8.tflite"
    return convert(real_seed_model, out, data_dir=str(real_data_dir)), out


def test_seed_model_meets_the_quality_bar(seed_int8) -> None:
    report, _ = seed_int8
    assert report.test_size == 10_000 and report.calibration_samples == 500
    assert report.float_ops == 0 and report.input_dtype == "UINT8"
    assert report.converted_accuracy >= 0.995  # issue 11: train + convert with defaults
    assert report.drop_pp <= 0.05
    assert report.compression_ratio <= 0.27
    assert report.conversion_seconds < 10.0
    assert report.agreement >= 0.995


def test_tflite_runtime_predicts_like_litert(seed_int8, real_data_dir: Path) -> None:
    _, model = seed_int8
    proc = subprocess.run(["bash", "benchmarks/compat_tflite_runtime.sh", str(model), str(real_data_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "MAIN_PY": sys.executable})
    if proc.returncode == 2:
        pytest.skip(f"tflite-runtime venv unavailable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical predictions: 10000/10000" in proc.stdout
