"""The runtime stands alone: importing it never loads TensorFlow, and ``digitkit classify`` works in a
process where TensorFlow cannot be imported at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _env(extra_path: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path
    return env


def test_importing_runtime_leaves_tensorflow_out() -> None:
    code = ("import sys, digitkit.runtime, digitkit.runtime.classifier, digitkit.runtime.cli, "
            "digitkit.runtime.preprocess, digitkit.runtime.segment, digitkit.runtime.draw\n"
            "from digitkit.runtime import DigitClassifier\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') "
            "or m.startswith(('digitkit.toolkit', 'digitkit.converters')))\n"
            "print(repr(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_classify_runs_when_tensorflow_cannot_be_imported(tmp_path: Path, tiny_int8_tflite: Path) -> None:
    shadow = tmp_path / "shadow"
    for name in ("tensorflow", "keras"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this device')\n")
    from synth import synth_digits

    from digitkit.runtime.classifier import DigitClassifier

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160), 220, np.uint8))
    digit = tmp_path / "digit.png"
    x, _ = synth_digits(1, 4)
    cv2.imwrite(str(digit), 255 - x[0])
    want = DigitClassifier(model_path=tiny_int8_tflite, min_confidence=0.0).classify(digit).to_dict()
    # The console script and the Python twin, both with TensorFlow unimportable.
    res = subprocess.run([str(BIN / "digitkit"), "classify", str(blank), str(digit), "--model", str(tiny_int8_tflite),
                          "--json", "--min-confidence", "0"],
                         capture_output=True, text=True, env=_env(str(shadow)), cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0] == {"path": str(blank), "text": "", "digits": []}
    assert lines[1] == want and len(want["text"]) == 1
    code = ("import sys\n"
            "import tensorflow\n")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(str(shadow)))
    assert probe.returncode != 0 and "not installed on this device" in probe.stderr  # the shadow really bites
    code = ("import sys, numpy as np\n"
            "from digitkit.runtime import DigitClassifier\n"
            f"r = DigitClassifier(model_path={str(tiny_int8_tflite)!r}).classify(np.zeros((28, 28), np.uint8))\n"
            "assert 'tensorflow' not in sys.modules\n"
            "print(r.to_dict())")
    twin = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(str(shadow)))
    assert twin.returncode == 0, twin.stderr
    assert "'text': ''" in twin.stdout


TRAINING_SIDE = ("digitkit.toolkit", "digitkit.converters", "tensorflow", "keras", "matplotlib")
# Runs the console script's main() in-process and, at exit, lists what it loaded.
_RUN_AND_LIST = ("import atexit, json, sys\n"
                 "listing = sys.argv[1]\n"
                 "atexit.register(lambda: open(listing, 'w').write(json.dumps(sorted(sys.modules))))\n"
                 "sys.argv = ['digitkit', *sys.argv[2:]]\n"
                 "from digitkit.cli import main\n"
                 "main()\n")


def _loaded(tmp_path: Path, *args: str, shadow: Path | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    listing = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", _RUN_AND_LIST, str(listing), *args], capture_output=True, text=True,
                          env=_env(str(shadow) if shadow else None), cwd=tmp_path, timeout=120)
    return done, json.loads(listing.read_text())


def _shadow(tmp_path: Path) -> Path:
    """A folder that makes TensorFlow, Keras and matplotlib unimportable: a runtime-only install."""
    shadow = tmp_path / "shadow"
    for name in ("tensorflow", "keras", "matplotlib"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this device')\n")
    return shadow


def test_device_verbs_load_nothing_from_the_training_side(tmp_path: Path, tiny_int8_tflite: Path) -> None:
    image = tmp_path / "page.png"
    cv2.imwrite(str(image), np.full((80, 120), 230, np.uint8))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 230, np.uint8))
    writer.release()
    shadow = _shadow(tmp_path)
    for args in (["classify", str(image), "--json"], ["classify", str(image), "--model", str(tiny_int8_tflite)],
                 ["camera", "--source", str(video), "--json", "--max-frames", "2"]):
        done, modules = _loaded(tmp_path, *args, shadow=shadow)
        assert done.returncode == 0, (args, done.stderr)
        assert [m for m in modules if m.startswith(TRAINING_SIDE)] == [], args
        # Nothing but the verb's own output: no LiteRT "Created TensorFlow Lite XNNPACK delegate" line.
        assert done.stderr == "" or args[0] == "camera", (args, done.stderr)
        assert "XNNPACK" not in done.stderr + done.stdout and "INFO:" not in done.stderr
    # `digitkit models` answers from a static table: no TensorFlow either.
    done, modules = _loaded(tmp_path, "models", "--json", shadow=shadow)
    assert done.returncode == 0 and len(done.stdout.splitlines()) >= 6, done.stderr
    assert not [m for m in modules if m.startswith(("tensorflow", "keras"))]


def test_a_training_verb_on_a_runtime_only_install_is_one_error_line(tmp_path: Path) -> None:
    done, _ = _loaded(tmp_path, "train", "--out", str(tmp_path / "m.keras"), "--epochs", "1",
                      "--data-dir", str(tmp_path), shadow=_shadow(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: ")


def test_no_library_log_lines_reach_the_terminal(tmp_path: Path, tiny_keras_model: Path,
                                                 synth_data_dir: Path) -> None:
    """TensorFlow's absl/oneDNN/CUDA start-up lines and Keras warnings stay out of a training verb's stderr."""
    done = subprocess.run([str(BIN / "digitkit"), "evaluate", str(tiny_keras_model), "--data-dir",
                           str(synth_data_dir), "--json"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout is exactly one JSON object
    assert done.stderr == "", done.stderr
    # ...while the libraries do print them when the filter is off (so the assertion above can fail).
    loud = subprocess.run([str(BIN / "digitkit"), "evaluate", str(tiny_keras_model), "--data-dir",
                           str(synth_data_dir), "--json"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "DIGITKIT_LIBRARY_LOGS": "1"})
    assert loud.returncode == 0 and ("absl" in loud.stderr or "I0000" in loud.stderr or "oneDNN" in loud.stderr)
