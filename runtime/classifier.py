"""Read the digits in images: the Python twin of ``digitkit classify``.

    from digitkit.runtime import DigitClassifier
    reading = DigitClassifier(model_path=None).classify("photo.jpg")   # or a numpy array
    reading.text, reading.digits[0].label, reading.digits[0].confidence, reading.digits[0].box

One interpreter per classifier; digit tiles from many images are batched through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.fileio import is_temp
from digitkit.runtime.images import DEFAULT_MAX_PIXELS, read_image
from digitkit.runtime.interpreter import TFLiteModel
from digitkit.runtime.preprocess import as_mnist_tile, ink_map, stroke_width, to_gray
from digitkit.runtime.resize import shrink
from digitkit.runtime.segment import Segment, SegmentConfig, find_digits

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "digitkit_seed_int8.tflite"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm")
DEFAULT_MIN_CONFIDENCE = 0.35  # see benchmarks/photos.py rejection and the README: measured, not guessed


@dataclass(frozen=True)
class ClassifyConfig:
    """Every option of ``digitkit classify``; the CLI and the Python twin share these defaults."""

    model_path: str | None = None  # None = the model shipped in runtime/models/
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    threads: int | None = None
    backend: str | None = None  # "litert", "tflite-runtime" or None (first installed)
    polarity: str = "auto"
    min_contrast: int = 40  # faintest ink, (paper - ink) / paper * 255
    max_stroke: float = 0.62  # widest stroke / digit box; wider is a blob, not writing (MNIST max: 0.60)
    batch_size: int = 64  # digit tiles per interpreter call
    max_side: int = 1280  # bigger pictures are scaled down first (boxes are reported in the original pixels)
    max_pixels: int = DEFAULT_MAX_PIXELS  # a file whose header claims more is refused before decoding
    segment: SegmentConfig = field(default_factory=SegmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "min_confidence": self.min_confidence, "threads": self.threads,
                "backend": self.backend, "polarity": self.polarity, "min_contrast": self.min_contrast,
                "max_stroke": self.max_stroke,
                "batch_size": self.batch_size, "max_side": self.max_side, "max_pixels": self.max_pixels}


@dataclass(frozen=True)
class Digit:
    """One digit read: its label, the model's probability for it, and its box (x, y, w, h) in pixels."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": round(self.confidence, 4), "box": list(self.box)}


@dataclass(frozen=True)
class Reading:
    """What one image says: its digits left to right and their labels joined (``""`` when none)."""

    path: str
    text: str
    digits: tuple[Digit, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "text": self.text, "digits": [d.to_dict() for d in self.digits]}


@dataclass(frozen=True)
class ReadError:
    """An input that could not be read (missing, not an image, ...); the run goes on."""

    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}


Source = str | os.PathLike[str] | np.ndarray


def _images_under(folder: str) -> Iterator[str | ReadError]:
    """Image files under ``folder`` in the order of their sorted full paths, listing one folder at a time
    (a folder of a million files costs one listing, never a list of every path below it)."""
    try:
        with os.scandir(folder) as it:
            # "sub/" sorts like the paths inside it would: "a.png" < "a/x.png", as in sorted(rglob(...)).
            names = sorted(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name for e in it)
    except OSError as exc:  # a subfolder we may not list: say so, go on with the rest
        yield ReadError(folder, f"cannot list this folder: {exc.strerror or exc}")
        return
    for name in names:
        if name.endswith("/"):
            yield from _images_under(os.path.join(folder, name[:-1]))
        elif (os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not is_temp(name)  # a killed writer's leftover
              and os.path.isfile(path := os.path.join(folder, name))):
            yield path


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str | ReadError]:
    """Files, folders (recursively: files with an image suffix, sorted) and glob patterns -> file paths,
    lazily: memory does not grow with the number of files.

    A path that does not exist, or a glob or folder that holds no image, becomes a :class:`ReadError`.
    """
    import glob

    for raw in paths:
        text = os.fspath(raw)
        p = Path(text)
        if p.is_dir():
            found = False
            for item in _images_under(str(p)):
                found = found or isinstance(item, str)
                yield item
            if not found:
                yield ReadError(text, f"no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...) in folder")
        elif p.exists():
            yield text
        elif glob.has_magic(text):
            matches = sorted(f for f in glob.glob(text, recursive=True) if Path(f).is_file() and not is_temp(f))
            yield from matches or [ReadError(text, "no file matches this pattern")]
        else:
            yield ReadError(text, "no such file or folder")


class DigitClassifier:
    """Finds and reads handwritten digits with one TFLite interpreter, reused for every image.

    Args:
        model_path: a digit ``.tflite`` (28x28x1 in, 10 classes out); None = the shipped model.
        config: the remaining options (:class:`ClassifyConfig`); keyword overrides win over it.

    Raises:
        InferenceError: the model is missing or not loadable, or no interpreter is installed.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, config: ClassifyConfig | None = None,
                 **overrides: Any) -> None:
        cfg = config or ClassifyConfig()
        if overrides:
            cfg = ClassifyConfig(**{**cfg.__dict__, **overrides})
        if model_path is not None:
            cfg = ClassifyConfig(**{**cfg.__dict__, "model_path": os.fspath(model_path)})
        self.config = cfg
        path = Path(cfg.model_path) if cfg.model_path else DEFAULT_MODEL
        if cfg.model_path is None and not path.is_file():
            raise InferenceError(f"the shipped model {path} is missing; rebuild it with `make model` "
                                 "or pass --model FILE.tflite")
        self.model = TFLiteModel(path, backend=cfg.backend, threads=cfg.threads)
        self.tile_size = self.model.metadata.input_size

    # --- one image -> digit candidates (no model call) ---

    def segment(self, image: np.ndarray) -> list[Segment]:
        """The digit candidates of one image, left to right, as MNIST-normalised tiles."""
        gray = to_gray(image)
        if gray.shape == self.tile_size:
            tile = as_mnist_tile(gray, self.config.min_contrast)
            if tile is None:
                return []
            ys, xs = np.nonzero(tile > 63)
            box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1) if len(xs) \
                else (0, 0, *tile.shape[::-1])
            return [Segment(box=box, tile=tile)]
        scale = min(1.0, self.config.max_side / max(gray.shape))
        if scale < 1.0:  # a 12-megapixel phone photo: its digits stay legible at this size, and RAM stays small
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))  # a 1x3000 strip
            gray = shrink(gray, size)
        inkmap = ink_map(gray, self.config.polarity, self.config.min_contrast)
        segments = find_digits(inkmap.ink, inkmap.threshold, self.config.segment)
        if scale < 1.0:
            segments = [Segment(box=tuple(round(v / scale) for v in s.box), tile=s.tile)  # type: ignore[arg-type]
                        for s in segments]
        return segments

    def _reading(self, name: str, segments: list[Segment], probs: np.ndarray) -> Reading:
        digits = []
        for seg, p in zip(segments, probs, strict=True):
            label = int(p.argmax())
            if float(p[label]) >= self.config.min_confidence and stroke_width(seg.tile) <= self.config.max_stroke:
                digits.append(Digit(label=int(self.model.metadata.labels[label]), confidence=float(p[label]),
                                    box=seg.box))
        return Reading(path=name, text="".join(str(d.label) for d in digits), digits=tuple(digits))

    # --- the public API ---

    def classify(self, image: Source) -> Reading:
        """Read one image (a path or a numpy array: gray, BGR or BGRA).

        Raises:
            InferenceError: the file cannot be read or the array is not an image.
        """
        result = next(iter(self.classify_many([image])))
        if isinstance(result, ReadError):
            raise InferenceError(f"{result.path}: {result.error}")
        return result

    def classify_many(self, sources: Iterable[Source | ReadError],
                      keep_images: bool = False) -> Iterator[Reading | ReadError]:
        """Read many images in order, batching their digit tiles through the interpreter.

        Args:
            sources: paths, numpy arrays, or ReadErrors (from :func:`expand_paths`, passed through).
            keep_images: also yield the decoded BGR image with each reading, as ``(reading, image)``.

        Yields:
            A :class:`Reading` or :class:`ReadError` per source (pairs when ``keep_images``), in order.
        """
        pending: list[tuple[Reading | ReadError | str, list[Segment], np.ndarray | None]] = []
        n_tiles = 0
        for i, src in enumerate(sources):
            item, segments, img = self._prepare(i, src, keep_images)
            pending.append((item, segments, img if keep_images else None))
            n_tiles += len(segments)
            # Also bounded in images: blank pages and bad files add no tiles, and must not pile up (with
            # their decoded images when keep_images) until a batch of tiles fills.
            if n_tiles >= self.config.batch_size or len(pending) >= self.config.batch_size:
                yield from self._flush(pending, keep_images)
                pending, n_tiles = [], 0
        yield from self._flush(pending, keep_images)

    def _prepare(self, i: int, src: Source | ReadError,
                 keep_images: bool) -> tuple[str | ReadError, list[Segment], np.ndarray | None]:
        """One source -> (its name, its digit candidates, its image), or (ReadError, [], None)."""
        if isinstance(src, ReadError):
            return src, [], None
        name = f"<array {i}>" if isinstance(src, np.ndarray) else os.fspath(src)
        try:
            img = src if isinstance(src, np.ndarray) else read_image(src, keep_images, self.config.max_pixels)
            return name, self.segment(img), img
        except InferenceError as exc:
            return ReadError(name, str(exc).removeprefix(f"{name}: ")), [], None
        except OSError as exc:  # a folder, a permission problem, a file gone since it was listed
            return ReadError(name, exc.strerror or str(exc)), [], None

    def _flush(self, pending: list[tuple[Any, list[Segment], np.ndarray | None]],
               keep_images: bool) -> Iterator[Any]:
        tiles = [s.tile for _, segs, _ in pending for s in segs]
        probs = (self.model.predict_proba(np.stack(tiles), batch_size=max(len(tiles), 1)) if tiles
                 else np.zeros((0, len(self.model.metadata.labels)), np.float32))
        at = 0
        for item, segs, img in pending:
            result = item if isinstance(item, ReadError) else self._reading(item, segs, probs[at:at + len(segs)])
            at += len(segs)
            yield (result, img) if keep_images else result

    def probabilities(self, image: Source) -> tuple[list[Segment], np.ndarray]:
        """The candidates of one image and the model's full probability rows for them (no threshold)."""
        img = image if isinstance(image, np.ndarray) else read_image(image, max_pixels=self.config.max_pixels)
        segments = self.segment(img)
        if not segments:
            return [], np.zeros((0, len(self.model.metadata.labels)), np.float32)
        return segments, self.model.predict_proba(np.stack([s.tile for s in segments]))


def classify(paths: Iterable[str | os.PathLike[str]], config: ClassifyConfig | None = None,
             annotate_dir: str | os.PathLike[str] | None = None) -> Iterator[Reading | ReadError]:
    """Read every image under ``paths`` (files, folders, globs); the library behind ``digitkit classify``.

    Args:
        paths: files, folders (recursive) and glob patterns.
        config: options (defaults: :class:`ClassifyConfig`).
        annotate_dir: if set, write a copy of each image with boxes, labels and confidences there.

    Yields:
        A :class:`Reading` or :class:`ReadError` per input, in order.

    Raises:
        InferenceError: the model cannot be loaded, or ``annotate_dir`` cannot be created.
    """
    clf = DigitClassifier(config=config)
    sources = expand_paths(paths)
    if annotate_dir is None:
        yield from clf.classify_many(sources)
        return
    from digitkit.runtime.draw import AnnotationWriter

    writer = AnnotationWriter(annotate_dir)
    for result, img in clf.classify_many(sources, keep_images=True):
        if isinstance(result, Reading) and img is not None:
            try:
                writer.write(result, img)
            except OSError as exc:
                result = ReadError(result.path, f"could not write the annotated copy: {exc.strerror or exc}")
        yield result
