"""pi/compare.py, the verdict of ``make test-pi``: arm64 runs against the x86-64 reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
XNNPACK = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
IMAGES = [{"path": "images/a.png", "text": "42", "digits": [{"label": 4, "confidence": 0.9531, "box": [1, 2, 3, 4]},
                                                              {"label": 2, "confidence": 0.5, "box": [9, 2, 3, 4]}]},
          {"path": "images/blank.png", "text": "", "digits": []},
          {"path": "images/bad.png", "error": "not an image"}]
FRAMES = [{"frame": i, "text": "7", "stable": i > 1, "digits": [{"label": 7, "confidence": 0.9, "box": [5, 5, 9, 9]}],
           "latency_ms": 3.0 + i} for i in range(4)]


def _write(folder: Path, images: list[dict], frames: list[dict], mjpg: list[dict], err: str = XNNPACK) -> None:
    folder.mkdir(parents=True)
    (folder / "platform.txt").write_text("test\n")
    for kind, rows in (("classify", images), ("camera", frames), ("camera-mjpg", mjpg)):
        (folder / f"m.{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "m.classify.err").write_text(err)


def _run(results: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "pi" / "compare.py"), str(results)], capture_output=True,
                          text=True)


def _copy(rows: list[dict]) -> list[dict]:
    return json.loads(json.dumps(rows))


def test_identical_runs_and_one_step_confidences_pass(tmp_path: Path) -> None:
    _write(tmp_path / "x86", IMAGES, FRAMES, FRAMES)
    images = _copy(IMAGES)
    images[0]["digits"][0]["confidence"] = 0.957  # one 1/256 step, as rounded to 4 decimals
    frames = _copy(FRAMES)
    for f in frames:
        f["latency_ms"] *= 40  # timings are never compared
    _write(tmp_path / "bookworm" / "pi3", images, frames, frames)
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "| bookworm/pi3 | m | classify | 3 | 3 | 3 | 3 | 1/2 | 1 | 0.0039 | ok |" in done.stdout
    assert "| bookworm/pi3 | m | camera | 4 | 4 | 4 | 4 | 4/4 | 0 | 0.0000 | ok |" in done.stdout


@pytest.mark.parametrize(("kind", "change", "message"), [
    ("classify", lambda r: r[0].update(text="43"), "images/a.png: read '42' on x86, '43' here"),
    ("classify", lambda r: r[0]["digits"][1].update(box=[10, 2, 3, 4]), "images/a.png: boxes"),
    ("classify", lambda r: r[0]["digits"][1].update(label=3), "images/a.png: classes [4, 2] on x86, [4, 3] here"),
    ("classify", lambda r: r[0]["digits"][1].update(confidence=0.5079), "confidence 0.5 on x86, 0.5079 here"),
    ("classify", lambda r: r.pop(), "images differ: ['images/bad.png']"),
    ("camera", lambda r: r[2].update(stable=False), "frame 2: '7' on x86, frame 2 '7' here"),
    ("camera", lambda r: r.pop(), "4 frames on x86, 3 here"),
])
def test_a_difference_fails_and_is_named(tmp_path: Path, kind: str, change, message: str) -> None:
    _write(tmp_path / "x86", IMAGES, FRAMES, FRAMES)
    rows = {"classify": _copy(IMAGES), "camera": _copy(FRAMES)}
    change(rows[kind])
    _write(tmp_path / "bookworm" / "pi4", rows["classify"], rows["camera"], FRAMES)
    done = _run(tmp_path)
    assert done.returncode == 1
    assert "DIFFERENT" in done.stdout
    assert message in done.stdout


def test_mjpg_differences_are_reported_not_failed(tmp_path: Path) -> None:
    _write(tmp_path / "x86", IMAGES, FRAMES, FRAMES)
    mjpg = _copy(FRAMES)
    mjpg[1]["digits"][0]["box"] = [6, 5, 9, 9]
    _write(tmp_path / "bookworm" / "pi5", IMAGES, FRAMES, mjpg)
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "| camera-mjpg | 4 | 4 | 3 | 4 | 3/3 | 0 | 0.0000 | reported (1 differences) |" in done.stdout


def test_no_xnnpack_or_no_reference_fails(tmp_path: Path) -> None:
    assert _run(tmp_path).returncode == 1  # no x86 runs at all
    _write(tmp_path / "x86", IMAGES, FRAMES, FRAMES)
    _write(tmp_path / "bookworm" / "pi3", IMAGES, FRAMES, FRAMES, err="")
    done = _run(tmp_path)
    assert done.returncode == 1
    assert "bookworm/pi3: LiteRT did not create its XNNPACK delegate (is /sys mounted?)" in done.stdout
