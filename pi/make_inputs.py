"""The fixed inputs of ``make test-pi``, written once on the host so both architectures read the same bytes.

    python pi/make_inputs.py --out .pi/inputs [--data-dir ../shared/data/mnist] [--photos ../shared/data/photos]

Writes ``images/`` (MNIST test digits as PNGs in both polarities, generated multi-digit photos as PNGs, a few
real photos when the shared folder is there), ``video/digits.avi`` (generated footage, lossless FFV1) and
``video/digits_mjpg.avi`` (the same footage as MJPG),
``tiny_int8.tflite`` (the tests' tiny model, which needs TensorFlow to build; the arm64 root has none) and
``inputs.json`` (what was written). Without the MNIST data the digits and photos come from the synthetic
Hershey-font digits of tests/synth.py, and the manifest says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "runtime"), str(REPO / "benchmarks")]

from photos import make_photo  # noqa: E402  (benchmarks/photos.py: the camera-like photo generator)
from synth import synth_digits, write_idx_folder  # noqa: E402
from tiny import convert_tiny_int8, train_tiny_keras  # noqa: E402
from videos import synth_tiles, write_digit_video  # noqa: E402

N_DIGITS = 100  # MNIST test digits 0..99, each in both polarities
N_PHOTOS = 30  # generated 640x480 photos of 1-4 digits (every 10th a blank page)
N_REAL = 8  # real photos from ../shared/data/photos: every 11th of the sorted list
VIDEO_NUMBERS = ["", "7", "42", "305", "1869"]
FRAMES_PER_NUMBER = 6


def _digits(data_dir: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST test images and labels, or synthetic ones when the data is absent."""
    if data_dir is not None and data_dir.is_dir():
        from digitkit.toolkit.data import load_mnist

        d = load_mnist(data_dir)
        return d.x_test, d.y_test, f"MNIST test set ({data_dir})"
    x, y = synth_digits(1000, 14)
    return x, y, "synthetic digits (tests/synth.py, seed 14): no MNIST data found"


def write_images(out: Path, data_dir: Path | None, photos_dir: Path | None) -> dict[str, object]:
    """Write every still image; return what was written, by kind."""
    x, y, source = _digits(data_dir)
    for polarity, flip in (("white_on_black", False), ("black_on_white", True)):
        folder = out / "mnist" / polarity
        folder.mkdir(parents=True)
        for i in range(N_DIGITS):
            cv2.imwrite(str(folder / f"{i:05d}_{int(y[i])}.png"), 255 - x[i] if flip else x[i])
    folder = out / "photos"
    folder.mkdir()
    rng = np.random.default_rng(14)
    for i in range(N_PHOTOS):
        k = 0 if i % 10 == 9 else int(rng.integers(1, 5))
        idx = rng.integers(N_DIGITS, len(x), k)  # other digits than the single-digit PNGs
        photo, _ = make_photo([x[j] for j in idx], rng)
        cv2.imwrite(str(folder / f"photo{i:02d}_{''.join(str(int(y[j])) for j in idx) or 'blank'}.png"), photo)
    real: list[str] = []
    if photos_dir is not None and photos_dir.is_dir():
        names = sorted(p.name for p in photos_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        (out / "real").mkdir()
        for name in names[::11][:N_REAL]:
            shutil.copyfile(photos_dir / name, out / "real" / name)
            real.append(name)
    return {"digit_source": source, "mnist_pngs": 2 * N_DIGITS, "generated_photos": N_PHOTOS, "real_photos": real}


def tiny_model(cache: Path) -> Path:
    """The tests' tiny int8 model, rebuilt only when the code that builds it changed."""
    key = hashlib.sha256(b"".join((REPO / "tests" / f).read_bytes() for f in ("tiny.py", "synth.py"))).hexdigest()
    path = cache / f"tiny_int8-{key[:16]}.tflite"
    if not path.is_file():
        for old in cache.glob("tiny_int8-*.tflite"):
            old.unlink()
        with tempfile.TemporaryDirectory() as tmp:
            data = write_idx_folder(Path(tmp) / "synth")  # the same synthetic set as conftest's synth_data_dir
            keras_path = train_tiny_keras(Path(tmp) / "float.keras", data, not_a_digit=False)  # as tiny_int8_tflite
            convert_tiny_int8(keras_path, data, Path(tmp) / "tiny.tflite")
            shutil.move(Path(tmp) / "tiny.tflite", path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    ap.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "data" / "photos")
    args = ap.parse_args()
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = write_images(tmp / "images", args.data_dir, args.photos)
    (tmp / "video").mkdir()
    # Lossless (FFV1): both architectures decode the same pixels, so the camera pipeline can be compared
    # exactly. MJPG as a camera sends it: FFmpeg decodes it to other pixels on arm, so that one is reported only.
    for name, fourcc in (("digits.avi", "FFV1"), ("digits_mjpg.avi", "MJPG")):
        truth = write_digit_video(tmp / "video" / name, VIDEO_NUMBERS, synth_tiles(),
                                  frames_per_number=FRAMES_PER_NUMBER, seed=14, fourcc=fourcc)
    manifest["video_frames"] = len(truth)
    shutil.copyfile(tiny_model(args.out.parent), tmp / "tiny_int8.tflite")
    (tmp / "inputs.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)  # the folder is swapped whole: never half old, half new
    tmp.rename(args.out)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
