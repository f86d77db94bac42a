"""Reading a blob of touching digits whole: the sequence model's input and its answer.

A blob of several touching or overlapping digits is hard to cut: the right cut goes through a neighbour's
stroke, and each piece keeps slivers of the next digit, so the one-digit model reads the pieces poorly. The
sequence model reads the whole blob at once instead (a small fully convolutional network trained with CTC,
the way line recognisers such as Tesseract 4's read a word without cutting it first): the blob is scaled to
a ``LINE_HEIGHT`` x ``LINE_WIDTH`` strip, the network gives, for every pair of columns, the probability of
each digit and of "nothing here" (CTC's blank), and the greedy decoding collapses repeats and drops blanks.
Trained with pages of letters, words, symbols and doodles labelled as no digits at all, it also answers
"these are no digits" by emitting nothing.

The same :func:`line_input` makes the training strips (toolkit/linedata.py) and the runtime's, so the model
sees at run time what it was trained on. Only numpy and OpenCV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.interpreter import TFLiteRunner
from digitkit.runtime.preprocess import mnist_normalise
from digitkit.runtime.strokes import normalise_strokes

LINE_HEIGHT = 28  # rows of the strip (as MNIST's tiles)
LINE_WIDTH = 128  # columns of the strip: 8 digits at MNIST's average width
INK_HEIGHT = 20  # the blob's ink is scaled to this height (MNIST's 20-pixel box)
MARGIN = 4  # paper left of the ink, and the least right of it
BLANK = 10  # the CTC blank's class index; 0-9 are the digits
FRAMES = LINE_WIDTH // 2  # the model's output steps: one per two columns
# A doubtful strip is read in two views: as it is, and moved VIEW_SHIFT columns right. The network reads columns in
# pairs, so the second view sees every stroke at the other phase of its steps, and now and then reads the blob
# otherwise (about 4 % of the blobs of touching training lines). Where the two disagree, the digits more probable
# under both views together are kept (their CTC likelihoods summed: test-time augmentation, decided by the model's
# own scores). A blob narrower than WIDE_ASPECT may be one letter or doodle: where its views disagree on how many
# digits it holds, the first view's reading is kept and must clear its bars alone (taking the more probable one
# there let a seed-5 doodle page through as "88"). Chosen on 2 000 touching lines of MNIST *training* digits
# (benchmarks/lines.py --split train, line seeds 0 and 3) against the non-digit pages of seeds 5 and 7: digit errors
# 216 -> 202 and 229 -> 207 with every strip read twice (with every disagreement rescored about 6 fewer, but that
# doodle; a third view moved one row down or three columns right 204 / 199 and 206 / 214; the two views'
# probabilities averaged step by step instead of rescored, moved two columns: 214 / 228, one row down: 254 / 262),
# pages unchanged. 0: read once.
# A strip whose first reading has every digit at VIEW_SURE or more is not read again: the same lines gave 203 and
# 206 errors that way (0.95 and 0.98 the same), and the camera reads most of its strips once.
VIEW_SHIFT = 1
VIEW_SURE = 0.9


def line_strokes(crop: np.ndarray) -> np.ndarray:
    """A blob's ink (0 = paper, 255 = stroke cores) with its stroke thickness brought within MNIST's range
    relative to the blob's *height* (for a row of digits the longer side is its length)."""
    return normalise_strokes(crop, against="height")


@dataclass(frozen=True)
class Strip:
    """A blob scaled into the model's strip, and how to map strip columns back to the blob."""

    pixels: np.ndarray  # uint8 (LINE_HEIGHT, LINE_WIDTH), ink bright on 0
    x0: int  # the blob's first ink column, blob pixels
    scale: float  # strip pixels per blob pixel


def line_input(crop: np.ndarray) -> Strip | None:
    """The strip the sequence model reads for one blob's cleaned ink crop (None if it has no ink).

    The ink's box is scaled to INK_HEIGHT rows (or to fit LINE_WIDTH - 2 * MARGIN columns if the blob is that
    long), centred vertically, MARGIN columns from the left.
    """
    crop = line_strokes(crop)
    ys, xs = np.nonzero(crop > 0)
    if len(xs) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ink = crop[y0:y1, x0:x1]
    h, w = ink.shape
    s = min(INK_HEIGHT / h, (LINE_WIDTH - 2 * MARGIN) / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(ink, (nw, nh), interpolation=interp)
    out = np.zeros((LINE_HEIGHT, LINE_WIDTH), np.uint8)
    top = (LINE_HEIGHT - nh) // 2
    out[top:top + nh, MARGIN:MARGIN + nw] = small
    return Strip(out, int(x0), s)


@dataclass(frozen=True)
class SequenceRead:
    """The greedy CTC reading of one strip."""

    labels: tuple[int, ...]  # the digits, left to right
    frames: tuple[int, ...]  # the output step each was emitted at (its most probable step of its run)
    confidences: tuple[float, ...]  # each digit's probability at that step
    probs: np.ndarray  # float (FRAMES, 11): the softmax over digits and blank, every step
    shift: int = 0  # columns the strip was moved right before it was read (see VIEW_SHIFT)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def decode(logits: np.ndarray, shift: int = 0) -> SequenceRead:
    """Greedy CTC decoding of one strip's (FRAMES, 11) logits: the best class per step, repeats collapsed,
    blanks dropped. ``shift``: the columns the strip was moved right before it was read."""
    p = softmax(logits.astype(np.float64))
    best = p.argmax(1)
    labels, frames, confs = [], [], []
    prev = BLANK
    for t, c in enumerate(best):
        if c != BLANK and c != prev:
            labels.append(int(c))
            frames.append(t)
            confs.append(float(p[t, c]))
        elif c != BLANK and c == prev and p[t, c] > confs[-1]:  # the run's surest step stands for it
            frames[-1], confs[-1] = t, float(p[t, c])
        prev = c
    return SequenceRead(tuple(labels), tuple(frames), tuple(confs), p.astype(np.float32), shift)


def moved(pixels: np.ndarray, columns: int) -> np.ndarray:
    """Strips (..., LINE_HEIGHT, LINE_WIDTH) moved ``columns`` to the right, paper coming in on the left (the
    ink ends at least MARGIN columns before a strip's end, so up to MARGIN columns lose none of it)."""
    out = np.zeros_like(pixels)
    out[..., columns:] = pixels[..., :pixels.shape[-1] - columns]
    return out


def log_likelihood(probs: np.ndarray, labels: tuple[int, ...]) -> float:
    """log P(labels | strip) under CTC: the sum over every path of steps that collapses to ``labels`` (repeats
    merged, blanks dropped), by the forward recursion over the labels with blanks between (Graves et al. 2006).

    Args:
        probs: (steps, 11) per-step probabilities of the digits and the blank.
        labels: the digits.
    """
    lp = np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0))
    ext = np.full(2 * len(labels) + 1, BLANK)
    ext[1::2] = labels
    # a state may be entered from two back (skipping the blank between) unless it is a blank or repeats that label
    skip = np.zeros(len(ext), bool)
    skip[2:] = (ext[2:] != BLANK) & (ext[2:] != ext[:-2])
    alpha = np.full(len(ext), -np.inf)
    alpha[:2] = lp[0, ext[:2]]
    one, two = np.full(len(ext), -np.inf), np.full(len(ext), -np.inf)
    for t in range(1, len(lp)):
        one[1:] = alpha[:-1]  # from the state before
        two[2:] = np.where(skip[2:], alpha[:-2], -np.inf)  # from two before
        alpha = np.logaddexp(np.logaddexp(alpha, one), two) + lp[t, ext]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if len(ext) > 1 else alpha[-1])


def _ink_aspect(pixels: np.ndarray) -> float:
    """Width / height of the ink box of a strip or a blob's crop (0 without ink)."""
    ys, xs = np.nonzero(pixels > 0)
    return float((np.ptp(xs) + 1) / (np.ptp(ys) + 1)) if len(xs) else 0.0


def agree(first: SequenceRead, second: SequenceRead, pixels: np.ndarray) -> SequenceRead:
    """One reading of a strip from its two views (see VIEW_SHIFT): their own when they read the same digits;
    else the one whose digits are the more probable under both views together (the sum of their CTC
    log-likelihoods), but the first view's when the strip is narrower than WIDE_ASPECT and they disagree on how
    many digits it holds."""
    if first.labels == second.labels:
        return first
    if len(first.labels) != len(second.labels) and _ink_aspect(pixels) < WIDE_ASPECT:
        return first

    def both(labels: tuple[int, ...]) -> float:
        return log_likelihood(first.probs, labels) + log_likelihood(second.probs, labels)

    return second if both(second.labels) > both(first.labels) else first


def frame_columns(frames: tuple[int, ...], strip: Strip, width: int, shift: int = 0) -> list[tuple[int, int]]:
    """For each emitted digit, the blob columns [left, right) it covers: boundaries halfway between
    neighbouring digits' steps, the blob's own edges at both ends. ``shift``: the columns the strip was moved
    right before it was read."""
    centres = [(2 * f + 1 - shift - MARGIN) / strip.scale + strip.x0 for f in frames]
    bounds = [0] + [round((a + b) / 2) for a, b in zip(centres, centres[1:], strict=False)] + [width]
    return [(max(0, bounds[i]), min(width, bounds[i + 1])) for i in range(len(frames))]


class SequenceModel(TFLiteRunner):
    """The sequence model (.tflite): strips (N, LINE_HEIGHT, LINE_WIDTH) uint8 in, (N, FRAMES, 11) logits out.

    Raises:
        InferenceError: the file is missing, not loadable, or not shaped like a sequence model.
    """

    kind = "a sequence model"
    _sample = (LINE_HEIGHT, LINE_WIDTH, 1)

    def __init__(self, path: str | os.PathLike[str], backend: str | None = None, threads: int | None = None) -> None:
        super().__init__(path, backend, threads)
        shape_in = tuple(int(s) for s in self._in["shape"])
        shape_out = tuple(int(s) for s in self._out["shape"])
        if len(self._interp.get_output_details()) != 1 or shape_in[1:] != self._sample \
                or shape_out[1:] != (FRAMES, BLANK + 1):
            raise InferenceError(f"{self.path}: input {shape_in} and output {shape_out} are not a sequence "
                                 f"model's (N, {LINE_HEIGHT}, {LINE_WIDTH}, 1) -> (N, {FRAMES}, {BLANK + 1})")
        self._check_types()

    def logits(self, strips: np.ndarray) -> np.ndarray:
        """(N, FRAMES, 11) float32 logits for uint8 strips (N, LINE_HEIGHT, LINE_WIDTH), ink bright."""
        n = len(strips)
        if n == 0:
            return np.zeros((0, FRAMES, BLANK + 1), np.float32)
        y = self._invoke(self._quantize(np.asarray(strips, np.uint8)))
        if y.shape[1:] != (FRAMES, BLANK + 1):
            raise InferenceError(f"{self.path}: the sequence model gave {y.shape} for {len(y)} strips")
        return self._raw(y[:n])

    def read(self, strips: np.ndarray) -> list[SequenceRead]:
        """Each strip's reading; a strip read as no digit or with a digit less sure than VIEW_SURE is read in
        its second view too (VIEW_SHIFT columns to the right, one batch for all of them) and the two readings
        made one (:func:`agree`)."""
        strips = np.asarray(strips, np.uint8)
        reads = [decode(z) for z in self.logits(strips)]
        again = [i for i, r in enumerate(reads) if not r.labels or min(r.confidences) < VIEW_SURE]
        if VIEW_SHIFT and again:
            for i, z in zip(again, self.logits(moved(strips[again], VIEW_SHIFT)), strict=True):
                reads[i] = agree(reads[i], decode(z, VIEW_SHIFT), strips[i])
        return reads


# A whole reading stands when it has several digits, each read at least PIECE_SURE at its step (NARROW_SURE in
# a blob less than WIDE_ASPECT times as wide as tall, which may as well be one letter or doodle: the same
# distinction as runtime/split.py's), each digit's columns hold ink at least PIECE_HEIGHT of the blob's ink
# height (a cursive word's joins are low), and the one-digit model calls none of the pieces "not a digit" at
# PIECE_NAD or more (checked by the classifier). Chosen on 300 lines of MNIST *training* digits
# (benchmarks/lines.py --split train) against the non-digit pages of seeds 5 and 7 (not the measured 11). With
# the second sequence model (context blocks) 0.7 / 0.3 / 0.99 instead of the first's 0.8 / 0.45 / 0.95 read 1 pp
# more training lines and add no page with a digit there (NARROW_SURE 0.6 was then reported to add a seed-7 letter
# page, but these bars were default arguments then, bound at import, so setting them from a script changed
# nothing: that comparison is unreliable; the PIECE_SURE one below was made by editing this file). PIECE_SURE
# 0.5 -> 0.35 then kept the wide blobs whose least sure digit lies between: they were cut, the cuts rarely stood
# and the whole blob was lost (training lines: the same 83.0 % exact, 91.8 -> 93.0 % of digits; 0.15-0.35 read
# the same, 0.4-0.45 92.6 %; pages of seeds 5 and 7 unchanged).
# NARROW_SURE 0.7 -> 0.6 later, with the broken-digit join, the one-blob deskew and the text rule's whole reading
# in: 2 000 training lines 96.71 -> 96.81 % of digits (91.55 -> 91.65 % exact), pages of seeds 5 and 7 unchanged;
# 0.5 and 0.35 read 96.99 and 97.19 % but let 3 and 6 more letter/symbol pages through on seed 5 (2 and 4 on 7).
PIECE_SURE = 0.35
WIDE_ASPECT = 1.6
NARROW_SURE = 0.6
PIECE_HEIGHT = 0.3
PIECE_NAD = 0.99


# A lone blob the one-digit model reads as a digit, but less surely than VETO_SURE, is read by the sequence model
# too; if no step of the strip gives any digit VETO_HINT or more, it is no digit. The two models see a blob
# differently (a 28 x 28 tile against a strip scaled to its height, with the neighbours' context), so a letter,
# symbol or doodle that fools one rarely fools both: on the non-digit pages of seeds 5 and 7 (not the measured
# 11), letters + symbols + doodles pages with a digit went from 9 and 17 of 180 to 1 and 7 with the shipped
# sequence model, words from 4 and 14 of 60 to 2 and 7, while the development photos and the touching lines read
# the same and the camera-like scenes lose 1 in 1 000 (a real digit vetoed). Real digits the one-digit model
# doubts still leave a trace in the strip (0.05-0.5 on the few seen), non-digit blobs almost never (0.004 at the
# 90th percentile). 0.8 or a hint of 0.02 kept that scene vetoed and let more pages through.
VETO_SURE = 0.9
VETO_HINT = 0.05


def silent(read: SequenceRead, hint: float | None = None) -> bool:
    """Whether a strip's reading holds no digit at all, not even a trace: no step gives any digit ``hint``
    (VETO_HINT if None) or more."""
    return not read.labels and float(1.0 - read.probs[:, BLANK].min()) < (VETO_HINT if hint is None else hint)


# The same lone blob's second opinion. Where the sequence model reads it as exactly one digit, at least SECOND_SURE,
# and the same digit as the one-digit model, the two models' digit probabilities are averaged (an ensemble of two
# networks that see the blob differently): a digit both read is reported at their mean, so one the one-digit model
# doubted below --min-confidence is kept. A blob the one-digit model calls "not a digit" less surely than
# RESCUE_NAD is asked too, and is that digit when the sequence model reads it so. A label is never changed: where
# the two disagree, the sequence model (trained on MNIST strips only) was right on 6 of 7 training scenes but wrong
# on both development photos it changed (a 5 read 3, a 6 read 0). On 1 000 + 1 000 scenes of MNIST training
# digits (level / tilted up to 30 degrees): 979 / 971 -> 982 / 973 exact (980 / 971 without the rescue); changing
# labels too gave 985 / 976; SECOND_SURE 0.5 or 0.7 gave 983 / 973 and 982 / 973. Non-digit pages of seeds 5 and
# 7 unchanged by all of them. None: neither is asked.
SECOND_SURE: float | None = 0.9
RESCUE_NAD: float | None = 0.5


def second_opinion(read: SequenceRead, digit_p: np.ndarray, sure: float | None = None) -> np.ndarray | None:
    """A lone blob's digit probabilities from both models: the mean of the one-digit model's ``digit_p`` (10,
    digits 0-9) and the sequence model's at the step its one digit was read; None unless it read exactly one
    digit, at least ``sure`` (SECOND_SURE if None), and the one-digit model's best digit."""
    sure = SECOND_SURE if sure is None else sure
    if sure is None or len(read.labels) != 1 or read.confidences[0] < sure or \
            read.labels[0] != int(np.argmax(digit_p)):
        return None
    return (np.asarray(digit_p, np.float32) + read.probs[read.frames[0], :BLANK]) / 2.0


@dataclass(frozen=True)
class Piece:
    """One digit of a blob read whole."""

    box: tuple[int, int, int, int]  # its ink box in the blob's crop pixels
    tile: np.ndarray  # its columns of the blob as an MNIST tile (what --explain shows, and the stroke check)
    label: int
    confidence: float
    digit_p: np.ndarray  # (10,) its step's probabilities of the digits
    row: np.ndarray | None = None  # ... as a row of the digit model's outputs (the classifier sets it)


def whole_pieces(crop: np.ndarray, strip: Strip, read: SequenceRead, piece_sure: float | None = None,
                 narrow_sure: float | None = None, piece_height: float | None = None) -> list[Piece] | None:
    """The digits of a blob read whole, each with its share of the blob's columns; None if the reading does
    not stand (fewer than two digits, or not sure enough: see PIECE_SURE): then the blob is cut. The bars are
    the module's PIECE_SURE, NARROW_SURE and PIECE_HEIGHT unless given (read at each call, so a tuning script
    can set them)."""
    piece_sure = PIECE_SURE if piece_sure is None else piece_sure
    narrow_sure = NARROW_SURE if narrow_sure is None else narrow_sure
    piece_height = PIECE_HEIGHT if piece_height is None else piece_height
    if len(read.labels) < 2:
        return None
    aspect = _ink_aspect(crop)
    if min(read.confidences) < (piece_sure if aspect >= WIDE_ASPECT else max(piece_sure, narrow_sure)):
        return None
    ys = np.nonzero((crop > 0).any(1))[0]
    ink_h = float(ys[-1] - ys[0] + 1) if len(ys) else 1.0
    pieces = []
    for (left, right), label, conf, t in zip(frame_columns(read.frames, strip, crop.shape[1], read.shift), read.labels,
                                             read.confidences, read.frames, strict=True):
        part = np.zeros_like(crop)
        part[:, left:right] = crop[:, left:right]
        py, px = np.nonzero(part > 0)
        if len(px) == 0 or (py.max() - py.min() + 1) < piece_height * ink_h:
            return None
        box = (int(px.min()), int(py.min()), int(px.max() - px.min() + 1), int(py.max() - py.min() + 1))
        tile = mnist_normalise(normalise_strokes(part[box[1]:box[1] + box[3], box[0]:box[0] + box[2]]))
        pieces.append(Piece(box, tile, label, conf, read.probs[t, :BLANK].copy()))
    return pieces
