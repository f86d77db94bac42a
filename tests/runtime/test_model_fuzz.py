"""Never a segfault: mutated .tflite files (bit flips, truncations, splices, flatbuffer-targeted writes)
loaded exactly as the runtime loads them, each in its own process, end as a prediction or an
InferenceError -- no crash signal, no hang, no other exception. ``benchmarks/fuzz_tflite.py`` does the work;
CI runs a modest count, the slow test the long run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "runtime" / "models" / "digitkit_seed_int8.tflite"


@pytest.fixture(scope="module")
def float_tflite(tmp_path_factory: pytest.TempPathFactory, tiny_keras_model: Path) -> Path:
    import keras
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(tiny_keras_model, compile=False))
    out = tmp_path_factory.mktemp("fuzz_float") / "float32.tflite"
    out.write_bytes(conv.convert())
    return out


def run_fuzzer(models: list[Path], count: int, seed: int, out: Path, timeout_s: float) -> dict:
    args = [sys.executable, str(REPO / "benchmarks" / "fuzz_tflite.py"), "--count", str(count), "--seed", str(seed),
            "--json", str(out), "--quiet", "--keep", str(out.parent / "bad")]
    for m in models:
        args += ["--model", str(m)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    report = json.loads(out.read_text())
    assert report["count"] == count and sum(report["outcomes"].values()) == count
    assert done.returncode == (1 if report["bad"] else 0), done.stderr
    return report


def assert_no_bad_outcome(report: dict) -> None:
    outcomes = report["outcomes"]
    assert outcomes["crash"] == 0 and outcomes["hang"] == 0 and outcomes["exception"] == 0, report["bad"][:10]
    # Not vacuous: mutants both got through and got refused, and the refusals were InferenceErrors.
    assert outcomes["ran"] > 0 and outcomes["rejected"] > 0, outcomes


def test_200_mutants_never_crash_the_runtime(float_tflite: Path, tmp_path: Path) -> None:
    report = run_fuzzer([SHIPPED, float_tflite], count=200, seed=2024, out=tmp_path / "fuzz.json", timeout_s=240)
    assert_no_bad_outcome(report)
    assert set(report["by_mutation"]) >= {"bitflip", "truncate", "splice", "targeted"}


def test_the_fuzzer_sees_crashes(tmp_path: Path) -> None:
    """The harness itself is trusted only if it can see a crash: the bare interpreter (``--target raw``) on
    mutants of the shipped model is taken down by some of them, and the fuzzer says so."""
    path = tmp_path / "segv.tflite"
    work = tmp_path / "work"
    work.mkdir()
    from test_models import _set_quantization

    data = _set_quantization(SHIPPED.read_bytes(), 10, scale=1.1e-44)  # a SIGSEGV the fuzzer found
    path.write_bytes(data)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import fuzz_tflite as f; "
            "print(f.run_one(open(sys.argv[2], 'rb').read(), sys.argv[3], sys.argv[4], 60)[0])")
    for target, expected in (("raw", "crash"), ("runtime", "rejected")):
        done = subprocess.run([sys.executable, "-c", code, str(REPO / "benchmarks"), str(path), str(work), target],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.stdout.strip() == expected, (target, done.stdout, done.stderr[-500:])


@pytest.mark.slow
def test_5000_mutants_never_crash_the_runtime(float_tflite: Path, tmp_path: Path) -> None:
    report = run_fuzzer([SHIPPED, float_tflite], count=5000, seed=7, out=tmp_path / "fuzz.json", timeout_s=7200)
    assert_no_bad_outcome(report)
