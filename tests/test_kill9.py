"""Nothing half-written: SIGKILL real ``digitkit`` processes mid-write and check every output file is either
byte-identical to the old one or a complete, valid new one, and that what a kill leaves behind is only
hidden ``.NAME.tmp.PID.*`` files, which the next run deletes.

The kills land mid-write without any hook in the library: a watcher polls the output folder and kills the
process when a temp file (a write in progress) appears, after a staggered extra delay; other kills land
at staggered times from the start. Each check counts how many kills found a temp file in place, so a sweep
whose kills all missed the writes fails instead of passing vacuously.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from synth import synth_digits

from digitkit.runtime.fileio import is_temp, remove_stale_temps

REPO = Path(__file__).resolve().parent.parent
DIGITKIT = [sys.executable, "-m", "digitkit"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass
class Kill:
    pid: int
    seconds: float  # from start to the kill
    temps_at_kill: list[str]  # temp files present just before the kill (a write in progress)
    finished: bool  # the process ended on its own before the trigger fired


def temps_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if is_temp(p)] if folder.exists() else []


def run_and_kill(cmd: list[str], watch: Path, trigger: Callable[[float, list[Path], int], bool],
                 timeout: float = 600) -> Kill:
    """Run ``cmd``; poll ``watch`` every ~0.5 ms and SIGKILL the process as soon as
    ``trigger(seconds since start, temp files now, distinct temp files seen so far)`` says so."""
    proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.perf_counter()
    seen: set[str] = set()
    try:
        while proc.poll() is None:
            now = temps_in(watch)
            seen.update(str(p) for p in now)
            elapsed = time.perf_counter() - start
            if trigger(elapsed, now, len(seen)):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return Kill(proc.pid, elapsed, [p.name for p in now], finished=False)
            if elapsed > timeout:
                raise AssertionError(f"{cmd} ran longer than {timeout} s")
            time.sleep(0.0005)
        return Kill(proc.pid, time.perf_counter() - start, [], finished=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def after_temp(nth: int, delay: float) -> Callable[[float, list[Path], int], bool]:
    """Kill ``delay`` seconds after the ``nth`` distinct temp file was first seen."""
    state: dict[str, float] = {}

    def trigger(elapsed: float, now: list[Path], n_seen: int) -> bool:
        if n_seen >= nth and "at" not in state:
            state["at"] = elapsed
        return "at" in state and elapsed - state["at"] >= delay

    return trigger


def at_time(seconds: float) -> Callable[[float, list[Path], int], bool]:
    return lambda elapsed, now, n_seen: elapsed >= seconds


def valid(path: Path) -> str | None:
    """None if ``path`` is a complete file of its kind, else what is wrong with it."""
    data = path.read_bytes()
    if not data:
        return "empty"
    suffix = path.suffix
    try:
        if suffix == ".json":
            json.loads(data)
        elif suffix == ".keras":
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                if bad is not None or "config.json" not in zf.namelist():
                    return f"bad zip member {bad}"
        elif suffix == ".tflite":
            from ai_edge_litert.interpreter import Interpreter

            Interpreter(model_path=str(path)).allocate_tensors()
        elif suffix in (".png", ".jpg"):
            if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
                return "not decodable"
        elif suffix == ".md":
            if not data.decode("utf-8").endswith("\n"):
                return "text without its final newline"
    except Exception as exc:  # any failure to load is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not is_temp(p)}


def check_after_kill(folder: Path, old: dict[str, bytes], kill: Kill, killed: set[int],
                     new: dict[str, bytes] | None = None) -> None:
    """Every output is the old bytes or a valid new file (``new``'s bytes when known); leftovers are only
    hidden temp files of killed writers (``killed``: this kill's and earlier ones' process ids)."""
    killed.add(kill.pid)
    for rel, data in snapshot(folder).items():
        if rel in old and data == old[rel]:
            continue
        if new is not None and rel in new:
            assert data == new[rel], f"{rel}: neither the old nor the new bytes after a kill at {kill.seconds:.3f} s"
        problem = valid(folder / rel)
        assert problem is None, f"{rel}: {problem} after a kill at {kill.seconds:.3f} s (temps {kill.temps_at_kill})"
    for tmp in temps_in(folder):
        assert tmp.name.startswith(".") and any(f".tmp.{pid}." in tmp.name for pid in killed), tmp


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


# --- the mechanism itself, many kills per second ---

_WRITER = """
import sys
from pathlib import Path
from digitkit.runtime.fileio import atomic_write_bytes
target, naive = Path(sys.argv[1]), sys.argv[2] == "naive"
blobs = [bytes([i]) * (4 << 20) for i in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    i += 1
    if naive:
        with open(target, "wb") as fh:
            for k in range(0, len(blobs[i % 2]), 1 << 16):
                fh.write(blobs[i % 2][k:k + (1 << 16)])
    else:
        atomic_write_bytes(target, blobs[i % 2])
"""


def _kill_writer(target: Path, naive: bool, rng: random.Random) -> int:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), "naive" if naive else "atomic"],
                            env=ENV, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.02, 0.25))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.pid


def test_atomic_writes_survive_kill9_where_plain_writes_do_not(tmp_path: Path) -> None:
    rng = random.Random(0)
    old = b"old contents\n"
    complete = {old, bytes([1]) * (4 << 20), bytes([2]) * (4 << 20)}
    target = tmp_path / "model.bin"
    pids = []
    for _ in range(12):
        target.write_bytes(old)
        pids.append(_kill_writer(target, naive=False, rng=rng))
        assert target.read_bytes() in complete, f"torn file of {target.stat().st_size} bytes"
    leftovers = temps_in(tmp_path)
    assert all(any(f".tmp.{pid}." in p.name for pid in pids) for p in leftovers)
    remove_stale_temps(tmp_path)  # what the next write of any file there does for its own name
    assert temps_in(tmp_path) == []

    # The same kills do tear a plain open(..., "wb") write: the check above can fail.
    torn = 0
    for _ in range(6):
        target.write_bytes(old)
        _kill_writer(target, naive=True, rng=rng)
        torn += target.read_bytes() not in complete
    assert torn >= 3


def test_the_next_write_deletes_a_killed_writers_temps_but_not_a_live_ones(tmp_path: Path) -> None:
    from digitkit.runtime.fileio import atomic_write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".report.md.tmp.{dead_pid}.abc123.md"
    live = tmp_path / f".report.md.tmp.{os.getppid()}.def456.md"  # the pytest runner's parent: alive
    other = tmp_path / f".bench.json.tmp.{dead_pid}.ghi789.json"
    for p in (stale, live, other):
        p.write_text("partial")
    atomic_write_text(tmp_path / "report.md", "new\n")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "report.md").read_text() == "new\n"
    assert remove_stale_temps(tmp_path, recursive=True) == [other]


# --- digitkit classify --save-annotated ---

N_PHOTOS = 400  # 60 finished before a 0.6 s kill on a quiet machine (~10 ms per photo there)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """N_PHOTOS pictures of three digits on paper, 480x200, as PNG files: enough that a quiet machine is still
    writing annotated copies when the longest kill delay fires."""
    folder = tmp_path_factory.mktemp("photos")
    x, _ = synth_digits(3 * N_PHOTOS, 31)
    for i in range(N_PHOTOS):
        strip = np.zeros((60, 150), np.uint8)
        for k in range(3):
            strip[16:44, 10 + 45 * k:38 + 45 * k] = x[3 * i + k]
        photo = np.clip(230 - cv2.resize(strip, (480, 200)).astype(np.float32) * 0.8, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"p{i:02d}.png"), photo)
    return folder


def test_kill9_during_save_annotated_leaves_old_images_and_whole_new_ones(tmp_path: Path, photo_folder: Path) -> None:
    cmd = [*DIGITKIT, "classify", str(photo_folder), "--save-annotated"]
    ref = tmp_path / "ref"
    assert subprocess.run([*cmd, str(ref)], env=ENV, cwd=REPO, capture_output=True).returncode == 0
    new = snapshot(ref)
    assert len(new) == N_PHOTOS
    out = tmp_path / "out"
    out.mkdir()
    old = {name: png_bytes(np.full((20, 30), 99, np.uint8)) for name in new}
    rng = random.Random(1)
    mid_write, killed = 0, set[int]()
    for delay in (0.0, 0.0005, 0.002, 0.01, *(rng.uniform(0.02, 0.3) for _ in range(4))):
        for name, data in old.items():
            (out / name).write_bytes(data)
        kill = run_and_kill([*cmd, str(out)], out, after_temp(1, delay))
        assert not kill.finished, "the run ended before the kill; make it longer"
        check_after_kill(out, old, kill, killed, new)
        mid_write += bool(kill.temps_at_kill)
    assert mid_write >= 3, f"only {mid_write} kills landed while a write was in progress"
    assert subprocess.run([*cmd, str(out)], env=ENV, cwd=REPO, capture_output=True).returncode == 0
    after = snapshot(out)
    # Copies never replace a file already there (issue 15): the old files are intact, and the last run's
    # copies all landed, under the next free names (p00-2.png, p00-3.png, ...).
    assert all(after[name] == data for name, data in old.items())
    assert set(new.values()) <= set(after.values()) and temps_in(out) == []


# --- digitkit convert ---

def test_kill9_during_convert_leaves_the_old_model_or_the_new_one(tmp_path: Path, tiny_keras_model: Path,
                                                                   tiny_int8_tflite: Path,
                                                                   synth_data_dir: Path) -> None:
    out = tmp_path / "int8.tflite"
    old = {"int8.tflite": tiny_int8_tflite.read_bytes(),
           "int8.tflite.json": json.dumps({"runtime": {}, "report": {"old": True}}).encode()}
    cmd = [*DIGITKIT, "convert", str(tiny_keras_model), "--out", str(out), "--data-dir", str(synth_data_dir),
           "--max-drop", "50"]
    mid_write, killed = 0, set[int]()
    # The model's temp file exists from its write through the verification on the test set until the
    # sidecar is written and both are renamed: kills spread over that window.
    for trigger in (after_temp(1, 0.0), after_temp(1, 0.05), after_temp(2, 0.0)):
        for name, data in old.items():
            (tmp_path / name).write_bytes(data)
        kill = run_and_kill(cmd, tmp_path, trigger)
        if kill.finished:  # the writes were over before the watcher saw them: still must be all new
            assert temps_in(tmp_path) == []
        check_after_kill(tmp_path, old, kill, killed)
        mid_write += bool(kill.temps_at_kill)
    assert mid_write >= 2, f"only {mid_write} kills landed while a write was in progress"
    done = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert temps_in(tmp_path) == [], "the next run did not clean the killed runs' temp files"
    report = json.loads((tmp_path / "int8.tflite.json").read_text())["report"]
    assert report["size_bytes"] == out.stat().st_size and valid(out) is None


# --- digitkit pipeline (and the train output inside it) ---

def _pipeline_cmd(out: Path, data_dir: Path) -> list[str]:
    # One epoch on the synthetic set, a short benchmark: the fast settings of tests/toolkit/test_pipeline.py.
    return [*DIGITKIT, "pipeline", "--out", str(out), "--data-dir", str(data_dir), "--epochs", "1",
            "--max-drop", "50", "--runs", "20", "--threads", "1"]


def _fake_old_pipeline(out: Path, tiny_keras_model: Path, tiny_int8_tflite: Path) -> dict[str, bytes]:
    """An earlier run's files under every artefact name, with stage markers that no longer match."""
    png = png_bytes(np.full((20, 30), 99, np.uint8))
    files = {"float.keras": tiny_keras_model.read_bytes(), "float32.tflite": tiny_int8_tflite.read_bytes(),
             "int8.tflite": tiny_int8_tflite.read_bytes(), "classify_strip.png": png, "classify_digits.png": png,
             "report.md": b"# old report\n", "bench/report.md": b"old\n", "bench/section.md": b"old\n"}
    for name in ("float.keras.json", "float32.tflite.json", "int8.tflite.json", "verify.json", "bench.json",
                 "classify.json"):
        files[name] = b'{"old": true}\n'
    for stage in ("train", "convert", "verify", "bench", "classify", "report"):
        files[f"stages/{stage}.json"] = json.dumps({"stage": stage, "fingerprint": "old", "artefacts": [],
                                                    "summary": {}}).encode()
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return files


def _pipeline_sweep(tmp_path: Path, data_dir: Path, tiny_keras_model: Path, tiny_int8_tflite: Path,
                    triggers: list[Callable[[float, list[Path], int], bool]], finish: bool) -> None:
    out = tmp_path / "run"
    mid_write, finished, killed = 0, 0, set[int]()
    for trigger in triggers:
        shutil.rmtree(out, ignore_errors=True)
        old = _fake_old_pipeline(out, tiny_keras_model, tiny_int8_tflite)
        kill = run_and_kill(_pipeline_cmd(out, data_dir), out, trigger)
        finished += kill.finished  # a trigger for a write the watcher never saw: the run completed
        check_after_kill(out, old, kill, killed)
        mid_write += bool(kill.temps_at_kill)
        print(f"pipeline {'finished' if kill.finished else 'killed'} at {kill.seconds:6.2f} s, "
              f"writes in progress: {kill.temps_at_kill}")
    assert finished <= len(triggers) // 4, f"{finished} of {len(triggers)} runs ended before their kill"
    assert mid_write >= len(triggers) // 2, f"only {mid_write} kills landed while a write was in progress"
    if finish:  # the next run over the debris: succeeds, cleans every temp, every artefact valid
        done = subprocess.run(_pipeline_cmd(out, data_dir), env=ENV, cwd=REPO, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert temps_in(out) == []
        for rel in snapshot(out):
            assert valid(out / rel) is None, rel


def test_kill9_during_pipeline_train_save_and_convert(tmp_path: Path, synth_data_dir: Path,
                                                      tiny_keras_model: Path, tiny_int8_tflite: Path) -> None:
    # The first temp file is float.keras being saved by the train stage; the 3rd a small JSON after it (the
    # model's sidecar or the stage marker, whichever the watcher saw).
    _pipeline_sweep(tmp_path, synth_data_dir, tiny_keras_model, tiny_int8_tflite,
                    [after_temp(1, 0.0), after_temp(3, 0.0)], finish=False)


@pytest.mark.slow
def test_kill9_sweep_over_a_whole_pipeline_then_a_clean_rerun(tmp_path: Path, synth_data_dir: Path,
                                                              tiny_keras_model: Path, tiny_int8_tflite: Path) -> None:
    rng = random.Random(7)
    # One kill per write in progress, from the train stage's model to the last plots, then two at times.
    triggers = [after_temp(n, rng.uniform(0, 0.005)) for n in (1, 2, 3, 5, 7, 9, 11, 13, 15)]
    triggers += [at_time(t) for t in (6.0, 12.0)]  # the whole run takes ~15-25 s here
    _pipeline_sweep(tmp_path, synth_data_dir, tiny_keras_model, tiny_int8_tflite, triggers, finish=True)
