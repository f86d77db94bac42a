"""A model is one file: what the runtime needs is embedded in the .tflite, records for people never collide, the
conversion record keeps the training record, and two conversions to the same --out cannot mix their files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from digitkit.cli import app
from digitkit.converters.flatbuffer import embed_metadata
from digitkit.converters.report import describes
from digitkit.runtime.classifier import DEFAULT_MODEL, DigitClassifier
from digitkit.runtime.interpreter import METADATA_NAME, ModelMetadata, TFLiteModel, encode_metadata, read_embedded

runner = CliRunner()
BIN = Path(sys.executable).parent


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_then_convert_to_the_same_stem_keeps_both_records(tmp_path: Path, synth_data_dir: Path) -> None:
    model = tmp_path / "m.keras"
    result = runner.invoke(app, ["train", "--out", str(model), "--arch", "tiny", "--epochs", "1",
                                 "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 0, result.output
    training = (tmp_path / "m.keras.json").read_text()
    result = runner.invoke(app, ["convert", str(model), "--out", str(tmp_path / "m.tflite"),
                                 "--data-dir", str(synth_data_dir), "--max-drop", "100"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.json", "m.tflite", "m.tflite.json"]
    assert (tmp_path / "m.keras.json").read_text() == training  # untouched
    record = json.loads((tmp_path / "m.tflite.json").read_text())
    assert record["provenance"]["training"] == json.loads(training)
    assert record["provenance"]["training"]["epochs"] == 1 and "test_accuracy" in record["provenance"]["training"]
    assert record["model_sha256"] == _sha(tmp_path / "m.tflite") and describes(tmp_path / "m.tflite.json",
                                                                               tmp_path / "m.tflite")


def test_a_model_copied_alone_classifies_with_the_same_metadata(tmp_path: Path) -> None:
    # A model whose metadata is not the defaults, so reading them from anywhere else would show.
    custom = ModelMetadata(labels=tuple("abcdefghijk"), not_a_digit=10, reject_threshold=0.4,
                           extra={"future_rule": {"min_score": 0.5}})  # 11 labels: the shipped model's outputs
    origin = tmp_path / "origin"
    origin.mkdir()
    model = origin / "custom.tflite"
    model.write_bytes(embed_metadata(DEFAULT_MODEL.read_bytes(), METADATA_NAME, encode_metadata(custom)))
    (origin / "custom.json").write_text('{"runtime": {"labels": ["x"]}}')  # another tool's file: never read
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "renamed.tflite"
    shutil.copy(model, copy)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["renamed.tflite"]
    assert TFLiteModel(copy).metadata == TFLiteModel(model).metadata == custom
    assert TFLiteModel(copy).metadata.to_dict()["future_rule"] == {"min_score": 0.5}  # unknown fields travel
    # The shipped model too: alone in another folder it reads a digit exactly as in place.
    shipped = elsewhere / "shipped.tflite"
    shutil.copy(DEFAULT_MODEL, shipped)
    from synth import synth_digits

    x, _ = synth_digits(1, 3)
    digit = tmp_path / "digit.png"
    cv2.imwrite(str(digit), 255 - x[0])
    here = DigitClassifier(model_path=DEFAULT_MODEL, min_confidence=0.0).classify(digit).to_dict()
    there = DigitClassifier(model_path=shipped, min_confidence=0.0).classify(digit).to_dict()
    assert here == there and len(here["text"]) == 1
    embedded = read_embedded(DEFAULT_MODEL.read_bytes())
    assert embedded is not None and TFLiteModel(shipped).metadata == ModelMetadata.from_dict(embedded["runtime"])


def test_metadata_round_trips_every_field_generically() -> None:
    meta = ModelMetadata(labels=("0", "1"), input_size=(32, 32), polarity="black-on-white", output="logits",
                         extra={"reject_below": 0.2})
    assert ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    assert ModelMetadata.from_dict(meta.to_dict()).extra == {"reject_below": 0.2}
    assert set(ModelMetadata().to_dict()) == {"labels", "input_size", "polarity", "normalisation", "output",
                                              "not_a_digit", "reject_threshold"}


def test_two_conversions_to_the_same_out_never_mix_model_and_record(tmp_path: Path, tiny_keras_model: Path,
                                                                    synth_data_dir: Path) -> None:
    out = tmp_path / "same.tflite"
    env = {**os.environ, "DIGITKIT_CACHE_DIR": "off"}
    runs = [subprocess.Popen([str(BIN / "digitkit"), "convert", str(tiny_keras_model), "--out", str(out),
                              "--data-dir", str(synth_data_dir), "--mode", mode, "--max-drop", "100", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for mode in ("int8", "float32")]
    reports = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr.decode()
        reports.append(json.loads(stdout))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.tflite", "same.tflite.json"]
    record = json.loads((tmp_path / "same.tflite.json").read_text())
    embedded = read_embedded(out.read_bytes())
    assert record["model_sha256"] == _sha(out)
    assert record["report"]["mode"] == embedded["conversion"]["mode"] == record["provenance"]["config"]["mode"]
    # The worst a kill between the two renames can leave: the other run's record beside this model. It names a
    # different sha256, so it is told apart, and the runtime reads the model's own metadata regardless.
    other = next(r for r in reports if r["mode"] != record["report"]["mode"])
    stale = dict(record, model_sha256="0" * 64, report=other)
    (tmp_path / "same.tflite.json").write_text(json.dumps(stale))
    assert not describes(tmp_path / "same.tflite.json", out)
    meta = TFLiteModel(out).metadata
    assert (meta.labels[-1], meta.not_a_digit) == ("not a digit", 10)  # the tiny model says "not a digit" too
    assert meta.reject_threshold == record["runtime"]["reject_threshold"] is not None  # measured on this model
    x = np.zeros((1, 28, 28), np.uint8)
    assert TFLiteModel(out).predict_proba(x).shape == (1, 11)
