"""Benchmark: the JSON schema, ratios against the first model, accuracy equal to ``evaluate``'s, the report's
files, quantization-mode detection, CPU pinning, and the CLI's success and failure paths."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from digitkit.cli import app
from digitkit.toolkit.bench import BenchReport, bench, parse_int_list
from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.evaluate import evaluate
from digitkit.toolkit.measure import tflite_mode

LIMIT = 200
FAST = {"runs": 30, "warmup": 3, "limit": LIMIT, "batch_size": 64}
ROW_KEYS = {"model", "name", "format", "mode", "backend", "threads", "pinned_cpus", "size_bytes", "load_ms",
            "accuracy", "agreement", "latency_ms", "runs", "warmup", "throughput_ips", "batch_size",
            "peak_rss_mb", "model_rss_mb", "ratios"}


@pytest.fixture(scope="module")
def tflite_variants(tmp_path_factory: pytest.TempPathFactory, tiny_keras_model: Path,
                    synth_data_dir: Path) -> dict[str, Path]:
    """float32, float16 and dynamic-range .tflite files of the tiny model, made with TF's converter."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(tiny_keras_model, compile=False)
    folder = tmp_path_factory.mktemp("variants")
    out = {}
    for mode in ("float32", "float16", "dynamic"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode != "float32":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            conv.target_spec.supported_types = [tf.float16]
        out[mode] = folder / f"{mode}.tflite"
        out[mode].write_bytes(conv.convert())
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_keras_model: Path, tiny_int8_tflite: Path,
        tflite_variants: dict[str, Path], synth_data_dir: Path) -> tuple[BenchReport, Path, Path]:
    """One benchmark of keras, float32 and int8 at 1 and 2 threads, with JSON and a report folder."""
    out = tmp_path_factory.mktemp("bench")
    report = bench([tiny_keras_model, tflite_variants["float32"], tiny_int8_tflite], data_dir=str(synth_data_dir),
                   threads=(1, 2), json_path=str(out / "bench.json"), report_dir=str(out / "report"), **FAST)
    return report, out / "bench.json", out / "report"


def test_json_follows_the_documented_schema(run: tuple[BenchReport, Path, Path]) -> None:
    report, json_path, _ = run
    data = json.loads(json_path.read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["schema"] == "digitkit.bench/1"
    assert set(data) == {"schema", "created", "settings", "environment", "data", "reference", "results"}
    assert data["settings"] == {"threads": [1, 2], "runs": 30, "warmup": 3, "batch_size": 64, "pin_cpu": None,
                                "limit": LIMIT}
    assert data["data"]["test_images"] == LIMIT and data["environment"]["ai-edge-litert"]
    assert "tensorflow" in data["environment"]  # a .keras row ran
    rows = data["results"]
    assert [(r["name"], r["threads"]) for r in rows] == [
        ("float", 1), ("float", 2), ("float32", 1), ("float32", 2), ("tiny_int8", 1), ("tiny_int8", 2)]
    for r in rows:
        assert set(r) == ROW_KEYS
        lat = r["latency_ms"]
        assert set(lat) == {"mean", "std", "min", "p50", "p90", "p99", "max"}
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"]
        assert r["throughput_ips"] > 0 and r["load_ms"] > 0 and r["size_bytes"] == Path(r["model"]).stat().st_size
        assert r["peak_rss_mb"] > r["model_rss_mb"] >= 0 and r["runs"] == 30 and r["pinned_cpus"] is None
    assert [(r["format"], r["mode"], r["backend"]) for r in rows[::2]] == [
        ("keras", "float32", "keras"), ("tflite", "float32", "litert"), ("tflite", "int8", "litert")]


def test_ratios_are_against_the_first_model_with_the_same_threads(run: tuple[BenchReport, Path, Path]) -> None:
    report, _, _ = run
    first = {r.threads: r for r in report.results if r.name == "float"}
    for r in report.results:
        ref = first[r.threads]
        assert r.ratios["size"] == pytest.approx(r.size_bytes / ref.size_bytes)
        assert r.ratios["p50"] == pytest.approx(r.latency_ms.p50 / ref.latency_ms.p50)
        assert r.ratios["throughput"] == pytest.approx(r.throughput_ips / ref.throughput_ips)
    assert all(v == 1.0 for r in first.values() for v in r.ratios.values())
    int8, f32 = report.results[4], report.results[2]
    assert int8.size_bytes < 0.35 * f32.size_bytes  # int8 weights are a quarter of float32's
    assert report.results[0].agreement == 1.0


def test_accuracy_matches_evaluate_and_agreement_is_consistent(run: tuple[BenchReport, Path, Path],
                                                               synth_data_dir: Path) -> None:
    report, _, _ = run
    for r in report.results:
        expected = evaluate(r.model, data_dir=str(synth_data_dir), limit=LIMIT).accuracy
        # TFLite rows run the same interpreter as evaluate; Keras uses model(x) vs predict: allow one image.
        assert r.accuracy == pytest.approx(expected, abs=0 if r.format == "tflite" else 1 / LIMIT), r.label
        assert 0.5 < r.accuracy <= 1.0
        # Two models can only differ in accuracy on the images where they disagree.
        assert abs(r.accuracy - report.results[0].accuracy) <= 1 - r.agreement + 1e-9
        assert len(r.latency_samples_ms) == 30 and len(r.predictions) == LIMIT


def test_report_files_exist_and_pngs_decode(run: tuple[BenchReport, Path, Path]) -> None:
    _, _, folder = run
    text = (folder / "report.md").read_text()
    for name in ("accuracy_vs_latency", "latency", "confusion", "misclassified"):
        png = folder / f"{name}.png"
        image = cv2.imread(str(png))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100, png
        assert f"]({name}.png)" in text
    assert "| model | mode |" in text and "tiny_int8" in text and "×p50" in text
    assert not list(folder.glob(".*tmp*")), "temp files left behind"


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic"])
def test_tflite_mode_is_read_from_the_tensor_dtypes(tflite_variants: dict[str, Path], mode: str) -> None:
    assert tflite_mode(tflite_variants[mode]) == mode


def test_int8_mode_detected(tiny_int8_tflite: Path) -> None:
    assert tflite_mode(tiny_int8_tflite) == "int8"


def test_pin_cpu_pins_the_measuring_process(tiny_int8_tflite: Path, synth_data_dir: Path) -> None:
    report = bench([tiny_int8_tflite], data_dir=str(synth_data_dir), pin_cpu=(0,), **FAST)
    assert report.results[0].pinned_cpus == (0,)
    assert report.to_dict()["settings"]["pin_cpu"] == [0]


def test_parse_int_list() -> None:
    assert parse_int_list("1,2", "--threads") == (1, 2)
    assert parse_int_list(" 4 ", "--threads") == (4,)
    for bad in ("", "1,a", "1.5"):
        with pytest.raises(ToolkitError, match="--threads"):
            parse_int_list(bad, "--threads")


def test_library_refuses_bad_settings_before_measuring(tiny_int8_tflite: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolkitError, match="no models given"):
        bench([])
    with pytest.raises(ToolkitError, match="every thread count must be >= 1"):
        bench([tiny_int8_tflite], threads=(0,))
    with pytest.raises(ToolkitError, match="--pin-cpu"):
        bench([tiny_int8_tflite], pin_cpu=(4096,))
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    with pytest.raises(ToolkitError, match="not a readable Keras model"):
        bench([fake])


runner = CliRunner()


def test_cli_success_writes_json(tiny_int8_tflite: Path, tflite_variants: dict[str, Path], synth_data_dir: Path,
                                 tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(tflite_variants["float32"]), str(tiny_int8_tflite), "--data-dir",
                                 str(synth_data_dir), "--runs", "20", "--warmup", "2", "--limit", "100",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "tiny_int8" in result.output and "×p50" in result.output
    rows = json.loads(out.read_text())["results"]
    assert [r["mode"] for r in rows] == ["float32", "int8"] and rows[1]["ratios"]["size"] < 0.35


@pytest.mark.parametrize(("args", "message"), [
    (["missing.tflite"], "model file missing.tflite not found"),
    (["notes.txt"], "unknown model format '.txt'"),
    (["{model}", "--threads", "1,x"], "--threads '1,x' is not a comma-separated list"),
    (["{model}", "--threads", "0"], "every thread count must be >= 1"),
    (["{model}", "--pin-cpu", "4096"], "--pin-cpu [4096]: not usable CPUs"),
])
def test_cli_failures_exit_2_with_a_message(args: list[str], message: str, tiny_int8_tflite: Path,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    result = runner.invoke(app, ["bench", *[a.replace("{model}", str(tiny_int8_tflite)) for a in args]])
    assert result.exit_code == 2
    assert message in result.output


def test_each_row_reports_its_own_peak_memory(run: tuple[BenchReport, Path, Path]) -> None:
    """A spawned child used to inherit the parent's high-water mark (~1.1 GB for every row); now each row's
    peak is its own process's, so Keras (TensorFlow loaded) and the int8 LiteRT row differ by far."""
    report, _, _ = run
    keras_row = next(r for r in report.results if r.format == "keras")
    int8_row = next(r for r in report.results if r.mode == "int8")
    assert keras_row.peak_rss_mb > 2 * int8_row.peak_rss_mb, (keras_row.peak_rss_mb, int8_row.peak_rss_mb)
    assert int8_row.peak_rss_mb < 250  # numpy + LiteRT + a 0.3 MB model, not a TensorFlow-sized parent
    assert keras_row.model_rss_mb > 0 and all(r.peak_rss_mb > r.model_rss_mb >= 0 for r in report.results)


def test_bench_from_a_script_without_a_main_guard(tmp_path: Path, tiny_int8_tflite: Path,
                                                  synth_data_dir: Path) -> None:
    """multiprocessing's spawn re-ran the caller's module in every child; the rows now run as
    ``python -m digitkit.toolkit.measure``, so a plain script runs once."""
    import subprocess
    import sys

    script = tmp_path / "plain.py"
    script.write_text("from digitkit.toolkit.bench import bench\n"
                      "print('script body ran', flush=True)\n"
                      f"r = bench([{str(tiny_int8_tflite)!r}], data_dir={str(synth_data_dir)!r}, runs=5, warmup=1, "
                      "limit=50)\n"
                      "print('rows', len(r.results))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script body ran") == 1 and "rows 1" in done.stdout


def test_evaluate_json_stays_json_when_the_data_is_downloaded(tmp_path: Path, tiny_int8_tflite: Path,
                                                               synth_data_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The Keras download prints "Downloading data from ..." on stdout; under --json it must go to stderr."""
    import keras
    import numpy as np

    from digitkit.toolkit import data as data_module

    cache = tmp_path / "keras" / "mnist.npz"
    real = data_module.load_mnist(synth_data_dir)

    def fake_download() -> None:
        print("Downloading data from https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz")
        cache.parent.mkdir(parents=True)
        np.savez(cache, x_train=real.x_train, y_train=real.y_train, x_test=real.x_test, y_test=real.y_test)

    monkeypatch.setattr(data_module, "KERAS_CACHE", cache)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", fake_download)
    monkeypatch.delenv("DIGITKIT_DATA", raising=False)
    result = runner.invoke(app, ["evaluate", str(tiny_int8_tflite), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_size"] == len(real.y_test)  # the whole of stdout is one JSON object
    assert "Downloading data from" in result.stderr


def test_the_table_fits_80_columns_without_cutting_figures(run: tuple[BenchReport, Path, Path]) -> None:
    from rich.console import Console

    from digitkit.toolkit.report import table_rows, terminal_table

    report, _, _ = run
    console = Console(width=80, record=True)
    console.print(terminal_table(report, 80))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for row in table_rows(report):  # every accuracy and p50 figure is printed whole
        assert row[6] in text and row[8] in text
