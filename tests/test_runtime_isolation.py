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
