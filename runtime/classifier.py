"""Read the digits in images: the Python twin of ``digitkit classify``.

    from digitkit.runtime import DigitClassifier
    reading = DigitClassifier(model_path=None).classify("photo.jpg")   # or a numpy array
    reading.text, reading.digits[0].label, reading.digits[0].confidence, reading.digits[0].box

One interpreter per classifier; digit tiles from many images are batched through it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np

from digitkit.runtime import sequence
from digitkit.runtime.context import MIN_LINE_BEFORE_SPLIT, text_lines
from digitkit.runtime.deskew import ROW_MIN_DIGITS, turned_row, upright
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.images import load_image, read_image
from digitkit.runtime.inputs import IMAGE_SUFFIXES, ReadError, check_output_folder, expand_paths
from digitkit.runtime.interpreter import TFLiteModel
from digitkit.runtime.preprocess import InkMap, as_mnist_tile, ink_map, stroke_width, to_gray
from digitkit.runtime.reading import (  # noqa: F401 - DEFAULT_MIN_CONFIDENCE, DEFAULT_MODEL: re-exported
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MODEL,
    SEQUENCE_MODEL,
    Candidates,
    ClassifyConfig,
    Digit,
    Reading,
    resolve_model,
)
from digitkit.runtime.resize import shrink
from digitkit.runtime.rules import remove_rules
from digitkit.runtime.segment import Segment, find_digits
from digitkit.runtime.sequence import Piece, SequenceModel, SequenceRead, line_input, silent, whole_pieces
from digitkit.runtime.split import split_touching

_REPORT = "please report it with the file if it is a genuine picture"
__all__ = ["IMAGE_SUFFIXES", "ClassifyConfig", "Digit", "DigitClassifier", "ReadError", "Reading", "classify",
           "expand_paths", "resolve_model"]
# Decoded images held for --save-annotated until their batch of tiles goes through the model: past this many
# bytes the batch is cut short, so memory is one batch of tiles plus at most this (or one big picture).
HELD_IMAGE_BYTES = 64 << 20


Source = str | os.PathLike[str] | np.ndarray


@dataclasses.dataclass(frozen=True)
class _Retry:
    """What a second try at a picture the first reading did not settle starts from: the ink map its candidates
    were found on (rules removed), the same thresholded lower (None when its noise allows no lower floor), the
    working size's scale, and the lone candidate as found level when the first reading turned it."""

    found: InkMap
    fainter: InkMap | None
    scale: float
    level: tuple[Segment, ...] = ()  # the lone candidate as found level, when the first reading turned it

    @property
    def nbytes(self) -> int:
        """The bytes it holds: the two ink maps are one array unless rules were removed from ``found``."""
        return sum({id(m.ink): m.ink.nbytes for m in (self.found, self.fainter) if m is not None}.values())


@dataclasses.dataclass(frozen=True)
class SecondTry:
    """One second try at a picture the first reading did not settle (see ``DigitClassifier._second_tries``), said
    once here for ``classify`` and ``--explain`` alike: ``name`` (``DigitClassifier.stages(again=name)``), ``asks``
    whether a reading leaves the picture open to it, ``find`` its (ink map, candidates) from what the first look
    kept (the classifier, the picture's ``_Retry``, its first candidates; [] where the try does not apply), and
    ``keeps`` whether its reading (second) replaces the one before (first)."""

    name: str
    asks: Callable[[Reading], bool]
    find: Callable[[Any, _Retry, list[Segment]], tuple[InkMap, list[Segment]]]
    keeps: Callable[[Reading, Reading], bool]


# In this order, each on what the tries before it left:
# - "level": a lone candidate the first reading turned upright (deskew.upright: a bet that a blob whose ink runs
#   along a slope is a row of touching digits) where that found no row: read as it was found, level, kept if it
#   finds more digits. A lone digit with a long stroke (a 5's flag, a 7's bar) is as elongated as a short row,
#   and turned it read as "not a digit";
# - "faint": a picture still without a digit, at the fainter threshold where the noise set the threshold (a
#   faint pen on grainy paper), kept if it finds digits;
# - "turned": one still without a digit, turned by the slope of the biggest candidate's ink (a row of touching
#   digits at a slope: deskew.turned_row), kept if it finds a row of at least ROW_MIN_DIGITS digits.
SECOND_TRIES = (
    SecondTry("level", lambda r: len(r.digits) < ROW_MIN_DIGITS,
              lambda clf, r, segs: (r.found, list(r.level)),
              lambda first, second: len(second.digits) > len(first.digits)),
    SecondTry("faint", lambda r: not r.digits,
              lambda clf, r, segs: clf._find(r.fainter, r.scale) if r.fainter is not None else (r.found, []),
              lambda first, second: bool(second.digits)),
    SecondTry("turned", lambda r: not r.digits,
              lambda clf, r, segs: (r.found, clf._turned(r.found, segs, r.scale)),
              lambda first, second: len(second.digits) >= ROW_MIN_DIGITS),
)
_TRY_NAMED = {t.name: t for t in SECOND_TRIES}


# One image waiting for its batch of tiles: (its name and page count, or why it failed), its candidates, its
# image (kept for --save-annotated), and what a second try would start from (None for a tile or a failure).
_Pending = tuple[Any, list[Segment], np.ndarray | None, _Retry | None]


class DigitClassifier:
    """Finds and reads handwritten digits with one TFLite interpreter, reused for every image.

    Args:
        model_path: a digit ``.tflite`` (28x28x1 in; 10 digits out, or 11 with "not a digit"), or the name of a
            shipped model: ``"fast"`` (the default, also None) or ``"accurate"``.
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
        path = resolve_model(cfg.model_path)
        self.model = TFLiteModel(path, backend=cfg.backend, threads=cfg.threads)
        self.tile_size = self.model.metadata.input_size
        bad = [self.model.metadata.labels[i] for i in self.model.metadata.digit_indices
               if not self.model.metadata.labels[i].isdigit()]
        if bad:  # a reading is digits: a model whose digit outputs are labelled otherwise is not a digit model
            raise InferenceError(f"{path}: the model's labels {bad[:3]} are not digits; not a digit model")
        self._labels = self.model.metadata.labels  # read by --explain (runtime/explain.py)
        self.sequence = (SequenceModel(SEQUENCE_MODEL, backend=cfg.backend, threads=cfg.threads)
                         if cfg.read_whole and SEQUENCE_MODEL.is_file() else None)

    # --- one image -> digit candidates (no model call) ---

    def segment(self, image: np.ndarray) -> list[Segment]:
        """The digit candidates of one image, left to right, as MNIST-normalised tiles."""
        return self.stages(image)[1]

    def stages(self, image: np.ndarray, again: str | None = None) -> tuple[InkMap | None, list[Segment]]:
        """The ink map (None for a picture that already is a tile; at the working size, see ``max_side``)
        and the digit candidates of one image: what ``segment`` returns and ``--explain`` draws.

        ``again``: the candidates of the second try of that name instead (``SECOND_TRIES``; [] where it does not
        apply), found as ``classify`` finds them."""
        retry, segments = self._look(image)
        if retry is None:
            return None, segments if again is None else []
        if again is None:
            return retry.found, segments
        if again not in _TRY_NAMED:
            raise ValueError(f"no second try named {again!r}; the tries are {list(_TRY_NAMED)}")
        return _TRY_NAMED[again].find(self, retry, segments)

    def _look(self, image: np.ndarray) -> tuple[_Retry | None, list[Segment]]:
        """The first look at one image, as ``classify`` and ``stages`` take it: (what a second try would start
        from, its digit candidates), or (None, the tile's candidates) for a picture that already is a tile."""
        inkmap, scale, tile = self._ink(image)
        if inkmap is None:
            return None, tile
        found, segments, level = self._find_both(inkmap, scale)
        return _Retry(found, inkmap.fainter(), scale, tuple(level)), segments

    def _ink(self, image: np.ndarray) -> tuple[InkMap | None, float, list[Segment]]:
        """(the ink map at the working size, that size's scale, []), or (None, 1.0, the tile's candidates) for a
        picture that already is a tile."""
        gray = to_gray(image)
        if gray.shape == self.tile_size:
            tile = as_mnist_tile(gray, self.config.min_contrast)
            if tile is None:
                return None, 1.0, []
            ys, xs = np.nonzero(tile > 63)
            box = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1) if len(xs) \
                else (0, 0, *tile.shape[::-1])
            return None, 1.0, [Segment(box=box, tile=tile)]
        scale = min(1.0, self.config.max_side / max(gray.shape))
        if scale < 1.0:  # a 12-megapixel phone photo: its digits stay legible at this size, and RAM stays small
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))  # a 1x3000 strip
            gray = shrink(gray, size)
        return ink_map(gray, self.config.polarity, self.config.min_contrast), scale, []

    def _find(self, inkmap: InkMap, scale: float) -> tuple[InkMap, list[Segment]]:
        """An ink map at the working size -> (the ink map without its rules, the digit candidates)."""
        found, segments, _ = self._find_both(inkmap, scale)
        return found, segments

    def _find_both(self, inkmap: InkMap, scale: float) -> tuple[InkMap, list[Segment], list[Segment]]:
        """:meth:`_find`, and the lone candidate as it was found level when the candidates were turned upright
        from it (a bet that the blob is a row of touching digits: see :meth:`_second_tries`), else []."""
        ink, removed = remove_rules(inkmap.ink, inkmap.threshold)
        if removed.any():  # Otsu split the rules (often the darkest ink) from the rest: split what is left
            otsu, _ = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
            inkmap = dataclasses.replace(inkmap, ink=ink, threshold=int(max(otsu, inkmap.floor)))
        segments = find_digits(inkmap.ink, inkmap.threshold, self.config.segment)
        turned = upright(inkmap, segments, self.config.segment)
        level = segments if len(segments) == 1 and turned is not segments else []
        return inkmap, self._to_original(turned, scale), self._to_original(level, scale)

    @staticmethod
    def _to_original(segments: list[Segment], scale: float) -> list[Segment]:
        """Boxes found at the working size -> the original's pixels; a crop's origin stays in the working
        picture's."""
        if scale >= 1.0:
            return segments
        return [dataclasses.replace(s, box=tuple(round(v / scale) for v in s.box), px=1.0 / scale) for s in segments]

    def _turned(self, found: InkMap, segments: list[Segment], scale: float) -> list[Segment]:
        """The candidates ``segments`` (found on ``found``) found again with the picture turned by the slope of the
        biggest one's ink (:func:`digitkit.runtime.deskew.turned_row`); [] where that does not apply, or where
        the first candidates were turned already."""
        if any(s.back is not None for s in segments):
            return []
        boxes = [tuple(round(v * scale) for v in s.box) if scale < 1.0 else s.box for s in segments]
        return self._to_original(turned_row(found, boxes, self.config.segment), scale)

    def _predict(self, tiles: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(tiles, batch_size=max(len(tiles), 1))

    def _digit_probs(self, probs: np.ndarray) -> np.ndarray:
        """The ten digit columns of the model's rows (a "not a digit" column, if any, dropped)."""
        return probs[:, self.model.metadata.digit_indices]

    def is_digit(self, p: np.ndarray) -> tuple[int, bool]:
        """(the best digit output, whether the model's own "not a digit" answer lets it stand) for one
        probability row. A digits-only model always lets it stand."""
        md = self.model.metadata
        idx = md.digit_indices
        best = idx[int(np.argmax(p[idx]))]
        if md.not_a_digit is None:
            return best, True
        threshold = md.reject_threshold if md.reject_threshold is not None else 0.5
        return best, float(p[md.not_a_digit]) < threshold

    def _read_whole(self, segments: list[Segment], seen: dict[int, SequenceRead] | None = None
                    ) -> list[list[Piece] | None]:
        """Blobs -> the digits the sequence model reads in each (see :func:`whole_pieces`: None where its
        reading does not stand); one model call for all of them that ``seen`` (readings already made, by the
        segment's id: the text rule's) does not hold. Each reading also goes into ``seen``, so :meth:`_veto`
        and a later call do not read a blob a second time."""
        seen = {} if seen is None else seen
        strips = [line_input(s.crop) for s in segments]
        have = [i for i, st in enumerate(strips) if st is not None]
        out: list[list[Piece] | None] = [None for _ in segments]
        if not have:
            return out
        new = [i for i in have if id(segments[i]) not in seen]
        if new:
            seen.update(zip([id(segments[i]) for i in new],
                            self.sequence.read(np.stack([strips[i].pixels for i in new])), strict=True))
        for i in have:
            out[i] = whole_pieces(segments[i].crop, strips[i], seen[id(segments[i])])
        check = sequence.PIECE_NAD
        several = [i for i in have if out[i]]
        if check is not None and several and self.model.metadata.not_a_digit is not None:
            # The one-digit model looks at each piece too: a piece it surely calls "not a digit" (a letter's
            # part, a doodle's half) sinks the whole reading, and the blob is cut instead.
            rows = self._predict(np.stack([p.tile for i in several for p in out[i]]))
            nad = rows[:, self.model.metadata.not_a_digit]
            at = 0
            for i in several:
                n = len(out[i])
                if (nad[at:at + n] >= check).any():
                    out[i] = None
                at += n
        return out

    def _veto(self, segments: list[Segment], rows: np.ndarray, seen: dict[int, SequenceRead] | None = None
              ) -> np.ndarray:
        """The rows with the sequence model's second opinion on each whole blob (not a piece of one) that the
        one-digit model reads as a digit less surely than ``sequence.VETO_SURE``, or calls "not a digit" less
        surely than ``sequence.RESCUE_NAD``: "not a digit" set where the sequence model reads no digit at all
        (:func:`digitkit.runtime.sequence.silent`), the two models' digit probabilities averaged where it reads
        exactly one digit, the same, at least ``sequence.SECOND_SURE`` (a rejected one is then a digit; see
        :func:`digitkit.runtime.sequence.second_opinion`).
        One model call for all of them that ``seen`` (readings :meth:`_read_whole` already made, by segment id)
        does not hold."""
        md = self.model.metadata
        if self.sequence is None or md.not_a_digit is None or not len(rows):
            return rows
        # the digit model's columns in the sequence model's order (its steps give the digits 0-9 in order)
        cols = np.asarray(md.digit_indices)[np.argsort([int(md.labels[j]) for j in md.digit_indices])]
        rescue = sequence.RESCUE_NAD
        doubted, asked = set(), []
        for i, (s, p) in enumerate(zip(segments, rows, strict=True)):
            if s.crop is None:
                continue
            if self.is_digit(p)[1]:
                if float(p[cols].max()) < sequence.VETO_SURE:
                    doubted.add(i)
                    asked.append(i)
            elif rescue is not None and float(p[md.not_a_digit]) < rescue:
                asked.append(i)
        seen = seen or {}
        known = {i: seen[id(segments[i])] for i in asked if id(segments[i]) in seen}
        strips = [(i, line_input(segments[i].crop)) for i in asked if i not in known]
        strips = [(i, st) for i, st in strips if st is not None]
        if strips:
            known.update(zip([i for i, _ in strips], self.sequence.read(np.stack([st.pixels for _, st in strips])),
                             strict=True))
        if not known:
            return rows
        rows = rows.copy()
        for i, read in known.items():
            if i in doubted and silent(read):
                rows[i, md.not_a_digit] = 1.0
                continue
            both = sequence.second_opinion(read, rows[i, cols])
            if both is not None:
                rows[i, cols] = both
                if i not in doubted:  # rescued: both models read this digit
                    rows[i, md.not_a_digit] = 0.0
        return rows

    def _whole_row(self, piece: Piece) -> np.ndarray:
        """A piece read whole as a row of the digit model's outputs: its digits' probabilities at its step,
        and no "not a digit" share (the reading as a whole stood)."""
        row = np.zeros(len(self.model.metadata.labels), np.float32)
        row[self.model.metadata.digit_indices] = piece.digit_p
        return row

    @property
    def _rejected(self):
        """Row -> whether the model calls it "not a digit"; None for a digits-only model."""
        if self.model.metadata.not_a_digit is None:
            return None
        return lambda p: not self.is_digit(p)[1]

    def read_candidates(self, name: str, segments: list[Segment], probs: np.ndarray,
                        pages: int = 1) -> Candidates:
        """One image's candidates and their model rows -> its reading: lines of text dropped, touching digits
        split (:mod:`digitkit.runtime.split`), thresholds applied. Also returns what ``--explain`` draws."""
        rejected = self._rejected
        seen: dict[int, SequenceRead] = {}  # the sequence model's readings of this picture's blobs, by segment id
        if rejected is not None and len(segments) >= MIN_LINE_BEFORE_SPLIT:  # a line of mostly non-digits: text
            flags = [rejected(p) for p in probs]
            text = text_lines([s.box for s in segments], flags, MIN_LINE_BEFORE_SPLIT)
            if any(text) and self.sequence is not None:
                # A line of touching pairs is rejected blob by blob (the model was taught that two digits in one
                # tile are "not a digit"): a blob whose whole reading by the sequence model stands is digits, not
                # text. On 2 000 lines of MNIST training digits 96.57 -> 96.71 % of digits (a line of three pairs
                # came out empty); the non-digit pages of seeds 5 and 7 unchanged (the sequence model reads a
                # word as no digits: it was trained to).
                asked = [i for i, t in enumerate(text) if t and flags[i] and segments[i].crop is not None]
                for i, pieces in zip(asked, self._read_whole([segments[i] for i in asked], seen), strict=True):
                    if pieces is not None:
                        flags[i] = False
                text = text_lines([s.box for s in segments], flags, MIN_LINE_BEFORE_SPLIT)
            if any(text):
                keep = [i for i, t in enumerate(text) if not t]
                segments, probs = [segments[i] for i in keep], probs[keep]
        read_whole = None
        if self.sequence is not None:
            def read_whole(segs: list[Segment]) -> list[list[Any] | None]:
                return [None if pieces is None else [dataclasses.replace(p, row=self._whole_row(p)) for p in pieces]
                        for pieces in self._read_whole(segs, seen)]
        final, rows, trace = split_touching(segments, probs, self._predict, self._digit_probs, rejected,
                                            read_whole=read_whole)
        before, rows = rows, self._veto(final, rows, seen)
        second = tuple(not np.array_equal(a, b) for a, b in zip(before, rows, strict=True))
        return Candidates(segments=segments, trace=trace, final=final, rows=rows, second=second,
                          reading=self._reading(name, final, rows, pages=pages))

    def _reading(self, name: str, segments: list[Segment], probs: np.ndarray, pages: int = 1) -> Reading:
        digits = []
        flags = [self.is_digit(p) for p in probs]
        text = (text_lines([s.box for s in segments], [not kept for _, kept in flags])
                if self.model.metadata.not_a_digit is not None else [False] * len(segments))
        for seg, p, (label, kept), in_text in zip(segments, probs, flags, text, strict=True):
            if kept and not in_text and float(p[label]) >= self.config.min_confidence and \
                    stroke_width(seg.tile) <= self.config.max_stroke:
                digits.append(Digit(label=int(self.model.metadata.labels[label]), confidence=float(p[label]),
                                    box=seg.box))
        return Reading(path=name, text="".join(str(d.label) for d in digits), digits=tuple(digits), pages=pages)

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
        pending: list[_Pending] = []
        n_tiles = held = 0
        for i, src in enumerate(sources):
            item, segments, img, retry = self._prepare(i, src, keep_images)
            pending.append((item, segments, img if keep_images else None, retry))
            n_tiles += len(segments)
            held += img.nbytes if keep_images and img is not None else 0
            held += retry.nbytes if retry is not None else 0
            img = None  # only `pending` holds it: not alive beside the next image while that one is decoded
            # Also bounded in images and bytes: blank pages and bad files add no tiles, and must not pile up
            # (with their decoded images when keep_images) until a batch of tiles fills.
            if n_tiles >= self.config.batch_size or len(pending) >= self.config.batch_size or held >= HELD_IMAGE_BYTES:
                yield from self._flush(pending, keep_images)
                pending, n_tiles, held = [], 0, 0
        yield from self._flush(pending, keep_images)

    def _prepare(self, i: int, src: Source | ReadError, keep_images: bool) -> _Pending:
        """One source -> ((its name, its page count), its digit candidates, its image, what a second try would
        start from (None for a tile)), or (ReadError, [], None, None)."""
        if isinstance(src, ReadError):
            return src, [], None, None
        name = f"<array {i}>" if isinstance(src, np.ndarray) else os.fspath(src)
        try:
            if isinstance(src, np.ndarray):
                img, pages = src, 1
            else:
                loaded = load_image(src, keep_images, self.config.max_pixels)
                img, pages = loaded.image, loaded.pages
            retry, segments = self._look(img)
            return (name, pages), segments, img, retry
        except InferenceError as exc:
            return ReadError(name, str(exc).removeprefix(f"{name}: ")), [], None, None
        except OSError as exc:  # a permission problem, a file gone since it was listed
            return ReadError(name, exc.strerror or str(exc)), [], None, None
        except Exception as exc:  # noqa: BLE001 - a decoder's surprise is this file's error, never the batch's
            return ReadError(name, f"could not read it ({type(exc).__name__}: {exc}); {_REPORT}"), [], None, None

    def _flush(self, pending: list[_Pending], keep_images: bool) -> Iterator[Any]:
        tiles = [s.tile for _, segs, _, _ in pending for s in segs]
        probs = (self.model.predict_proba(np.stack(tiles), batch_size=max(len(tiles), 1)) if tiles
                 else np.zeros((0, len(self.model.metadata.labels)), np.float32))
        at = 0
        results: list[Reading | ReadError] = []
        for item, segs, _, _ in pending:
            if isinstance(item, ReadError):
                results.append(item)
            else:
                name, pages = item
                results.append(self.read_candidates(name, segs, probs[at:at + len(segs)], pages=pages).reading)
            at += len(segs)
        self._second_tries(pending, results)
        for (_, _, img, _), result in zip(pending, results, strict=True):
            yield (result, img) if keep_images else result

    def _second_tries(self, pending: list[_Pending], results: list[Reading | ReadError]) -> None:
        """Read again the pictures a first reading did not settle: each of ``SECOND_TRIES`` in turn, one batch of
        tiles for all the pictures it asks for."""
        for again in SECOND_TRIES:
            tried = [(k, again.find(self, r, segs)[1]) for k, (_, segs, _, r) in enumerate(pending)
                     if r is not None and isinstance(results[k], Reading) and again.asks(results[k])]
            self._read_again([(k, segs) for k, segs in tried if segs], results, again.keeps)  # no candidates: no try

    def _read_again(self, again: list[tuple[int, list[Segment]]], results: list[Reading | ReadError],
                    better: Callable[[Reading, Reading], bool]) -> None:
        """Read the candidates of a second try for each (index in ``results``, candidates) of ``again``; the
        second reading replaces the first where ``better(first, second)``."""
        tiles = [s.tile for _, segs in again for s in segs]
        if not tiles:
            return
        probs = self._predict(np.stack(tiles))
        at = 0
        for k, segs in again:
            first = results[k]
            second = self.read_candidates(first.path, segs, probs[at:at + len(segs)], pages=first.pages).reading
            at += len(segs)
            if better(first, second):
                results[k] = second

    def probabilities(self, image: Source) -> tuple[list[Segment], np.ndarray]:
        """The candidates of one image and the model's full probability rows for them (no threshold)."""
        img = image if isinstance(image, np.ndarray) else read_image(image, max_pixels=self.config.max_pixels)
        segments = self.segment(img)
        if not segments:
            return [], np.zeros((0, len(self.model.metadata.labels)), np.float32)
        return segments, self.model.predict_proba(np.stack([s.tile for s in segments]))


def classify(paths: Iterable[str | os.PathLike[str]], config: ClassifyConfig | None = None,
             annotate_dir: str | os.PathLike[str] | None = None,
             explain_dir: str | os.PathLike[str] | None = None) -> Iterator[Reading | ReadError]:
    """Read every image under ``paths`` (files, folders, globs); the library behind ``digitkit classify``.

    What can fail for the whole run is checked here, before any image is read: the output folder (not an
    input, nor inside one), the model, then the output folder again (created, and written to once).

    Args:
        paths: files, folders (recursive) and glob patterns.
        config: options (defaults: :class:`ClassifyConfig`).
        annotate_dir: if set, write a copy of each image with boxes, labels and confidences there, as soon
            as its reading is known; existing files are never replaced (a taken name gets ``-2``, ``-3``...).
        explain_dir: if set, write one picture per image of the reading's stages there
            (:mod:`digitkit.runtime.explain`).

    Returns:
        An iterator of a :class:`Reading` or :class:`ReadError` per input, in order.

    Raises:
        InferenceError: the model cannot be loaded, or ``annotate_dir`` is an input folder (or inside one),
        cannot be created or cannot be written to.
    """
    inputs: Sequence[str] = [os.fspath(p) for p in paths]
    for folder in (annotate_dir, explain_dir):  # inputs are sacred: neither may write over what is read
        if folder is not None:
            check_output_folder(folder, inputs)
    clf = DigitClassifier(config=config)
    if annotate_dir is None and explain_dir is None:
        return clf.classify_many(expand_paths(inputs))
    from digitkit.runtime.draw import AnnotationWriter
    from digitkit.runtime.explain import ExplainWriter

    writer = AnnotationWriter(annotate_dir) if annotate_dir is not None else None
    explainer = ExplainWriter(explain_dir) if explain_dir is not None else None
    return _annotated(clf, inputs, writer, explainer)


def _annotated(clf: DigitClassifier, inputs: Sequence[str], writer: Any,
               explainer: Any) -> Iterator[Reading | ReadError]:
    for result, img in clf.classify_many(expand_paths(inputs), keep_images=True):
        if isinstance(result, Reading) and img is not None:
            try:
                if writer is not None:
                    writer.write(result, img)
                if explainer is not None:
                    explainer.write(clf, result.path, img)
            except OSError as exc:
                what = "annotated copy" if explainer is None else "annotated copy or explanation"
                result = ReadError(result.path, f"could not write the {what}: {exc.strerror or exc}")
        del img  # drawn on in place: let it go before the next one is decoded
        yield result
