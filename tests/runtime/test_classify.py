"""DigitClassifier and ``digitkit classify`` on generated images with the tiny fixture model.

The tiny model (2 epochs on synthetic digits) is not a good reader, so the photo tests write the tiles it
reads right as raw 28x28 inputs: then any wrong reading is the preprocessing's fault, not the model's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from synth import synth_digits
from typer.testing import CliRunner

import digitkit.runtime.classifier as classifier_mod
from digitkit.cli import app
from digitkit.runtime import DigitClassifier, InferenceError
from digitkit.runtime.classifier import ClassifyConfig, ReadError, Reading, expand_paths
from digitkit.runtime.preprocess import mnist_normalise

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from photos import make_photo, make_shapes_photo, tight_crop  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def clf(tiny_int8_tflite: Path) -> DigitClassifier:
    return DigitClassifier(model_path=tiny_int8_tflite, min_confidence=0.0)


@pytest.fixture(scope="module")
def good_tiles(clf: DigitClassifier) -> dict[int, list[np.ndarray]]:
    """Per label, synthetic tiles, MNIST-normalised, that the tiny model reads right (confidently)."""
    x, y = synth_digits(600, 11)
    x = np.stack([mnist_normalise(np.where(t > 40, t, 0).astype(np.uint8)) for t in x])
    p = clf.model.predict_proba(x)
    ok = (p.argmax(1) == y) & (p.max(1) > 0.6)
    tiles = {d: [x[i] for i in np.nonzero(ok & (y == d))[0]] for d in range(10)}
    return {d: t for d, t in tiles.items() if len(t) >= 3}


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory,
              good_tiles: dict[int, list[np.ndarray]]) -> tuple[Path, dict[str, str]]:
    """Camera-like photos (JPEG and PNG, nested folders) of known numbers, plus blank pages."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(21)
    labels = sorted(good_tiles)
    truth: dict[str, str] = {}
    for i in range(16):
        k = 0 if i % 5 == 4 else 1 + i % 4
        digits = [labels[int(rng.integers(len(labels)))] for _ in range(k)]
        tiles = [good_tiles[d][int(rng.integers(len(good_tiles[d])))] for d in digits]
        photo, _ = make_photo(tiles, rng)
        folder = root if i < 6 else root / "sub" if i < 11 else root / "sub" / "deeper"
        path = folder / f"photo{i:02d}.{'jpg' if i % 2 else 'png'}"
        cv2.imwrite(str(path), photo)
        truth[str(path)] = "".join(map(str, digits))
    return root, truth


def test_photos_are_read_exactly(clf: DigitClassifier, photo_dir: tuple[Path, dict[str, str]]) -> None:
    root, truth = photo_dir
    readings = {r.path: r for r in clf.classify_many(expand_paths([root]))}
    assert set(readings) == set(truth)  # recursive folder walk found every image
    right = sum(readings[p].text == t for p, t in truth.items())
    assert right >= len(truth) - 1, {p: (readings[p].text, t) for p, t in truth.items() if readings[p].text != t}
    for p, t in truth.items():
        if t == "":
            assert readings[p].digits == ()  # never a digit on a blank page


def test_reading_structure(clf: DigitClassifier, photo_dir: tuple[Path, dict[str, str]]) -> None:
    path = next(p for p, t in photo_dir[1].items() if len(t) >= 2)
    r = clf.classify(path)
    assert isinstance(r, Reading) and r.path == path
    assert r.text == "".join(str(d.label) for d in r.digits)
    assert [d.box[0] for d in r.digits] == sorted(d.box[0] for d in r.digits)
    d = r.to_dict()
    assert list(d) == ["path", "text", "digits"]
    assert all(list(x) == ["label", "confidence", "box"] and len(x["box"]) == 4 for x in d["digits"])
    with pytest.raises(AttributeError):
        r.text = "x"  # type: ignore[misc]  # frozen


def test_numpy_arrays_gray_bgr_and_inverted(clf: DigitClassifier, good_tiles: dict[int, list[np.ndarray]]) -> None:
    rng = np.random.default_rng(4)
    digits = sorted(good_tiles)[:3]
    photo, _ = make_photo([good_tiles[d][0] for d in digits], rng)
    want = "".join(map(str, digits))
    assert clf.classify(photo).text == want
    assert clf.classify(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)).text == want
    assert clf.classify(cv2.bitwise_not(photo)).text == want  # light ink on a dark board


@pytest.mark.parametrize("height", [24, 32])
def test_a_tight_crop_only_24_px_tall_reads_as_the_photo_does(clf: DigitClassifier,
                                                              good_tiles: dict[int, list[np.ndarray]],
                                                              height: int) -> None:
    """Issue 12's smallest layout: a crop cut round the number, the digits 24 px tall, JPEG-saved."""
    rng = np.random.default_rng(8)
    digits = sorted(good_tiles)[:3]
    photo, boxes = make_photo([good_tiles[d][0] for d in digits], rng)
    crop = tight_crop(photo, boxes, height)
    assert crop.shape[0] == pytest.approx(1.5 * height, abs=2) and crop.shape[0] < 60
    assert clf.classify(crop).text == clf.classify(photo).text == "".join(map(str, digits))
    blank, _ = make_photo([], rng)
    assert clf.classify(tight_crop(blank, [], height)).text == ""  # a crop of blank paper


def test_mnist_tiles_reach_the_model_unharmed(clf: DigitClassifier, tmp_path: Path) -> None:
    x, _ = synth_digits(200, 1)
    x[:, :2, :] = x[:, -2:, :] = x[:, :, :2] = x[:, :, -2:] = 0  # MNIST's empty frame
    want = clf.model.predict(x)
    for name, imgs in (("plain", x), ("inverted", 255 - x)):
        folder = tmp_path / name
        folder.mkdir()
        for i, img in enumerate(imgs):
            cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        got = [r.text for r in clf.classify_many(expand_paths([folder]))]
        blank = sum(t == "" for t in got)
        assert blank <= 2  # only near-empty synthetic tiles
        agree = np.mean([g == str(w) for g, w in zip(got, want, strict=True) if g != ""])
        assert agree == 1.0, name


def test_blank_and_non_digit_images(clf: DigitClassifier, tiny_int8_tflite: Path) -> None:
    assert clf.classify(np.zeros((28, 28), np.uint8)).text == ""
    assert clf.classify(np.full((480, 640, 3), 200, np.uint8)).text == ""
    strict = DigitClassifier(model_path=tiny_int8_tflite)  # default threshold
    rng = np.random.default_rng(1)
    from photos import shape_mask

    for kind in ("disk", "square"):  # filled shapes fail the stroke-width rule at any confidence
        sheet = np.full((480, 640), 210, np.float32)
        sheet[100:260, 200:360] *= 1 - 0.8 * shape_mask(kind, rng, 160)
        assert clf.classify(sheet.astype(np.uint8)).digits == (), kind
    photo, _ = make_shapes_photo(rng, 3)
    assert len(strict.classify(photo).digits) <= 3


def test_interpreter_is_loaded_once_and_batched(tiny_int8_tflite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    real = classifier_mod.TFLiteModel

    def counting(*a: object, **k: object) -> object:
        made.append(1)
        return real(*a, **k)

    monkeypatch.setattr(classifier_mod, "TFLiteModel", counting)
    clf = DigitClassifier(model_path=tiny_int8_tflite, batch_size=32)
    calls = []
    predict = clf.model.predict_proba
    monkeypatch.setattr(clf.model, "predict_proba", lambda x, **k: calls.append(len(x)) or predict(x, **k))
    x, _ = synth_digits(100, 3)
    results = list(clf.classify_many(list(x)))
    assert len(results) == 100 and len(made) == 1
    assert len(calls) <= 4 and sum(calls) == 100


def test_errors_are_values_and_the_run_goes_on(clf: DigitClassifier, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.zeros((28, 28), np.uint8))
    out = list(clf.classify_many(expand_paths([bad, good, tmp_path / "missing.png", str(tmp_path / "*.gif")])))
    assert [type(r) for r in out] == [ReadError, Reading, ReadError, ReadError]
    assert "not an image" in out[0].error and "no such file" in out[2].error and "no file matches" in out[3].error
    with pytest.raises(InferenceError, match="bad.png"):
        clf.classify(bad)
    with pytest.raises(InferenceError, match="not an image"):
        clf.classify(np.zeros((3, 3, 9), np.uint8))


def test_missing_shipped_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from digitkit.runtime import reading

    monkeypatch.setattr(reading, "MODELS_DIR", tmp_path)  # where resolve_model looks
    with pytest.raises(InferenceError, match="the shipped 'fast' model .* is missing from this installation"):
        DigitClassifier(model_path=None)
    with pytest.raises(InferenceError, match="not found"):
        DigitClassifier(model_path=tmp_path / "other.tflite")
    assert ClassifyConfig().min_confidence == classifier_mod.DEFAULT_MIN_CONFIDENCE


# --- the verb ---


def test_cli_json_lines_exact_schema(tiny_int8_tflite: Path, photo_dir: tuple[Path, dict[str, str]]) -> None:
    root, truth = photo_dir
    res = runner.invoke(app, ["classify", str(root), "--model", str(tiny_int8_tflite), "--json",
                              "--min-confidence", "0", "--threads", "1"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == len(truth)
    for obj in lines:
        assert list(obj) == ["path", "text", "digits"]
        assert isinstance(obj["text"], str) and obj["text"] == "".join(str(d["label"]) for d in obj["digits"])
        for d in obj["digits"]:
            assert set(d) == {"label", "confidence", "box"} and isinstance(d["label"], int)
            assert 0.0 <= d["confidence"] <= 1.0 and all(isinstance(v, int) for v in d["box"])
    assert sum(obj["text"] == truth[obj["path"]] for obj in lines) >= len(truth) - 1


def test_cli_table_glob_and_failures(tiny_int8_tflite: Path, photo_dir: tuple[Path, dict[str, str]],
                                     tmp_path: Path) -> None:
    root, truth = photo_dir
    res = runner.invoke(app, ["classify", str(root / "*.png"), "--model", str(tiny_int8_tflite)],
                        env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "photo00.png" in res.stdout and "photo01.jpg" not in res.stdout
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    res = runner.invoke(app, ["classify", str(bad), str(root / "photo00.png"), "--model", str(tiny_int8_tflite),
                              "--json"])
    assert res.exit_code == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert list(lines[0]) == ["path", "error"] and lines[0]["path"] == str(bad)
    assert list(lines[1]) == ["path", "text", "digits"]


def test_cli_bad_model_and_backend(tiny_int8_tflite: Path, tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((28, 28), np.uint8))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    res = runner.invoke(app, ["classify", str(img), "--model", str(junk)])
    assert res.exit_code == 2 and "not a loadable TFLite model" in res.output
    res = runner.invoke(app, ["classify", str(img), "--model", str(tiny_int8_tflite), "--backend", "tensorflow"])
    assert res.exit_code == 2 and "unknown backend" in res.output
    res = runner.invoke(app, ["classify", str(img), "--model", str(tiny_int8_tflite), "--backend", "litert", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["text"] == ""


def test_cli_save_annotated(tiny_int8_tflite: Path, photo_dir: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, truth = photo_dir
    out = tmp_path / "annotated"
    res = runner.invoke(app, ["classify", str(root), "--model", str(tiny_int8_tflite), "--json",
                              "--save-annotated", str(out)])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == len(truth) and not any(n.startswith(".") for n in written)  # no temp files left
    path = next(p for p, t in truth.items() if t)
    original = cv2.imread(path)
    annotated = cv2.imread(str(out / Path(path).name))
    assert annotated.shape == original.shape
    assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100  # boxes were drawn


def test_big_photos_are_scaled_down_and_boxes_come_back_in_original_pixels(
        clf: DigitClassifier, good_tiles: dict[int, list[np.ndarray]]) -> None:
    rng = np.random.default_rng(8)
    digits = sorted(good_tiles)[-2:]
    photo, boxes = make_photo([good_tiles[d][1] for d in digits], rng)
    big = cv2.resize(photo, (3200, 2400), interpolation=cv2.INTER_LINEAR)  # 5x: a phone camera
    r = clf.classify(big)
    assert r.text == "".join(map(str, digits))
    for d, (x, y, w, h) in zip(r.digits, boxes, strict=True):
        assert abs(d.box[0] - 5 * x) < 40 and abs(d.box[1] - 5 * y) < 40
        assert abs(d.box[2] - 5 * w) < 60 and abs(d.box[3] - 5 * h) < 60


def test_folders_are_walked_lazily_in_sorted_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rel in ("a.png", "a/x.png", "a-b.png", "a/b/c.jpg", "a.b/y.PNG", "B.png", "z/notes.txt", "_.png", "a/ü.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    want = sorted(str(f) for f in tmp_path.rglob("*") if f.suffix.lower() in classifier_mod.IMAGE_SUFFIXES)
    assert list(expand_paths([tmp_path])) == want  # the order sorted(rglob) gave, "a.png" before "a/x.png"
    listed = []
    real = classifier_mod.os.scandir
    monkeypatch.setattr(classifier_mod.os, "scandir", lambda p: listed.append(p) or real(p))
    walk = expand_paths([tmp_path])
    assert next(walk) == str(tmp_path / "B.png") and listed == [str(tmp_path)]  # one folder listed so far
    assert [type(r) for r in expand_paths([tmp_path / "empty"])] == [ReadError]


def test_a_killed_writers_temp_files_are_not_read_as_images(tmp_path: Path) -> None:
    from digitkit.runtime.fileio import temp_beside

    (tmp_path / "a.png").write_bytes(b"x")
    leftover = temp_beside(tmp_path / "b.png")  # what a writer killed mid-write leaves: ".b.png.tmp.PID.XXX.png"
    assert leftover.exists() and leftover.suffix == ".png"
    assert list(expand_paths([tmp_path])) == [str(tmp_path / "a.png")]
    assert list(expand_paths([str(tmp_path / "*.png"), str(tmp_path / ".*.png")])) == [
        str(tmp_path / "a.png"), ReadError(str(tmp_path / ".*.png"), "no file matches this pattern")]


def test_the_models_not_a_digit_answer_rejects_a_candidate(tiny_nad_int8_tflite: Path) -> None:
    """A model with an 11th "not a digit" output and nothing describing it follows digitkit's convention (index
    10, rejected at 0.5); a candidate is dropped when that answer reaches the threshold, and a kept one is
    labelled with the best *digit*, never with "not a digit"."""
    from digitkit.runtime.segment import Segment

    clf = DigitClassifier(model_path=tiny_nad_int8_tflite, min_confidence=0.0)
    md = clf.model.metadata
    assert (md.not_a_digit, md.reject_threshold, md.labels[-1]) == (10, 0.5, "not a digit")
    tile = np.zeros((28, 28), np.uint8)
    tile[4:24, 12:16] = 255  # a stroke: passes the stroke-width rule
    segs = [Segment(box=(0, 0, 10, 20), tile=tile)] * 3
    probs = np.zeros((3, 11), np.float32)
    probs[0, [3, 10]] = 0.45, 0.55  # "not a digit" at the threshold and above: rejected
    probs[1, [3, 10]] = 0.2, 0.49  # below the threshold: a 3, though "not a digit" is its likeliest answer
    probs[2, [7, 10]] = 0.9, 0.1
    reading = clf._reading("x", segs, probs)
    assert reading.text == "37" and [d.confidence for d in reading.digits] == pytest.approx([0.2, 0.9])
    real = clf.model.predict_proba(np.stack([tile] * 2))
    assert real.shape == (2, 11) and np.allclose(real.sum(1), 1.0, atol=0.05)


def test_shipped_models_are_chosen_by_short_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tiny_int8_tflite: Path) -> None:
    from digitkit.runtime import reading as mod

    assert mod.resolve_model(None) == mod.resolve_model("fast") == mod.DEFAULT_MODEL
    assert mod.resolve_model("my.tflite") == Path("my.tflite")  # anything else is a path
    monkeypatch.setattr(mod, "MODELS_DIR", tmp_path)
    with pytest.raises(InferenceError, match="the shipped 'accurate' model .* is missing from this installation"):
        mod.resolve_model("accurate")
    (tmp_path / mod.SHIPPED_MODELS["accurate"]).write_bytes(tiny_int8_tflite.read_bytes())
    assert DigitClassifier(model_path="accurate").model.path == tmp_path / mod.SHIPPED_MODELS["accurate"]
    result = runner.invoke(app, ["classify", str(tmp_path / "nothing.png"), "--model", "accurate", "--json"])
    assert result.exit_code == 1 and "nothing.png" in result.stdout  # the named model loaded; the file is missing
