"""``$DIGITKIT_PROBE_TIMEOUT``: how long the model check's child process may take (slow boards, emulation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from digitkit.cli import app
from digitkit.runtime import modelcheck
from digitkit.runtime import probe as probe_mod


def test_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGITKIT_PROBE_TIMEOUT", raising=False)
    assert probe_mod.probe_timeout() == probe_mod.PROBE_TIMEOUT_S == 30.0
    monkeypatch.setenv("DIGITKIT_PROBE_TIMEOUT", " 600 ")
    assert probe_mod.probe_timeout() == 600.0


def test_the_probe_obeys_the_variable(monkeypatch: pytest.MonkeyPatch, tiny_int8_tflite: Path) -> None:
    monkeypatch.setenv("DIGITKIT_PROBE_TIMEOUT", "0.001")  # no child process starts Python that fast
    data = tiny_int8_tflite.read_bytes()
    assert probe_mod.probe(data, "ai_edge_litert.interpreter") == "loading it did not finish within 0.001 s"


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "nan"])
def test_a_bad_value_is_one_error_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   tiny_int8_tflite: Path, value: str) -> None:
    monkeypatch.setenv("DIGITKIT_PROBE_TIMEOUT", value)
    monkeypatch.setenv("DIGITKIT_CACHE_DIR", "off")  # no verdict remembered on disk or in this process:
    monkeypatch.setattr(modelcheck, "_VERDICTS", {})  # the probe must run
    with pytest.raises(modelcheck.InferenceError, match="is not a positive number of seconds"):
        probe_mod.probe_timeout()
    image = tmp_path / "blank.png"
    image.write_bytes(b"")  # the model is checked before any image is read
    res = CliRunner().invoke(app, ["classify", str(image), "--model", str(tiny_int8_tflite)])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"error: DIGITKIT_PROBE_TIMEOUT={value!r} is not a positive number of seconds; unset it for the default 30"]
