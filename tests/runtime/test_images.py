"""Issue 7, images: one test per row of the matrix, each through the Python twin and ``digitkit classify``
(message and exit code). Every fixture image is generated here.

The tiny fixture model is not a good reader, so the pictures are built from tiles it reads right: then a
wrong reading is the image handling's fault, not the model's.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from synth import synth_digits
from typer.testing import CliRunner

import digitkit.runtime.images as images_mod
from digitkit.cli import app
from digitkit.runtime import DigitClassifier, InferenceError
from digitkit.runtime.classifier import ClassifyConfig
from digitkit.runtime.images import DEFAULT_MAX_PIXELS, read_header
from digitkit.runtime.preprocess import mnist_normalise

runner = CliRunner()
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def clf(tiny_int8_tflite: Path) -> DigitClassifier:
    return DigitClassifier(model_path=tiny_int8_tflite, min_confidence=0.0)


@pytest.fixture(scope="module")
def number(clf: DigitClassifier) -> tuple[np.ndarray, str]:
    """A white-on-black ink mask of a 4-digit number the tiny model reads right, and that number."""
    x, y = synth_digits(400, 7)
    x = np.stack([mnist_normalise(np.where(t > 40, t, 0).astype(np.uint8)) for t in x])
    p = clf.model.predict_proba(x)
    ok = np.nonzero((p.argmax(1) == y) & (p.max(1) > 0.8))[0]
    picked: list[int] = []
    for i in ok:  # four different digits
        if int(y[i]) not in {int(y[j]) for j in picked}:
            picked.append(int(i))
        if len(picked) == 4:
            break
    mask = np.zeros((140, 40 + 100 * len(picked)), np.uint8)
    for k, i in enumerate(picked):
        mask[28:112, 30 + 100 * k:114 + 100 * k] = cv2.resize(x[i], (84, 84), interpolation=cv2.INTER_CUBIC)
    return mask, "".join(str(int(y[i])) for i in picked)


@pytest.fixture(scope="module")
def page(clf: DigitClassifier, number: tuple[np.ndarray, str]) -> tuple[np.ndarray, str]:
    """The number as dark ink on light paper (gray), checked to read right as an array."""
    mask, text = number
    gray = (235 - mask.astype(np.float32) * 0.75).astype(np.uint8)
    assert clf.classify(gray).text == text  # the premise of every test below
    return gray, text


def _json_run(*args: str) -> tuple[int, list[dict]]:
    res = runner.invoke(app, ["classify", *args, "--json"])
    return res.exit_code, [json.loads(line) for line in res.stdout.splitlines()]


def _pillow_bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# --- one test per row ---


def test_zero_byte_file(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InferenceError, match=r"empty\.png: empty file \(0 bytes\)"):
        clf.classify(empty)
    code, lines = _json_run(str(empty), "--model", str(tiny_int8_tflite))
    assert code == 1 and lines == [{"path": str(empty), "error": lines[0]["error"]}]
    assert lines[0]["error"].startswith("empty file (0 bytes)") and "again" in lines[0]["error"]


def test_text_file_named_png(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path,
                             page: tuple[np.ndarray, str]) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("shopping list: eggs, milk\n")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), page[0])
    with pytest.raises(InferenceError, match=r"notes\.png: not an image: the file starts with b'shopping'"):
        clf.classify(fake)
    code, lines = _json_run(str(fake), str(good), "--model", str(tiny_int8_tflite), "--min-confidence", "0")
    assert code == 1  # the run went on: the good file after the bad one is read
    assert lines[0]["path"] == str(fake) and "not an image" in lines[0]["error"] and "PNG, JPEG" in lines[0]["error"]
    assert lines[1]["text"] == page[1]


@pytest.mark.parametrize("fmt", ["png", "jpg"])
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.99])
def test_truncated_png_and_jpeg(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path,
                                page: tuple[np.ndarray, str], fmt: str, keep: float) -> None:
    data = cv2.imencode(f".{fmt}", page[0])[1].tobytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[:int(len(data) * keep)])
    kind = {"png": "PNG", "jpg": "JPEG"}[fmt]
    with pytest.raises(InferenceError, match=rf"cut\.{fmt}: truncated {kind}: .*stops after {int(len(data) * keep)} "
                                             r"bytes.*copy or export it again"):
        clf.classify(cut)
    code, lines = _json_run(str(cut), "--model", str(tiny_int8_tflite))
    assert code == 1 and lines[0]["error"].startswith(f"truncated {kind}")
    # The whole file, and a JPEG with bytes after its end marker (phones append trailers), still read.
    whole = tmp_path / f"whole.{fmt}"
    whole.write_bytes(data + (b"\x00trailer" * 50 if fmt == "jpg" else b""))
    assert clf.classify(whole).text == page[1]


def test_one_pixel_and_blank_images_read_as_no_digits(tiny_int8_tflite: Path, tmp_path: Path) -> None:
    for name, img in (("dot.png", np.array([[0]], np.uint8)), ("dot.jpg", np.array([[255]], np.uint8)),
                      ("blank.png", np.full((300, 400), 250, np.uint8)), ("row.png", np.zeros((1, 500), np.uint8))):
        cv2.imwrite(str(tmp_path / name), img)
    code, lines = _json_run(str(tmp_path), "--model", str(tiny_int8_tflite), "--min-confidence", "0")
    assert code == 0 and len(lines) == 4
    assert all(obj["text"] == "" and obj["digits"] == [] for obj in lines), lines


def test_16bit_png_reads_like_8bit(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path,
                                   page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), gray.astype(np.uint16) * 257)
    assert cv2.imread(str(deep), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # really a 16-bit file
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), gray)
    r16, r8 = clf.classify(deep), clf.classify(flat)
    assert r16.text == r8.text == text and [d.box for d in r16.digits] == [d.box for d in r8.digits]
    rgb16 = tmp_path / "rgb16.png"
    cv2.imwrite(str(rgb16), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.uint16) * 257)
    code, lines = _json_run(str(rgb16), "--model", str(tiny_int8_tflite), "--min-confidence", "0")
    assert code == 0 and lines[0]["text"] == text


def _transparent_pngs(mask: np.ndarray) -> dict[str, bytes]:
    """The number drawn only in the alpha channel (the colour under transparent pixels is black, as paint
    programs store it), in the ways a PNG can be transparent."""
    zeros = np.zeros_like(mask)
    white = np.full_like(mask, 255)
    rgba_black = np.dstack([zeros, zeros, zeros, mask])
    rgba_white = np.dstack([white, white, white, mask])  # white ink for a dark theme: its paper must be dark
    on = mask > 127
    palette = Image.fromarray(on.astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 20, 20, 80])  # index 0 (black) transparent, index 1 the ink
    keyed = np.where(on, 30, 0).astype(np.uint8)  # gray with a colour key: pixel value 0 is transparent
    return {"rgba": _pillow_bytes(Image.fromarray(rgba_black, "RGBA"), "PNG"),
            "rgba_white_ink": _pillow_bytes(Image.fromarray(rgba_white, "RGBA"), "PNG"),
            "la": _pillow_bytes(Image.fromarray(np.dstack([zeros, mask]), "LA"), "PNG"),
            "palette_trns": _pillow_bytes(palette, "PNG", transparency=0),
            "gray_colour_key": _pillow_bytes(Image.fromarray(keyed, "L"), "PNG", transparency=0),
            "rgba_16bit": cv2.imencode(".png", rgba_black.astype(np.uint16) * 257)[1].tobytes()}


def test_transparent_background_reads_as_paper(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path,
                                               number: tuple[np.ndarray, str]) -> None:
    mask, text = number
    pngs = _transparent_pngs(mask)
    for name, data in pngs.items():
        (tmp_path / f"{name}.png").write_bytes(data)
        assert read_header(data).alpha, name
    # What OpenCV alone makes of it: transparent black is black, the number vanishes.
    naive = cv2.imdecode(np.frombuffer(pngs["rgba"], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert naive.max() == 0
    for name in pngs:
        assert clf.classify(tmp_path / f"{name}.png").text == text, name
    code, lines = _json_run(str(tmp_path), "--model", str(tiny_int8_tflite), "--min-confidence", "0")
    assert code == 0 and [o["text"] for o in lines] == [text] * len(pngs)
    # --save-annotated gets the flattened picture in colour: paper where it was transparent.
    out = tmp_path / "annotated"
    res = runner.invoke(app, ["classify", str(tmp_path / "rgba.png"), "--model", str(tiny_int8_tflite),
                              "--save-annotated", str(out), "--json", "--min-confidence", "0"])
    assert res.exit_code == 0, res.output
    drawn = cv2.imread(str(out / "rgba.png"))
    assert drawn.shape == (*mask.shape, 3) and (drawn[0, 0] == 255).all()


def test_mostly_opaque_picture_with_transparent_corners_keeps_its_paper(clf: DigitClassifier,
                                                                        page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    alpha = np.full_like(gray, 255)
    alpha[:30, :30] = alpha[-30:, -30:] = 0  # rounded-corner style cut-outs, stored black underneath
    bgra = np.dstack([gray, gray, gray, alpha])
    bgra[alpha == 0, :3] = 0
    data = cv2.imencode(".png", bgra)[1].tobytes()
    flat = images_mod.decode_image(data)
    assert abs(int(flat[0, 0]) - int(np.median(gray))) <= 1  # the page's own paper, not black, not white
    assert clf.classify(flat).text == text


def test_cmyk_jpeg(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path, page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    cmyk = Image.fromarray(gray).convert("CMYK")
    path = tmp_path / "print.jpg"
    path.write_bytes(_pillow_bytes(cmyk, "JPEG", quality=95))
    assert Image.open(path).mode == "CMYK"
    decoded = images_mod.read_image(path)
    assert np.abs(decoded.astype(int) - gray).mean() < 4  # not inverted, not a colour soup
    code, lines = _json_run(str(path), "--model", str(tiny_int8_tflite), "--min-confidence", "0")
    assert code == 0 and lines[0]["text"] == text


@pytest.mark.parametrize("fmt", ["JPEG", "PNG-RGBA"])
def test_exif_orientation_is_honoured(clf: DigitClassifier, tiny_int8_tflite: Path, tmp_path: Path,
                                      page: tuple[np.ndarray, str], fmt: str) -> None:
    """A phone stores the sensor's pixels and an Orientation tag; the reading is of the displayed picture."""
    gray, text = page
    upright = clf.classify(gray)
    stored = np.ascontiguousarray(np.rot90(gray, k=1))  # held 90 deg off: Orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / ("phone.jpg" if fmt == "JPEG" else "phone.png")
    if fmt == "JPEG":
        path.write_bytes(_pillow_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    else:  # the transparency path decodes with Pillow; it must turn the picture too
        alpha = np.full_like(stored, 255)
        alpha[:4] = 0
        path.write_bytes(_pillow_bytes(Image.fromarray(np.dstack([stored] * 3 + [alpha]), "RGBA"), "PNG",
                                       exif=exif.tobytes()))
    assert clf.classify(stored).text != text  # sideways, the number does not read
    r = clf.classify(path)
    assert r.text == text
    for got, want in zip(r.digits, upright.digits, strict=True):  # boxes in the displayed orientation
        assert all(abs(a - b) <= 3 for a, b in zip(got.box, want.box, strict=True)), (got.box, want.box)
    code, lines = _json_run(str(path), "--model", str(tiny_int8_tflite), "--min-confidence", "0")
    assert code == 0 and lines[0]["text"] == text


def _claims_30000(fmt: str, small_page: np.ndarray) -> bytes:
    """A small file whose header says 30000 x 30000 (a decompression bomb's shape)."""
    if fmt == "png":
        ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 30001))
                + _png_chunk(b"IEND", b""))
    if fmt == "jpg":
        data = bytearray(cv2.imencode(".jpg", small_page)[1].tobytes())
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
        return bytes(data)
    # BMP goes through Pillow's header reader, whose own bomb check (2 x 89.5 MP) must not be what speaks.
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\0" * 16


@pytest.mark.parametrize("fmt", ["png", "jpg", "bmp"])
def test_header_claiming_30000x30000_is_refused_before_decoding(clf: DigitClassifier, tiny_int8_tflite: Path,
                                                                tmp_path: Path, page: tuple[np.ndarray, str],
                                                                monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    big = tmp_path / f"big.{fmt}"
    big.write_bytes(_claims_30000(fmt, page[0][:40, :40]))
    assert big.stat().st_size < 2_000_000
    decoded = []
    real_imdecode = images_mod.cv2.imdecode
    monkeypatch.setattr(images_mod.cv2, "imdecode", lambda *a: decoded.append(1) or real_imdecode(*a))
    want = (rf"big\.{fmt}: header says 30000x30000 = 900\.0 MP, above the --max-pixels limit of 89\.5 MP; "
            r"not decoded \(raise --max-pixels if the picture is genuine\)")
    with pytest.raises(InferenceError, match=want):
        clf.classify(big)
    assert decoded == []
    code, lines = _json_run(str(big), "--model", str(tiny_int8_tflite))
    assert code == 1 and "header says 30000x30000 = 900.0 MP" in lines[0]["error"] and decoded == []


def test_max_pixels_is_configurable(tiny_int8_tflite: Path, tmp_path: Path, page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), gray)
    n = gray.size
    assert ClassifyConfig().max_pixels == DEFAULT_MAX_PIXELS == 89_478_485
    code, lines = _json_run(str(path), "--model", str(tiny_int8_tflite), "--max-pixels", str(n - 1))
    assert code == 1 and f"= {n / 1e6:.1f} MP, above the --max-pixels limit" in lines[0]["error"]
    code, lines = _json_run(str(path), "--model", str(tiny_int8_tflite), "--max-pixels", str(n),
                            "--min-confidence", "0")
    assert code == 0 and lines[0]["text"] == text
    small = DigitClassifier(model_path=tiny_int8_tflite, max_pixels=n - 1)  # the Python twin
    with pytest.raises(InferenceError, match="above the --max-pixels limit"):
        small.classify(path)
    res = runner.invoke(app, ["classify", str(path), "--max-pixels", "0"])
    assert res.exit_code == 2 and "--max-pixels" in res.output
    # Above Pillow's own bomb limit (2 x 89.5 MP) our setting still decides: the header is read, not refused.
    bmp = _claims_30000("bmp", gray)
    assert read_header(bmp).pixels == 900_000_000


def test_formats_only_pillow_reads(clf: DigitClassifier, tmp_path: Path, page: tuple[np.ndarray, str]) -> None:
    gray, text = page
    tga = _pillow_bytes(Image.fromarray(gray), "TGA")
    assert cv2.imdecode(np.frombuffer(tga, np.uint8), cv2.IMREAD_GRAYSCALE) is None  # OpenCV has no TGA reader
    (tmp_path / "scan.tga").write_bytes(tga)
    assert clf.classify(tmp_path / "scan.tga").text == text
    (tmp_path / "cut.tga").write_bytes(tga[: len(tga) // 2])
    with pytest.raises(InferenceError, match=r"cut\.tga: corrupt TGA data \(.*truncated.*\); copy or export it again"):
        clf.classify(tmp_path / "cut.tga")


# --- a folder of 10 000 files, some bad: the rest are read and memory stays flat ---

_PEAK_RSS = """
import os, sys
out = sys.argv.pop()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _folder(root: Path, n: int, tiles: np.ndarray) -> tuple[set[str], set[str]]:
    """``n`` 28x28 PNGs (MNIST-like), every 97th zero bytes, text or truncated; returns (good, bad) paths."""
    root.mkdir()
    good, bad = set(), set()
    encoded = [cv2.imencode(".png", t)[1].tobytes() for t in tiles]
    for i in range(n):
        path = root / f"{i // 1000:02d}" / f"{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        data = encoded[i % len(encoded)]
        if i % 97 == 5:
            data = (b"", b"just some text\n", data[: len(data) // 2])[(i // 97) % 3]
            bad.add(str(path))
        else:
            good.add(str(path))
        path.write_bytes(data)
    return good, bad


def _run_with_peak_rss(args: list[str], out: Path) -> tuple[int, float]:
    res = subprocess.run([sys.executable, "-c", _PEAK_RSS, *args, str(out)], capture_output=True, text=True,
                         timeout=300, cwd=out.parent)
    rss_kib, code = res.stdout.split()
    return int(code), int(rss_kib) / 1024


# `timing`: each run must finish within _run_with_peak_rss's 300 s, a budget for native speed (an emulated Pi 3
# took longer than that for the 10 000 files and failed on it).
@pytest.mark.timing
def test_ten_thousand_files_some_bad_memory_stays_flat(tiny_int8_tflite: Path, tmp_path: Path) -> None:
    tiles, _ = synth_digits(200, 3)
    runs = {}
    for n in (1_000, 10_000):
        good, bad = _folder(tmp_path / f"n{n}", n, tiles)
        for mode in ("--json", "--table"):
            out = tmp_path / f"out{n}{mode}.txt"
            args = [str(BIN / "digitkit"), "classify", str(tmp_path / f"n{n}"), "--model", str(tiny_int8_tflite),
                    "--threads", "1"] + (["--json"] if mode == "--json" else [])
            code, rss = _run_with_peak_rss(args, out)
            runs[n, mode] = rss
            assert code == 1, out.read_text()[-2000:]
            if mode == "--json":
                lines = [json.loads(line) for line in out.read_text().splitlines()]
                assert len(lines) == n
                assert {o["path"] for o in lines if "text" in o} == good
                errors = {o["path"]: o["error"] for o in lines if "error" in o}
                assert set(errors) == bad and len(bad) >= n // 100
                assert all("\n" not in e and (e.startswith(("empty file", "not an image", "truncated PNG")))
                           for e in errors.values()), set(errors.values())
            else:
                text = out.read_text()
                assert text.count("\n") == n + 2 and f"{n} files: {len(good)} read" in text
    # Results stream and folders are listed one at a time: 9 000 more files measured +0.4 MB here. Holding
    # every Reading would cost ~4.5 MB, the rich Table the table used to be held every row (+20 MB).
    for mode in ("--json", "--table"):
        assert runs[10_000, mode] - runs[1_000, mode] < 2.5, runs
