"""Issue 15, the files side: hostile or careless inputs to ``digitkit classify`` (rows 1, 2, 4, 5, 6, 12, 13).

Each test runs the real verb and asserts the exit code, the one error line, and that nothing else was lost
(the good files beside the bad one are read, the user's files are untouched). Row 3 (two ``convert`` runs
to one --out) belongs to the sidecar redesign of issue 13 and is not tested here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from synth import synth_digits
from typer.testing import CliRunner

import digitkit.runtime.classifier as classifier_mod
from digitkit.cli import app
from digitkit.runtime import DigitClassifier
from digitkit.runtime.preprocess import mnist_normalise

runner = CliRunner()
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DIGITKIT_CACHE_DIR": "off"}


@pytest.fixture(scope="module")
def clf(tiny_int8_tflite: Path) -> DigitClassifier:
    return DigitClassifier(model_path=tiny_int8_tflite, min_confidence=0.0)


@pytest.fixture(scope="module")
def page(clf: DigitClassifier) -> tuple[np.ndarray, str]:
    """A gray page with a 3-digit number the tiny model reads right (checked), and that number."""
    x, y = synth_digits(300, 9)
    x = np.stack([mnist_normalise(np.where(t > 40, t, 0).astype(np.uint8)) for t in x])
    p = clf.model.predict_proba(x)
    picked: list[int] = []
    for i in np.nonzero((p.argmax(1) == y) & (p.max(1) > 0.8))[0]:
        if int(y[i]) not in {int(y[j]) for j in picked}:
            picked.append(int(i))
        if len(picked) == 3:
            break
    mask = np.zeros((140, 40 + 100 * len(picked)), np.uint8)
    for k, i in enumerate(picked):
        mask[28:112, 30 + 100 * k:114 + 100 * k] = cv2.resize(x[i], (84, 84), interpolation=cv2.INTER_CUBIC)
    gray = (235 - mask.astype(np.float32) * 0.75).astype(np.uint8)
    text = "".join(str(int(y[i])) for i in picked)
    assert clf.classify(gray).text == text  # the premise of every test below
    return gray, text


def _run(*args: str) -> tuple[int, list[dict], str]:
    """``digitkit classify ARGS --json`` in-process: exit code, the JSON lines, stderr."""
    res = runner.invoke(app, ["classify", *args, "--json", "--min-confidence", "0"])
    return res.exit_code, [json.loads(line) for line in res.stdout.splitlines()], res.stderr


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _photos(folder: Path, gray: np.ndarray, n: int = 3) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n):
        path = folder / f"p{i}.png"
        cv2.imwrite(str(path), gray)
        files[str(path)] = path.read_bytes()
    return files


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- row 1: an output folder that is an input ---


@pytest.mark.parametrize("case", ["same folder", "inside the input folder", "an input file's folder",
                                  "a folder the glob reads"])
def test_save_annotated_into_an_input_is_refused_before_reading(tiny_int8_tflite: Path, tmp_path: Path,
                                                                 page: tuple[np.ndarray, str], case: str) -> None:
    photos = tmp_path / "photos"
    _photos(photos, page[0])
    (photos / "ann").mkdir()
    arg, out = {"same folder": (str(photos), photos),
                "inside the input folder": (str(photos), photos / "ann"),
                "an input file's folder": (str(photos / "p0.png"), photos),
                "a folder the glob reads": (str(photos / "**" / "*.png"), photos / "ann")}[case]
    before = _tree(photos)
    code, lines, err = _run(arg, "--model", str(tiny_int8_tflite), "--save-annotated", str(out))
    assert code == 2 and lines == []
    line = _one_error_line(err)
    assert f"--save-annotated {out}" in line and "choose a folder outside the inputs" in line
    assert _tree(photos) == before  # nothing written, nothing replaced


def test_a_glob_that_cannot_reach_the_output_folder_is_allowed(tiny_int8_tflite: Path, tmp_path: Path,
                                                                page: tuple[np.ndarray, str]) -> None:
    photos = tmp_path / "photos"
    _photos(photos, page[0], n=2)
    code, lines, _ = _run(str(photos / "*.png"), "--model", str(tiny_int8_tflite), "--save-annotated",
                          str(photos / "ann"))
    assert code == 0 and [o["text"] for o in lines] == [page[1]] * 2
    assert sorted(p.name for p in (photos / "ann").iterdir()) == ["p0.png", "p1.png"]


# --- row 2: two runs into one folder; an unwritable folder ---


def test_a_second_run_never_replaces_the_first_runs_copies(tiny_int8_tflite: Path, tmp_path: Path,
                                                          page: tuple[np.ndarray, str]) -> None:
    _photos(tmp_path / "photos", page[0], n=4)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "p1.png").write_bytes(b"the user's own file")
    for _ in range(2):
        code, lines, _ = _run(str(tmp_path / "photos"), "--model", str(tiny_int8_tflite), "--save-annotated", str(out))
        assert code == 0 and len(lines) == 4
    names = sorted(p.name for p in out.iterdir())
    assert names == ["p0-2.png", "p0.png", "p1-2.png", "p1-3.png", "p1.png", "p2-2.png", "p2.png", "p3-2.png",
                     "p3.png"]
    assert (out / "p1.png").read_bytes() == b"the user's own file"
    assert all(cv2.imread(str(out / n)) is not None for n in names if n != "p1.png")


def test_two_runs_at_once_into_one_folder_keep_every_copy(tiny_int8_tflite: Path, tmp_path: Path,
                                                          page: tuple[np.ndarray, str]) -> None:
    n = 40
    _photos(tmp_path / "photos", page[0], n=n)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "digitkit", "classify", str(tmp_path / "photos"), "--model", str(tiny_int8_tflite),
           "--save-annotated", str(out), "--json", "--threads", "1"]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        out_text, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert len(out_text.splitlines()) == n
    files = [p for p in out.iterdir()]
    assert len(files) == 2 * n and not any(p.name.startswith(".") for p in files)  # 80 of 80, no temp left
    assert all(cv2.imread(str(p)) is not None for p in files)


def test_an_unwritable_output_folder_fails_once_before_reading(tiny_int8_tflite: Path, tmp_path: Path,
                                                              page: tuple[np.ndarray, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _photos(tmp_path / "photos", page[0])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    read = []
    real = classifier_mod.load_image
    monkeypatch.setattr(classifier_mod, "load_image", lambda *a: read.append(a) or real(*a))
    # a folder that cannot be created (a file is in the way)
    code, lines, err = _run(str(tmp_path / "photos"), "--model", str(tiny_int8_tflite), "--save-annotated",
                            str(blocker / "out"))
    assert code == 2 and lines == [] and read == []
    assert f"cannot write to the --save-annotated folder {blocker / 'out'}: Not a directory" in _one_error_line(err)
    # a folder that exists but refuses writes (as root, chmod does not stop writes: the probe is made to fail)
    out = tmp_path / "locked"
    out.mkdir()
    import digitkit.runtime.draw as draw_mod

    def refuse(target: Path, suffix: str | None = None) -> Path:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(draw_mod, "temp_beside", refuse)
    code, lines, err = _run(str(tmp_path / "photos"), "--model", str(tiny_int8_tflite), "--save-annotated", str(out))
    assert code == 2 and lines == [] and read == []
    assert f"cannot write to the --save-annotated folder {out}: Permission denied" in _one_error_line(err)


# --- row 4: a file Pillow refuses, or any other surprise while reading ---


def _png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _with_chunk(png: bytes, chunk: bytes) -> bytes:
    return png[:33] + chunk + png[33:]  # right after IHDR


def test_transparent_pngs_pillow_refuses_still_read(tiny_int8_tflite: Path, tmp_path: Path,
                                                   page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    alpha = np.full_like(gray, 255)
    alpha[:8, :8] = 0
    buf = io.BytesIO()
    Image.fromarray(np.dstack([gray, gray, gray, alpha]), "RGBA").save(buf, "PNG")
    rgba = buf.getvalue()
    bad_crc = _with_chunk(rgba, _png_chunk(b"tEXt", b"Comment\x00hello", crc=0))
    big_ztxt = _with_chunk(rgba, _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * (2 << 20))))
    for name, data in (("bad_crc.png", bad_crc), ("big_ztxt.png", big_ztxt)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(Exception):  # noqa: B017 - the premise: Pillow refuses it
            Image.open(io.BytesIO(data)).load()
    cv2.imwrite(str(tmp_path / "good.png"), gray)
    code, lines, _ = _run(str(tmp_path), "--model", str(tiny_int8_tflite))
    assert code == 0 and [(Path(o["path"]).name, o["text"]) for o in lines] == [
        ("bad_crc.png", text), ("big_ztxt.png", text), ("good.png", text)]


def test_any_exception_reading_one_file_is_that_files_error_line(tiny_int8_tflite: Path, tmp_path: Path,
                                                                  page: tuple[np.ndarray, str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _photos(tmp_path, page[0])
    real = classifier_mod.load_image

    def flaky(path: str, *a: object) -> object:
        if path.endswith("p1.png"):
            raise AttributeError("'NoneType' object has no attribute 'load'")  # what row 4 used to raise
        return real(path, *a)

    monkeypatch.setattr(classifier_mod, "load_image", flaky)
    code, lines, err = _run(str(tmp_path), "--model", str(tiny_int8_tflite))
    assert code == 1 and err == ""
    assert [o.get("text") for o in lines] == [page[1], None, page[1]]
    assert lines[1] == {"path": str(tmp_path / "p1.png"), "error": "could not read it (AttributeError: 'NoneType' "
                        "object has no attribute 'load'); please report it with the file if it is a genuine picture"}


# --- row 5: unreachable paths, deep folders, symlink loops ---


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A folder another user can read (pytest's tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="digitkit-i15-"))
    folder.chmod(0o755)
    yield folder
    for p in folder.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(folder)


def _unprivileged(cmd: list[str]) -> list[str]:
    """Run as nobody when we are root: root enters any folder, whatever its mode."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder unenterable")
    return ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]


def test_a_path_inside_a_folder_that_cannot_be_entered_is_one_error_line(shared_tmp: Path,
                                                                         page: tuple[np.ndarray, str]) -> None:
    folder = shared_tmp
    cv2.imwrite(str(folder / "good.png"), page[0])
    locked = folder / "locked"
    locked.mkdir()
    cv2.imwrite(str(locked / "a.png"), page[0])
    (folder / "tree" / "private").mkdir(parents=True)
    cv2.imwrite(str(folder / "tree" / "z.png"), page[0])
    locked.chmod(0o600)  # listable by its owner only, never enterable by anyone else
    (folder / "tree" / "private").chmod(0o000)
    (folder / "good.png").chmod(0o644)
    (folder / "tree" / "z.png").chmod(0o644)
    cmd = _unprivileged([sys.executable, "-m", "digitkit", "classify", str(locked / "a.png"), str(folder / "good.png"),
                         str(folder / "tree"), "--json"])  # the shipped model: nobody cannot read the fixture's
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(o["path"], o.get("error", "read")) for o in lines] == [
        (str(locked / "a.png"), "cannot reach it: Permission denied"),
        (str(folder / "good.png"), "read"),
        (str(folder / "tree" / "private"), "cannot list this folder: Permission denied"),
        (str(folder / "tree" / "z.png"), "read"),
    ]
    assert lines[1]["text"] == lines[3]["text"] != ""  # both good photos were read


def test_a_folder_nested_1100_deep_is_walked_without_recursion(tiny_int8_tflite: Path, tmp_path: Path,
                                                              page: tuple[np.ndarray, str]) -> None:
    deep = tmp_path / "top"
    cv2.imwrite(str(tmp_path / "first.png"), page[0])
    path = deep
    path.mkdir()
    for _ in range(1100):  # one at a time: pathlib's and os's makedirs recurse too
        path = path / "d"
        path.mkdir()
    cv2.imwrite(str(path / "bottom.png"), page[0])
    assert sys.getrecursionlimit() < 1100  # the old recursive walk's RecursionError
    try:
        code, lines, err = _run(str(tmp_path / "first.png"), str(deep), "--model", str(tiny_int8_tflite))
        assert code == 0 and err == ""
        assert [o["text"] for o in lines] == [page[1]] * 2 and lines[1]["path"] == str(path / "bottom.png")
    finally:  # bottom up, one at a time: pytest's own clean-up (shutil.rmtree) would recurse 1 100 deep
        (path / "bottom.png").unlink()
        while path != tmp_path:
            path.rmdir()
            path = path.parent


def test_a_glob_over_a_symlink_loop_reads_each_file_once_and_says_so(tiny_int8_tflite: Path, tmp_path: Path,
                                                                     page: tuple[np.ndarray, str]) -> None:
    loop = tmp_path / "loop"
    (loop / "sub").mkdir(parents=True)
    cv2.imwrite(str(loop / "a.png"), page[0])
    cv2.imwrite(str(loop / "sub" / "b.png"), page[0])
    (loop / "sub" / "up").symlink_to(loop, target_is_directory=True)  # loop/sub/up/sub/up/...
    (loop / "again").symlink_to(loop / "sub", target_is_directory=True)  # a second way in, not a loop
    code, lines, err = _run(str(loop / "**" / "*.png"), "--model", str(tiny_int8_tflite))
    assert code == 1 and err == ""
    assert [(o["path"], o.get("text", o.get("error"))) for o in lines] == [
        (str(loop / "a.png"), page[1]),
        (str(loop / "again" / "b.png"), page[1]),  # "again" sorts before "sub": the first path in wins
        (str(loop / "again" / "up"), "symlink loop: this folder leads back to one that contains it; not followed"),
    ]


# --- row 6: FIFOs, devices, huge sparse files ---

_PEAK_RSS = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status), file=sys.stderr)
"""


def test_fifo_device_and_sparse_giant_are_error_lines_without_hanging(tiny_int8_tflite: Path, tmp_path: Path,
                                                                      page: tuple[np.ndarray, str]) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    sparse = tmp_path / "sparse.png"
    with open(sparse, "wb") as fh:
        fh.truncate(1_500_000_000)  # 1.5 GB of nothing: no disk used
    cv2.imwrite(str(tmp_path / "good.png"), page[0])
    cmd = [str(Path(sys.executable).parent / "digitkit"), "classify", str(fifo), "/dev/zero", str(sparse),
           str(tmp_path / "good.png"), "--model", str(tiny_int8_tflite), "--json", "--min-confidence", "0"]
    res = subprocess.run([sys.executable, "-c", _PEAK_RSS, *cmd], env=ENV, capture_output=True, text=True,
                         timeout=120)  # a FIFO used to block here forever
    rss_kib, code = map(int, res.stderr.split()[-2:])
    assert code == 1, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["path"] for o in lines] == [str(fifo), "/dev/zero", str(sparse), str(tmp_path / "good.png")]
    assert lines[0]["error"] == "a FIFO (named pipe), not an image file: only regular files are read"
    assert lines[1]["error"] == "a character device, not an image file: only regular files are read"
    assert lines[2]["error"] == ("the file is 1500 MB, more than any picture within the --max-pixels limit of 89.5 MP "
                                 "can be (872 MB); not read (raise --max-pixels if the picture is genuine)")
    assert lines[3]["text"] == page[1]
    assert rss_kib / 1024 < 400, rss_kib  # nothing of the 1.5 GB was read (it cost 3 GB before)
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # and the FIFO was not replaced or consumed


# --- row 12: results that would be wrong say so ---


def test_a_jpeg_with_corrupt_data_is_an_error_not_another_number(tiny_int8_tflite: Path, tmp_path: Path,
                                                                 page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    data = cv2.imencode(".jpg", gray)[1].tobytes()
    (tmp_path / "a_cut.jpg").write_bytes(data[: len(data) * 6 // 10] + b"\xff\xd9")  # truncated, end marker added
    (tmp_path / "b_good.jpg").write_bytes(data)
    decoded = cv2.imdecode(np.frombuffer((tmp_path / "a_cut.jpg").read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded is not None  # the premise: OpenCV decodes it, grey-filling the rest, and says nothing we see
    code, lines, err = _run(str(tmp_path), "--model", str(tiny_int8_tflite))
    assert code == 1
    assert lines[0] == {"path": str(tmp_path / "a_cut.jpg"), "error": (
        "corrupt JPEG data (libjpeg: Corrupt JPEG data: premature end of data segment); part of the picture is "
        "missing, so any digits read from it could be wrong; copy or export it again")}
    assert lines[1]["text"] == text


def test_a_jpeg_warning_never_reaches_the_terminal(tiny_int8_tflite: Path, tmp_path: Path,
                                                   page: tuple[np.ndarray, str]) -> None:
    data = cv2.imencode(".jpg", page[0])[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    res = subprocess.run([sys.executable, "-m", "digitkit", "classify", str(tmp_path / "cut.jpg"), "--model",
                          str(tiny_int8_tflite), "--json"], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "JPEG" not in res.stderr, res.stderr  # libjpeg's own line used to land there
    assert "corrupt JPEG data" in json.loads(res.stdout)["error"]


def test_float_tiff_is_refused_and_multipage_tiff_says_which_page(tiny_int8_tflite: Path, tmp_path: Path,
                                                                  page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    Image.fromarray(gray.astype(np.float32) / 255).save(tmp_path / "a_float.tif")
    Image.fromarray(gray).save(tmp_path / "b_pages.tif", save_all=True,
                               append_images=[Image.fromarray(255 - gray), Image.fromarray(gray[:, ::-1])])
    code, lines, _ = _run(str(tmp_path), "--model", str(tiny_int8_tflite))
    assert code == 1
    assert lines[0] == {"path": str(tmp_path / "a_float.tif"), "error": (
        "32-bit float TIFF pixels: not a supported pixel format (its values would read as a blank page); "
        "export it as an 8- or 16-bit picture")}
    assert {k: v for k, v in lines[1].items() if k != "digits"} == {
        "path": str(tmp_path / "b_pages.tif"), "text": text, "page": 1, "pages": 3}
    res = runner.invoke(app, ["classify", str(tmp_path / "b_pages.tif"), "--model", str(tiny_int8_tflite),
                              "--min-confidence", "0"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "(page 1 of 3 read)" in res.stdout


def test_file_names_cannot_drive_the_terminal_or_forge_rows(tiny_int8_tflite: Path, tmp_path: Path,
                                                            page: tuple[np.ndarray, str]) -> None:
    names = ["\x1b[2J\x1b[31mred.png", "two\nlines.png", "[bold]markup[red].png", "bad\udcff.png"]
    for name in names:
        cv2.imwrite(str(tmp_path / "x.png"), page[0])
        os.rename(tmp_path / "x.png", os.path.join(str(tmp_path), name))  # surrogateescape: the raw byte 0xff
    res = runner.invoke(app, ["classify", str(tmp_path), "--model", str(tiny_int8_tflite), "--min-confidence", "0"],
                        env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "\x1b" not in out and "\udcff" not in out
    rows = out.splitlines()
    assert len(rows) == 1 + len(names) + 1  # header, one row per file, summary: no forged rows
    assert "\\x1b[2J\\x1b[31mred.png" in out and "two\\nlines.png" in out and "bad\\udcff.png" in out
    assert "[bold]markup[red].png" in out  # shown as typed, not taken as rich markup
    assert sum(page[1] in r for r in rows) == len(names)


# --- row 13: --save-annotated memory is bounded ---


def test_save_annotated_writes_each_copy_without_holding_a_batch_of_images(tiny_int8_tflite: Path, tmp_path: Path,
                                                                         page: tuple[np.ndarray, str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    big = np.full((2000, 3500), 235, np.uint8)  # 7 MP: 21 MB decoded in colour
    big[:140, :page[0].shape[1]] = page[0]
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"big{i}.png"), big)
    events: list[str] = []
    real_load = classifier_mod.load_image
    monkeypatch.setattr(classifier_mod, "load_image", lambda *a: events.append("load") or real_load(*a))
    import digitkit.runtime.draw as draw_mod

    real_write = draw_mod.AnnotationWriter.write
    monkeypatch.setattr(draw_mod.AnnotationWriter, "write", lambda *a: events.append("write") or real_write(*a))
    out = tmp_path.parent / f"{tmp_path.name}-out"
    code, lines, _ = _run(str(tmp_path), "--model", str(tiny_int8_tflite), "--save-annotated", str(out))
    assert code == 0 and [o["text"] for o in lines] == [page[1]] * 10
    held = most = 0
    for e in events:
        held += 1 if e == "load" else -1
        most = max(most, held)
    # 64 MB of decoded images at most before they are drawn and written: 3 of 21 MB, the 4th tips it over
    # (before, all 10 were held until a batch of 64 tiles or 64 images filled)
    assert most <= 4, events
    assert len(list(out.iterdir())) == 10
