"""The CLI: every toolkit verb's success and failure paths through CliRunner, and the real console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digitkit.cli import app

runner = CliRunner()
DIGITKIT = shutil.which("digitkit", path=str(Path(sys.executable).parent)) or "digitkit"


def test_help_lists_verbs_and_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("train", "evaluate", "models"):
        assert verb in result.output
    assert "Exit codes" in result.output and "gate failed" in result.output


def test_models_lists_every_arch_with_params_and_macs() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["seed"]["params"] == 242191 and by_name["seed"]["macs"] == 3363200  # 11 outputs
    assert len(rows) >= 2


def test_train_success_writes_model_and_sidecar(tmp_path: Path, synth_data_dir: Path) -> None:
    out = tmp_path / "m" / "float.keras"
    result = runner.invoke(app, ["train", "--out", str(out), "--arch", "tiny", "--epochs", "1",
                                 "--data-dir", str(synth_data_dir), "--no-augment"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_name(out.name + ".json").is_file()
    assert "test accuracy" in result.output
    assert json.loads(out.with_name(out.name + ".json").read_text())["config"]["augment"] is False


def test_train_unknown_arch_exits_2_with_one_line(tmp_path: Path, synth_data_dir: Path) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "x.keras"), "--arch", "nope",
                                 "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: unknown architecture 'nope'; "
                                     "choose one of: seed, seed-bn, vgg, strided, strided-pair, seed-strided, tiny")
    assert result.stdout == ""  # refused before any progress bar is drawn


def test_progress_is_one_line_per_epoch_in_a_log_file(tmp_path: Path, synth_data_dir: Path) -> None:
    """Redirected to a file, training prints a plain line per epoch (rich's live bar would stay frozen until
    the end), and no library line reaches the log."""
    import subprocess
    import sys

    log = tmp_path / "train.log"
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "digitkit", "train", "--out", str(tmp_path / "m.keras"),
                               "--arch", "tiny", "--epochs", "3", "--data-dir", str(synth_data_dir)],
                              stdout=fh, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no TensorFlow/absl start-up lines, no Keras UserWarning
    lines = log.read_text().splitlines()
    assert [line.split(":")[1].split()[1] for line in lines if line.startswith("training tiny: epoch")] == [
        "1/3", "2/3", "3/3"]
    assert "\x1b[" not in log.read_text()  # no terminal control codes in a file


def test_train_missing_data_exits_2_naming_the_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "x.keras"), "--data-dir", str(tmp_path / "no")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: data path") and str(tmp_path / "no") in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "x.keras").exists()


def test_train_bad_data_file_exits_2(tmp_path: Path, synth_data_dir: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(synth_data_dir, bad)
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "x.keras"), "--data-dir", str(bad)])
    assert result.exit_code == 2
    assert "t10k-images-idx3-ubyte.gz: corrupt or truncated gzip" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_epochs_zero_is_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "x.keras"), "--epochs", "0"])
    assert result.exit_code == 2 and "--epochs" in result.output + result.stderr


def test_evaluate_keras_json(tiny_keras_model: Path, synth_data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tiny_keras_model), "--data-dir", str(synth_data_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    side = json.loads(tiny_keras_model.with_name(tiny_keras_model.name + ".json").read_text())
    assert report["test_size"] == 300 and report["accuracy"] == pytest.approx(side["test_accuracy"], abs=1e-6)
    cm = report["confusion"]
    assert len(cm) == 10 and sum(map(sum, cm)) == 300
    assert sum(cm[i][i] for i in range(10)) / 300 == pytest.approx(report["accuracy"])


def test_evaluate_tflite_table(tiny_int8_tflite: Path, synth_data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tiny_int8_tflite), "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.output and "accuracy" in result.output


def test_evaluate_missing_model_exits_2(tmp_path: Path, synth_data_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path / "none.keras"), "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: model file {tmp_path / 'none.keras'} not found"


def test_evaluate_not_a_keras_model_exits_2(tmp_path: Path, synth_data_dir: Path) -> None:
    fake = tmp_path / "fake.keras"
    fake.write_text("this is not a model")
    result = runner.invoke(app, ["evaluate", str(fake), "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {fake}: not a readable Keras model")


def test_debug_shows_traceback(tmp_path: Path, synth_data_dir: Path) -> None:
    args = ["--debug", "evaluate", str(tmp_path / "none.keras"), "--data-dir", str(synth_data_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_console_script_runs_for_real(synth_data_dir: Path, tiny_int8_tflite: Path) -> None:
    env = {**os.environ, "DIGITKIT_DATA": str(synth_data_dir)}
    ok = subprocess.run([DIGITKIT, "evaluate", str(tiny_int8_tflite), "--json"], capture_output=True, text=True,
                        env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["test_size"] == 300
    bad = subprocess.run([DIGITKIT, "evaluate", "/nonexistent/model.tflite"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: model file /nonexistent/model.tflite not found"


@pytest.mark.parametrize("missing", ["keras", "tensorflow"])
def test_training_verbs_on_a_runtime_only_install_say_which_extra_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synth_data_dir: Path, missing: str) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import keras` now fails as on `pip install .`
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "m.keras"), "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: this needs {missing}, which the runtime-only install leaves out; "
                                     "install the train extra: pip install 'digitkit[train]'")
    assert not (tmp_path / "m.keras").exists()
