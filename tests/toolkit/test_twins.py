"""Every Python twin can be called twice in one process, whatever was imported first (issue 13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ORDERS = {
    # a bare import of a module that imports the twins' submodules, before any call
    "pipeline first": "import digitkit.toolkit.pipeline\nimport digitkit.toolkit.cli\nfrom digitkit import toolkit\n",
    # the function names taken from the package before their submodules exist
    "names first": "from digitkit.toolkit import convert, evaluate, train\nimport digitkit.toolkit as toolkit\n"
                   "import digitkit.toolkit.train, digitkit.toolkit.convert, digitkit.toolkit.evaluate\n",
    # the submodules imported by name, as a user reading the source might
    "modules first": "import digitkit.toolkit.train as train_module\nimport digitkit.toolkit.evaluate\n"
                     "import digitkit.toolkit.convert\nfrom digitkit import toolkit\n"
                     "assert train_module.TrainConfig is not None\n",
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_evaluate_twice_after_any_import_order(order: str, tiny_keras_model: Path, synth_data_dir: Path) -> None:
    code = ORDERS[order] + (
        "from digitkit import toolkit as tk\n"
        f"a = tk.evaluate({str(tiny_keras_model)!r}, data_dir={str(synth_data_dir)!r})\n"
        f"b = tk.evaluate({str(tiny_keras_model)!r}, data_dir={str(synth_data_dir)!r})\n"
        "assert a.accuracy == b.accuracy, (a, b)\n"
        "assert callable(tk.train) and callable(tk.convert) and callable(tk.evaluate)\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_train_and_convert_twice_after_importing_the_pipeline(tmp_path: Path, synth_data_dir: Path) -> None:
    calls = [f"r{i} = toolkit.train(out={str(tmp_path / f'm{i}.keras')!r}, arch='tiny', epochs=1, "
             f"data_dir={str(synth_data_dir)!r})" for i in (1, 2)]
    calls += [f"c{i} = toolkit.convert({str(tmp_path / f'm{i}.keras')!r}, {str(tmp_path / f'm{i}.tflite')!r}, "
              f"data_dir={str(synth_data_dir)!r}, max_drop=100.0)" for i in (1, 2)]
    code = (ORDERS["pipeline first"] + "\n".join(calls)
            + "\nassert r1.params == r2.params and c1.mode == c2.mode == 'int8'\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert {p.name for p in tmp_path.iterdir()} >= {"m1.keras", "m2.keras", "m1.tflite", "m2.tflite"}


def test_the_twin_is_still_its_module() -> None:
    import digitkit.toolkit.train as module
    from digitkit import toolkit

    assert toolkit.train is module and module.TrainConfig.epochs >= 1 and callable(toolkit.train)
