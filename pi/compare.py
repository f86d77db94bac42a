"""Compare the arm64 runs of ``make test-pi`` with the x86-64 run: readings, boxes and classes must be
identical, confidences may differ by one output step (1/256: LiteRT's int8 softmax rounds differently on arm).

    python3 pi/compare.py .pi/results [--summary .pi/results/summary.md]

``results/x86/`` is the reference; every other ``results/DISTRO/PROFILE/`` is compared with it, model by model
(``MODEL.classify.jsonl``, ``MODEL.camera.jsonl`` from a lossless video; ``MODEL.camera-mjpg.jsonl`` from the
MJPG one is reported only, since FFmpeg decodes MJPG to other pixels on arm). Prints one table row per
distro, profile, model and kind and writes the same as Markdown; exit 1 if anything differs beyond the
tolerance or a run is missing. Stdlib only: it runs with the host's system python3.
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

STEP = 1 / 256  # one step of a uint8 softmax output (scale 1/256)
ROUNDING = 1e-4  # the JSON rounds confidences to 4 decimals


@dataclass
class Tally:
    """What one comparison found (mutable: filled line by line)."""

    items: int = 0  # images or frames compared
    same_text: int = 0
    same_boxes: int = 0
    same_classes: int = 0
    digits: int = 0  # digits compared (where the boxes agree)
    conf_same: int = 0
    conf_one_step: int = 0
    conf_max_diff: float = 0.0  # the largest confidence difference among the compared digits
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.same_text == self.same_boxes == self.same_classes == self.items


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _compare_digits(key: str, ref: list[dict], got: list[dict], t: Tally) -> None:
    boxes = [d["box"] for d in ref] == [d["box"] for d in got]
    classes = [d["label"] for d in ref] == [d["label"] for d in got]
    t.same_boxes += boxes
    t.same_classes += classes
    if not boxes:
        t.problems.append(f"{key}: boxes {[d['box'] for d in ref]} on x86, {[d['box'] for d in got]} here")
    elif not classes:
        t.problems.append(f"{key}: classes {[d['label'] for d in ref]} on x86, {[d['label'] for d in got]} here")
    if not boxes:
        return
    for a, b in zip(ref, got, strict=True):
        t.digits += 1
        diff = abs(a["confidence"] - b["confidence"])
        t.conf_max_diff = max(t.conf_max_diff, diff)
        if diff <= ROUNDING:
            t.conf_same += 1
        elif diff <= STEP + ROUNDING:
            t.conf_one_step += 1
        else:
            t.problems.append(f"{key}: confidence {a['confidence']} on x86, {b['confidence']} here")


def compare_classify(ref: Path, got: Path) -> Tally:
    """Image by image (matched by path): the error, the reading, the boxes, the classes, the confidences."""
    t = Tally()
    want = {r["path"]: r for r in _lines(ref)}
    have = {r["path"]: r for r in _lines(got)}
    if set(want) != set(have):
        t.problems.append(f"images differ: {sorted(set(want) ^ set(have))[:5]}")
    for path in sorted(set(want) & set(have)):
        a, b = want[path], have[path]
        t.items += 1
        if "error" in a or "error" in b:
            same = a.get("error") == b.get("error")
            t.same_text += same
            t.same_boxes += same
            t.same_classes += same
            if not same:
                was, now = a.get("error", a.get("text")), b.get("error", b.get("text"))
                t.problems.append(f"{path}: {was!r} on x86, {now!r} here")
            continue
        t.same_text += a["text"] == b["text"]
        if a["text"] != b["text"]:
            t.problems.append(f"{path}: read {a['text']!r} on x86, {b['text']!r} here")
        _compare_digits(path, a["digits"], b["digits"], t)
    return t


def compare_camera(ref: Path, got: Path) -> Tally:
    """Frame by frame: the smoothed reading and its stability, the boxes, classes and confidences."""
    t = Tally()
    want, have = _lines(ref), _lines(got)
    if len(want) != len(have):
        t.problems.append(f"{len(want)} frames on x86, {len(have)} here")
    for a, b in zip(want, have, strict=False):
        t.items += 1
        same = a["frame"] == b["frame"] and a["text"] == b["text"] and a["stable"] == b["stable"]
        t.same_text += same
        if not same:
            t.problems.append(f"frame {a['frame']}: {a['text']!r} on x86, frame {b['frame']} {b['text']!r} here")
        _compare_digits(f"frame {a['frame']}", a["digits"], b["digits"], t)
    return t


def pytest_counts(junit: Path) -> str:
    """pytest's own summary line (with the deselected count) and why tests skipped, from the JUnit XML."""
    if not junit.is_file():
        return "not run"
    log = junit.with_name("pytest.log")
    lines = [x.strip("= ") for x in log.read_text().splitlines() if " in " in x and "passed" in x] if log.is_file() \
        else []
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    reasons = Counter((s.get("message") or "").split(": ", 1)[-1][:90] for s in suite.iter("skipped"))
    why = "; ".join(f"{c}: {r}" for r, c in reasons.most_common())
    head = lines[-1] if lines else f"{n - skipped - failed} passed, {skipped} skipped, {failed} failed"
    return head + (f" (skipped: {why})" if why else "")


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--summary", type=Path)
    args = ap.parse_args()
    ref_dir = args.results / "x86"
    models = sorted(p.name.removesuffix(".classify.jsonl") for p in ref_dir.glob("*.classify.jsonl"))
    if not models:
        print(f"error: no x86 reference runs in {ref_dir}", file=sys.stderr)
        return 1
    runs = sorted(p.parent for p in args.results.glob("*/*/platform.txt"))
    out = [f"x86-64 reference: {(ref_dir / 'platform.txt').read_text().strip()}", "",
           _row(["distro/profile", "model", "kind", "compared", "same reading", "same boxes", "same classes",
                 "confidences same", "one 1/256 step", "max confidence difference", "verdict"]),
           _row(["---"] * 11)]
    failed: list[str] = []
    notes: list[str] = []
    for run in runs:
        name = f"{run.parent.name}/{run.name}"
        seconds = (run / "seconds").read_text().strip() if (run / "seconds").is_file() else "?"
        # LiteRT says so on stderr when it creates the XNNPACK delegate (the trap: without /sys it does not).
        xnnpack = all("XNNPACK delegate" in p.read_text() for p in run.glob("*.classify.err"))
        notes.append(f"- {name}: {(run / 'platform.txt').read_text().strip()}; XNNPACK {'on' if xnnpack else 'OFF'}; "
                     f"{seconds} s; tests: {pytest_counts(run / 'pytest.xml')}")
        if not xnnpack:
            failed.append(f"{name}: LiteRT did not create its XNNPACK delegate (is /sys mounted?)")
        for model in models:
            for kind, fn in (("classify", compare_classify), ("camera", compare_camera),
                             ("camera-mjpg", compare_camera)):
                got = run / f"{model}.{kind}.jsonl"
                if not got.is_file():
                    failed.append(f"{name} {model} {kind}: no output")
                    continue
                t = fn(ref_dir / f"{model}.{kind}.jsonl", got)
                gated = kind != "camera-mjpg"  # MJPG decodes to other pixels on arm (FFmpeg): reported only
                verdict = ("ok" if t.ok else "DIFFERENT") if gated else f"reported ({len(t.problems)} differences)"
                out.append(_row([name, model, kind, t.items, t.same_text, t.same_boxes, t.same_classes,
                                 f"{t.conf_same}/{t.digits}", t.conf_one_step, f"{t.conf_max_diff:.4f}", verdict]))
                if gated:
                    failed += [f"{name} {model} {kind}: {p}" for p in t.problems[:10]]
    text = "\n".join(out + ["", *notes])
    if failed:
        text += "\n\nDifferences:\n" + "\n".join(f"- {f}" for f in failed)
    print(text)
    if args.summary:
        args.summary.write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
