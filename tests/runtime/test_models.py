"""Issue 7's model matrix: every kind of bad or unexpected model, through every verb that takes one, gives
one ``error:`` line and exit 2 -- or, for float-vs-int8 models, just works.

Rows: missing file; random bytes named .tflite; a truncated .tflite; a valid .tflite with the wrong input
or output; float and int8 models where the other is expected (and logits instead of probabilities); a
.keras that is really something else. Verbs: classify --model, camera --model, evaluate (.tflite and
.keras), bench, convert.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from digitkit.cli import app
from digitkit.runtime import modelcheck
from digitkit.runtime import probe as probe_mod
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.interpreter import TFLiteModel

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[2] / "runtime" / "models" / "digitkit_seed_int8.tflite"


def _tflite(model, out: Path, io: str | None = None, calibration: np.ndarray | None = None) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if io is not None:  # full integer with this interface type
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io]
    out.write_bytes(conv.convert())
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_digits_keras_model: Path,
           synth_test_arrays: tuple[np.ndarray, np.ndarray]) -> dict[str, Path]:
    """Valid .tflite files of every interface the runtime meets: float32, int8-in/int8-out, uint8 (the
    session's tiny model), a logits head without softmax, and two that are not digit models."""
    import keras

    folder = tmp_path_factory.mktemp("model_rows")
    tiny = keras.models.load_model(tiny_digits_keras_model, compile=False)
    calib = synth_test_arrays[0][:100].astype(np.float32)[..., None] / 255.0
    logits = keras.models.clone_model(tiny)  # same network and weights, but the softmax removed
    logits.set_weights(tiny.get_weights())
    logits.layers[-1].activation = keras.activations.linear

    def tiny_net(shape: tuple[int, ...], classes: int) -> keras.Model:
        inputs = keras.Input(shape=shape)
        return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(keras.layers.Flatten()(inputs)))

    return {
        "float32": _tflite(tiny, folder / "float32.tflite"),
        "int8": _tflite(tiny, folder / "int8io.tflite", "int8", calib),
        "logits": _tflite(logits, folder / "logits.tflite"),
        "rgb32": _tflite(tiny_net((32, 32, 3), 10), folder / "rgb32.tflite"),
        "five": _tflite(tiny_net((28, 28, 1), 5), folder / "five.tflite"),
    }


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    img = np.zeros((28, 28), np.uint8)
    cv2.putText(img, "3", (6, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 2)
    path = tmp_path_factory.mktemp("png") / "three.png"
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videos import synth_tiles, write_digit_video

    path = tmp_path_factory.mktemp("video") / "digits.avi"
    write_digit_video(path, ["42"], synth_tiles(), frames_per_number=3, seed=5)
    return path


def bad_models(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one error line must contain)."""
    random_bytes = folder / "random.tflite"
    random_bytes.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = folder / "truncated.tflite"
    truncated.write_bytes(SHIPPED.read_bytes()[:20_000])
    return {
        "random": (random_bytes, "not a loadable TFLite model (no TFL3 identifier at byte 4)"),
        "truncated": (truncated, "not a loadable TFLite model ("),
    }


def one_error_line(result, message: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


# ---- missing file -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["classify", "camera"])
def test_missing_model_file(verb: str, tmp_path: Path, digit_png: Path, video: Path) -> None:
    missing = tmp_path / "none.tflite"
    args = [str(digit_png)] if verb == "classify" else ["--source", str(video)]
    result = runner.invoke(app, [verb, *args, "--model", str(missing)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: model file {missing} not found; pass --model FILE.tflite"]


def test_missing_model_file_library() -> None:
    with pytest.raises(InferenceError, match="model file /nonexistent/m.tflite not found") as info:
        TFLiteModel("/nonexistent/m.tflite")
    assert info.value.exit_code == 2


# ---- random bytes / truncated .tflite, through every verb that loads a .tflite ---------------------------------

@pytest.mark.parametrize("row", ["random", "truncated"])
@pytest.mark.parametrize("verb", ["classify", "camera", "evaluate", "bench"])
def test_damaged_tflite_is_one_line_exit_2(verb: str, row: str, tmp_path: Path, digit_png: Path, video: Path,
                                           synth_data_dir: Path) -> None:
    model, message = bad_models(tmp_path)[row]
    args = {"classify": ["classify", str(digit_png), "--model", str(model)],
            "camera": ["camera", "--source", str(video), "--model", str(model)],
            "evaluate": ["evaluate", str(model), "--data-dir", str(synth_data_dir)],
            "bench": ["bench", str(model), "--data-dir", str(synth_data_dir), "--runs", "2", "--warmup", "0"]}[verb]
    result = runner.invoke(app, args)
    if verb == "classify":  # classify reports per image on stdout, errors on stderr: same contract
        assert result.exit_code == 2 and message in result.output, result.output
    else:
        one_error_line(result, f"{model}: {message}")


def test_truncations_are_all_refused_without_a_crash(tmp_path: Path) -> None:
    """Every cut of the shipped model, from 0 bytes to one byte short, is an InferenceError."""
    data = SHIPPED.read_bytes()
    for cut in (0, 1, 7, 8, 64, 1000, len(data) // 2, len(data) - 4096, len(data) - 1):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(InferenceError, match="empty|not a loadable TFLite model") as info:
            TFLiteModel(path)
        assert info.value.exit_code == 2


# ---- valid .tflite, wrong input or output --------------------------------------------------------------------

@pytest.mark.parametrize(("name", "message"), [
    ("rgb32", "input shape (1, 32, 32, 3) is not (N, 28, 28, 1); not a digit model"),
    ("five", "output shape (1, 5) does not give 10 classes"),
])
@pytest.mark.parametrize("verb", ["classify", "camera", "evaluate"])
def test_not_a_digit_model(verb: str, name: str, message: str, models: dict[str, Path], digit_png: Path,
                           video: Path, synth_data_dir: Path) -> None:
    model = models[name]
    args = {"classify": ["classify", str(digit_png), "--model", str(model)],
            "camera": ["camera", "--source", str(video), "--model", str(model)],
            "evaluate": ["evaluate", str(model), "--data-dir", str(synth_data_dir)]}[verb]
    result = runner.invoke(app, args)
    if verb == "classify":
        assert result.exit_code == 2 and f"{model}: {message}" in result.output, result.output
    else:
        one_error_line(result, f"{model}: {message}")


# ---- float where int8 is expected, and the other way round -------------------------------------------------

def test_every_interface_type_gives_the_same_readings(models: dict[str, Path], tiny_int8_tflite: Path,
                                                      tiny_digits_keras_model: Path,
                                                      synth_test_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    """float32 in/out, int8 in/out and uint8 in/out models of one network agree with Keras, from uint8
    pixels and from floats in [0, 1]."""
    import keras

    images = synth_test_arrays[0][:200]
    keras_probs = keras.models.load_model(tiny_digits_keras_model, compile=False).predict(
        images.astype(np.float32)[..., None] / 255.0, verbose=0)
    for name, path in (("float32", models["float32"]), ("int8", models["int8"]), ("uint8", tiny_int8_tflite)):
        model = TFLiteModel(path, threads=1)
        assert str(model.input_dtype) == name
        probs = model.predict_proba(images)
        assert probs.shape == (200, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=0.05)
        assert np.array_equal(probs, model.predict_proba(images.astype(np.float32) / 255.0))
        agree = float(np.mean(probs.argmax(1) == keras_probs.argmax(1)))
        assert agree >= (0.999 if name == "float32" else 0.95), (name, agree)
        if name == "float32":
            assert np.abs(probs - keras_probs).max() < 1e-4


@pytest.mark.parametrize("name", ["float32", "int8"])
@pytest.mark.parametrize("verb", ["classify", "camera", "evaluate"])
def test_float_and_int8_models_just_work_in_every_verb(verb: str, name: str, models: dict[str, Path],
                                                       digit_png: Path, video: Path, synth_data_dir: Path,
                                                       tiny_int8_tflite: Path) -> None:
    model = models[name]
    if verb == "evaluate":
        result = runner.invoke(app, ["evaluate", str(model), "--data-dir", str(synth_data_dir), "--json"])
        reference = runner.invoke(app, ["evaluate", str(tiny_int8_tflite), "--data-dir", str(synth_data_dir),
                                         "--json"])
        assert result.exit_code == 0 and reference.exit_code == 0, result.output
        import json

        got, ref = json.loads(result.stdout)["accuracy"], json.loads(reference.stdout)["accuracy"]
        assert abs(got - ref) <= 0.05, (got, ref)
        return
    args = ([str(digit_png)] if verb == "classify" else ["--source", str(video)])
    result = runner.invoke(app, [verb, *args, "--model", str(model), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() and "error" not in result.stderr
    if verb == "classify":
        import json

        assert json.loads(result.stdout)["path"] == str(digit_png)


def test_logits_without_embedded_metadata_become_probabilities(models: dict[str, Path], tmp_path: Path,
                                                       synth_test_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images = synth_test_arrays[0][:50]
    probs_model = TFLiteModel(models["float32"], threads=1)
    logits_model = TFLiteModel(models["logits"], threads=1)
    assert probs_model.metadata.output == "softmax" and logits_model.metadata.output == "logits"
    probs = logits_model.predict_proba(images)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(probs, probs_model.predict_proba(images), atol=1e-4)  # softmax(logits) == the softmax head
    # Metadata embedded in the model that says "softmax" is believed (the runtime does not second-guess the
    # converter); a file beside the model is not read at all.
    from digitkit.converters.flatbuffer import embed_metadata
    from digitkit.runtime.interpreter import METADATA_NAME, ModelMetadata, encode_metadata

    beside = tmp_path / "beside.tflite"
    shutil.copy(models["logits"], beside)
    beside.with_suffix(".json").write_text('{"runtime": {"output": "softmax"}}')
    beside.with_name(beside.name + ".json").write_text('{"runtime": {"output": "softmax"}}')
    assert TFLiteModel(beside).metadata.output == "logits"
    told = tmp_path / "told.tflite"
    told.write_bytes(embed_metadata(models["logits"].read_bytes(), METADATA_NAME, encode_metadata(ModelMetadata())))
    assert TFLiteModel(told).metadata.output == "softmax"


def test_damaged_embedded_metadata_is_one_error_naming_the_file(models: dict[str, Path], tmp_path: Path) -> None:
    from digitkit.converters.flatbuffer import embed_metadata
    from digitkit.runtime.interpreter import METADATA_NAME

    for i, payload in enumerate((b"{not json", b'{"runtime": 3}', b'{"runtime": {"input_size": "big"}}', b"\xff\xfe")):
        bad = tmp_path / f"bad{i}.tflite"
        bad.write_bytes(embed_metadata(models["int8"].read_bytes(), METADATA_NAME, payload))
        result = runner.invoke(app, ["classify", str(bad), "--model", str(bad)])
        assert result.exit_code == 2, (payload, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: the metadata embedded in the model is damaged")


# ---- .keras that is really something else ------------------------------------------------------------------

def fake_keras_files(folder: Path) -> dict[str, Path]:
    files = {}
    zipped = folder / "junk_zip.keras"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    files["zip with junk"] = zipped
    (folder / "text.keras").write_text("this is not a model\n")
    files["text"] = folder / "text.keras"
    h5 = folder / "weights_h5.keras"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(2048))  # an HDF5 signature and nothing that Keras can read
    files["h5"] = h5
    renamed = folder / "renamed.keras"
    shutil.copy(SHIPPED, renamed)
    files["tflite renamed"] = renamed
    return files


@pytest.mark.parametrize("row", ["zip with junk", "text", "h5", "tflite renamed"])
@pytest.mark.parametrize("verb", [pytest.param("evaluate", marks=pytest.mark.tensorflow),
                                  pytest.param("convert", marks=pytest.mark.tensorflow), "bench"])
def test_keras_that_is_something_else(verb: str, row: str, tmp_path: Path, synth_data_dir: Path) -> None:
    model = fake_keras_files(tmp_path)[row]
    args = {"evaluate": ["evaluate", str(model), "--data-dir", str(synth_data_dir)],
            "convert": ["convert", str(model), "--out", str(tmp_path / "out.tflite"), "--data-dir",
                        str(synth_data_dir)],
            "bench": ["bench", str(model), "--data-dir", str(synth_data_dir), "--runs", "2", "--warmup", "0"]}[verb]
    result = runner.invoke(app, args)
    one_error_line(result, f"{model}: not a readable Keras model")
    assert not (tmp_path / "out.tflite").exists()


# ---- the safe load itself ----------------------------------------------------------------------------------

def _set_quantization(data: bytes, tensor: int, scale: float | None = None, zero: int | None = None) -> bytes:
    """The model with one tensor's first scale or zero point overwritten in place."""
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(data)
    quant = schema.Model.GetRootAsModel(data, 0).Subgraphs(0).Tensors(tensor).Quantization()
    if scale is not None:
        at = quant._tab.Vector(quant._tab.Offset(8))
        buf[at:at + 4] = np.float32(scale).tobytes()
    if zero is not None:
        at = quant._tab.Vector(quant._tab.Offset(10))
        buf[at:at + 8] = np.int64(zero).tobytes()
    return bytes(buf)


def _crashes_the_bare_interpreter(path: Path) -> int:
    code = ("import sys; from ai_edge_litert.interpreter import Interpreter; "
            "i = Interpreter(model_path=sys.argv[1], num_threads=1); i.allocate_tensors()")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60).returncode


@pytest.mark.parametrize(("what", "edit", "message"), [
    ("subnormal input scale", {"scale": 1.1e-44}, "has quantization scale 1.1"),
    ("zero point out of uint8", {"zero": 99782525057}, "has zero point 99782525057, outside [0, 255]"),
])
def test_fuzzer_found_segfaults_are_refused(what: str, edit: dict, message: str, tmp_path: Path) -> None:
    """Two mutants the fuzzer found that SIGSEGV the bare interpreter in allocate_tensors."""
    bad = tmp_path / "bad.tflite"
    tensor = 10 if "scale" in edit else 0
    bad.write_bytes(_set_quantization(SHIPPED.read_bytes(), tensor, **edit))
    assert _crashes_the_bare_interpreter(bad) == -11, what  # the finding is real: the raw load segfaults
    with pytest.raises(InferenceError, match="not a loadable TFLite model") as info:
        TFLiteModel(bad)
    assert message in str(info.value) and info.value.exit_code == 2


def test_probe_turns_a_crash_and_a_hang_into_errors(monkeypatch: pytest.MonkeyPatch, models: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """What the flatbuffer walk cannot see is caught by the child: a crash and a hang there stay there."""
    monkeypatch.setenv("DIGITKIT_CACHE_DIR", str(tmp_path / "cache"))
    data = models["float32"].read_bytes()
    module = "ai_edge_litert.interpreter"
    assert modelcheck.probe(data, module) == ""
    monkeypatch.setattr(probe_mod, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert modelcheck.probe(data, module) == "the interpreter crashed on it (SIGSEGV)"
    monkeypatch.setattr(modelcheck, "_VERDICTS", {})
    with pytest.raises(InferenceError, match=r"float32.tflite: not a loadable TFLite model \(the interpreter "
                                             r"crashed on it \(SIGSEGV\)\)"):
        TFLiteModel(models["float32"])
    monkeypatch.setattr(probe_mod, "_PROBE", "import time; time.sleep(30)")
    assert modelcheck.probe(data, module, timeout=0.5) == "loading it did not finish within 0.5 s"
    monkeypatch.setattr(probe_mod, "_PROBE", "raise SystemExit(7)")
    assert modelcheck.probe(data, module) == "the check exited with 7"


def test_verdicts_are_cached_and_the_shipped_model_is_known(monkeypatch: pytest.MonkeyPatch,
                                                            models: dict[str, Path], tmp_path: Path) -> None:
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() in modelcheck.TRUSTED_SHA256, (
        "the shipped model changed: put its new sha256 in digitkit.runtime.modelcheck.TRUSTED_SHA256")
    calls: list[int] = []
    real_probe = modelcheck.probe
    monkeypatch.setattr(modelcheck, "probe", lambda *a, **k: calls.append(1) or real_probe(*a, **k))
    monkeypatch.setattr(modelcheck, "_VERDICTS", {})
    monkeypatch.setenv("DIGITKIT_CACHE_DIR", str(tmp_path / "cache"))
    TFLiteModel(SHIPPED)
    assert calls == []  # known by hash: no child process
    TFLiteModel(models["float32"])
    TFLiteModel(models["float32"])
    assert calls == [1]  # once per process
    monkeypatch.setattr(modelcheck, "_VERDICTS", {})  # a new process: the passed probe is on disk
    TFLiteModel(models["float32"])
    assert calls == [1] and len(list((tmp_path / "cache" / "checked-models").iterdir())) == 1
    monkeypatch.setattr(modelcheck, "_VERDICTS", {})
    monkeypatch.setenv("DIGITKIT_CACHE_DIR", "off")
    TFLiteModel(models["float32"])
    assert calls == [1, 1]


def test_the_checked_bytes_are_the_loaded_bytes(monkeypatch: pytest.MonkeyPatch, models: dict[str, Path]) -> None:
    """The file is read once and the interpreter gets those bytes, so it cannot be swapped after the check."""
    import ai_edge_litert.interpreter as litert

    seen: dict[str, object] = {}
    real = litert.Interpreter

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(litert, "Interpreter", spy)
    TFLiteModel(models["float32"], backend="litert")
    assert "model_path" not in seen and seen["model_content"] == models["float32"].read_bytes()


def test_the_probe_runs_every_batch_size_predict_proba_pads_to() -> None:
    """A fuzzed float model corrupted the heap only at batch 8; the probe must try each padded size."""
    import re

    probed = {int(b) for b in re.search(r"for batch in \(([\d, ]+)\)", probe_mod._PROBE).group(1).split(",")}
    default = TFLiteModel.predict_proba.__defaults__[0]
    padded = {min(1 << max(rows - 1, 0).bit_length(), max(default, rows)) for rows in range(1, default + 1)}
    assert padded <= probed, sorted(padded - probed)
