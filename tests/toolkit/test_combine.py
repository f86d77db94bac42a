"""`digitkit combine`: trained networks averaged in one graph (toolkit/combine.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tensorflow")

from digitkit.toolkit.models import describe  # noqa: E402
from digitkit.toolkit.train import train  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory, synth_data_dir: Path) -> tuple[Path, Path, Path]:
    """A seed-bn and a strided network trained for one epoch on the synthetic data (seed 0), and a seed-bn
    network trained on another split (seed 1)."""
    folder = tmp_path_factory.mktemp("members")
    for name, arch, seed in (("fast", "seed-bn", 0), ("acc", "strided", 0), ("other", "seed-bn", 1)):
        train(out=str(folder / f"{name}.keras"), arch=arch, epochs=1, batch_size=64, seed=seed,
              data_dir=str(synth_data_dir))
    return folder / "fast.keras", folder / "acc.keras", folder / "other.keras"


def test_combine_averages_the_members_and_records_their_split(tmp_path: Path, synth_data_dir: Path,
                                                              members: tuple[Path, Path, Path]) -> None:
    import keras

    from digitkit.cli import app

    fast, acc, _ = members
    out = tmp_path / "ens.keras"
    result = runner.invoke(app, ["combine", str(fast), str(acc), "--out", str(out), "--data-dir",
                                 str(synth_data_dir)])
    assert result.exit_code == 0, result.output
    assert "test accuracy, ensemble" in result.output
    model = keras.models.load_model(out, compile=False)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    a = keras.models.load_model(fast, compile=False).predict(x, verbose=0)
    b = keras.models.load_model(acc, compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), (a + b) / 2, atol=1e-5)
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["config"]["seed"] == 0 and record["config"]["arch"] == "seed-strided"
    assert record["macs"] == describe("seed-bn").macs + describe("strided").macs <= 20_000_000
    assert [m["path"] for m in record["members"]] == [str(fast), str(acc)]
    # digitkit convert reads the split from the record, as for a trained network.
    from digitkit.toolkit.convert import training_settings

    assert training_settings(out)["seed"] == 0


@pytest.mark.parametrize(("which", "extra", "message"), [
    (["acc", "fast"], [], "is a 'strided' network; seed-strided takes seed-bn, strided in that order"),
    (["fast"], [], "seed-strided takes 2 trained networks (seed-bn, strided), got 1"),
    (["other", "acc"], [], "trained with different seed"),
    (["fast", "acc"], ["--arch", "seed-bn"], "'seed-bn' is not an ensemble architecture"),
    (["fast", "missing"], [], "not found"),
    (["fast", "norecord"], [], "no training record"),
    (["fast", "acc"], ["--out", "ens.h5"], "must end in .keras"),
])
def test_combine_refuses_what_cannot_be_averaged_with_exit_2(tmp_path: Path, synth_data_dir: Path,
                                                             members: tuple[Path, Path, Path], which: list[str],
                                                             extra: list[str], message: str) -> None:
    from digitkit.cli import app

    paths = {"fast": members[0], "acc": members[1], "other": members[2], "missing": tmp_path / "missing.keras",
             "norecord": tmp_path / "norecord.keras"}
    shutil.copy(members[1], paths["norecord"])
    extra = [str(tmp_path / e) if e.endswith(".h5") else e for e in extra]
    out = [] if "--out" in extra else ["--out", str(tmp_path / "ens.keras")]
    result = runner.invoke(app, ["combine", *[str(paths[w]) for w in which], *out, *extra,
                                 "--data-dir", str(synth_data_dir)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "ens.keras").exists()
