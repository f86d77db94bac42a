"""The sequence model's input, decoding and acceptance (runtime/sequence.py), and its use by the reader."""

from __future__ import annotations

import numpy as np
import pytest

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.reading import DEFAULT_MODEL, SEQUENCE_MODEL
from digitkit.runtime.sequence import (
    BLANK,
    FRAMES,
    INK_HEIGHT,
    LINE_HEIGHT,
    LINE_WIDTH,
    MARGIN,
    SequenceModel,
    agree,
    decode,
    frame_columns,
    line_input,
    log_likelihood,
    second_opinion,
    silent,
    whole_pieces,
)


def _logits(path: list[int], sure: float = 8.0) -> np.ndarray:
    """Logits whose best class at step t is path[t] (blank after the path's end)."""
    z = np.zeros((FRAMES, BLANK + 1), np.float32)
    for t in range(FRAMES):
        z[t, path[t] if t < len(path) else BLANK] = sure
    return z


def test_decode_collapses_repeats_and_drops_blanks() -> None:
    read = decode(_logits([BLANK, 3, 3, BLANK, 3, 1, 1, BLANK, 7]))
    assert read.labels == (3, 3, 1, 7)
    assert read.frames[0] in (1, 2) and read.frames[1] == 4 and read.frames[3] == 8
    assert all(c > 0.99 for c in read.confidences)


def test_decode_of_all_blanks_is_no_digit() -> None:
    read = decode(_logits([]))
    assert read.labels == () and read.frames == ()


def test_silent_is_no_digit_and_not_even_a_trace_of_one() -> None:
    assert silent(decode(_logits([])))  # every step blank at 8 logits over the rest: digits ~3e-4 each
    assert not silent(decode(_logits([BLANK, 4])))  # a digit read
    z = _logits([])
    z[5, 4] = 6.0  # a trace of a 4 at one step (about 0.1), still below the blank
    assert decode(z).labels == () and not silent(decode(z))
    assert silent(decode(z), hint=0.5)


def _blob(widths: list[int], height: int = 60, gap: int = 0) -> np.ndarray:
    """A crop of box outlines ("0"s, ink 255, MNIST-like stroke: 7 px at height 60) side by side, touching
    (gap 0), 10 px of paper around."""
    w = sum(widths) + gap * (len(widths) - 1)
    crop = np.zeros((height + 20, w + 20), np.uint8)
    x = 10
    t = max(1, round(7 * height / 60))
    for bw in widths:
        crop[10:10 + height, x:x + bw] = 255
        crop[10 + t:10 + height - t, x + t:x + bw - t] = 0
        x += bw + gap
    return crop


def test_line_input_scales_the_ink_to_the_strip() -> None:
    crop = _blob([30, 30, 30], height=60)
    strip = line_input(crop)
    assert strip is not None and strip.pixels.shape == (LINE_HEIGHT, LINE_WIDTH) and strip.pixels.dtype == np.uint8
    rows = np.nonzero(strip.pixels.any(1))[0]
    cols = np.nonzero(strip.pixels.any(0))[0]
    assert rows[-1] - rows[0] + 1 == INK_HEIGHT
    assert cols[0] == MARGIN and abs((cols[-1] - cols[0] + 1) - 90 * INK_HEIGHT / 60) <= 1
    assert strip.x0 == 10 and strip.scale == pytest.approx(INK_HEIGHT / 60)


def test_line_input_fits_a_long_blob_into_the_width() -> None:
    strip = line_input(_blob([100] * 4, height=40))
    cols = np.nonzero(strip.pixels.any(0))[0]
    assert cols[-1] < LINE_WIDTH - MARGIN + 1


def test_line_input_of_no_ink_is_none() -> None:
    assert line_input(np.zeros((30, 50), np.uint8)) is None


def test_frame_columns_split_halfway_between_steps() -> None:
    crop = _blob([30, 30], height=60)
    strip = line_input(crop)
    # Steps whose centres fall on the two bars' centres in the strip.
    centres = [MARGIN + 15 * strip.scale, MARGIN + 45 * strip.scale]
    frames = tuple(int(round((c - 1) / 2)) for c in centres)
    cols = frame_columns(frames, strip, crop.shape[1])
    assert cols[0][0] == 0 and cols[-1][1] == crop.shape[1]
    assert abs(cols[0][1] - 40) <= 3  # the boundary near the bars' meeting column (10 + 30)


def test_frame_columns_of_a_reading_of_the_moved_view_are_the_same_columns() -> None:
    """A step of the view moved VIEW_SHIFT columns right sits that many columns further right in the strip: mapped
    back with its shift, it covers the same blob columns as the unmoved view's step over the same ink."""
    crop = _blob([30, 30], height=60)
    strip = line_input(crop)
    frames = (int(round((MARGIN + 15 * strip.scale - 1) / 2)), int(round((MARGIN + 45 * strip.scale - 1) / 2)))
    plain = frame_columns(frames, strip, crop.shape[1])
    moved = frame_columns(tuple(f + 1 for f in frames), strip, crop.shape[1], shift=2)  # two columns: one step
    assert moved == plain
    assert frame_columns(frames, strip, crop.shape[1], shift=2) != plain  # the shift is not ignored


def _paths(probs: np.ndarray, labels: tuple[int, ...]) -> float:
    """P(labels) by brute force: every path of steps that collapses to ``labels``."""
    import itertools

    total = 0.0
    for path in itertools.product(range(probs.shape[1]), repeat=len(probs)):
        out, prev = [], BLANK
        for c in path:
            if c != BLANK and c != prev:
                out.append(c)
            prev = c
        if tuple(out) == labels:
            total += float(np.prod(probs[np.arange(len(probs)), list(path)]))
    return total


@pytest.mark.parametrize("labels", [(), (3,), (3, 3), (3, 5), (5, 3, 5)])
def test_log_likelihood_sums_every_path_that_collapses_to_the_labels(labels: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(labels))
    # Five steps over three digits and the blank (columns 3, 5, 7 and BLANK of an 11-wide row; the rest 0).
    probs = np.zeros((5, BLANK + 1))
    probs[:, [3, 5, 7, BLANK]] = rng.dirichlet(np.ones(4), 5)
    assert np.exp(log_likelihood(probs, labels)) == pytest.approx(_paths(probs, labels), rel=1e-9)


def _wide_pixels(aspect: float) -> np.ndarray:
    pixels = np.zeros((LINE_HEIGHT, LINE_WIDTH), np.uint8)
    pixels[4:24, MARGIN:MARGIN + round(20 * aspect)] = 255
    return pixels


def test_two_views_that_read_the_same_digits_give_the_first_view() -> None:
    first, second = decode(_logits([BLANK, 4, BLANK, 2])), decode(_logits([BLANK, BLANK, 4, BLANK, 2]), shift=1)
    assert agree(first, second, _wide_pixels(3.0)) is first


def test_two_views_that_disagree_give_the_digits_more_probable_under_both() -> None:
    """The first view reads 4 7 with its second digit barely above a 1; the second reads 4 1 surely, and the
    first view gives 1 nearly as much: 4 1 is the more probable under both together."""
    z = _logits([BLANK, 4, BLANK, 7])
    z[3, 1] = 7.9  # a 1 just below the 7 at that step
    first, second = decode(z), decode(_logits([BLANK, 4, BLANK, 1]), shift=1)
    assert first.labels == (4, 7) and second.labels == (4, 1)
    assert agree(first, second, _wide_pixels(3.0)).labels == (4, 1)
    assert agree(second, first, _wide_pixels(3.0)).labels == (4, 1)  # whichever view read it


def test_a_narrow_blob_whose_views_disagree_on_how_many_digits_keeps_the_first_view() -> None:
    """A blob about as wide as tall may be one doodle: a second view that reads a different number of digits
    in it, even surely, does not replace the first view's reading (which must clear its own bars)."""
    first = decode(_logits([BLANK, 8, BLANK, 5, BLANK, 8], sure=1.0))
    second = decode(_logits([BLANK, 8, BLANK, BLANK, BLANK, 8]), shift=1)
    assert agree(first, second, _wide_pixels(1.3)) is first
    assert agree(first, second, _wide_pixels(3.0)) is second  # in a wide blob the more probable stands


def test_the_model_reads_a_doubtful_strip_in_a_second_view(monkeypatch: pytest.MonkeyPatch) -> None:
    import digitkit.runtime.sequence as sequence

    model = SequenceModel(SEQUENCE_MODEL)
    seen = []
    logits = model.logits
    monkeypatch.setattr(model, "logits", lambda x: seen.append(np.array(x)) or logits(x))
    strip = line_input(_blob([30, 30], height=60)).pixels
    first = decode(logits(strip[None])[0])
    assert not first.labels or min(first.confidences) < sequence.VIEW_SURE  # two box outlines: no sure reading
    model.read(np.stack([strip, strip]))
    assert [len(x) for x in seen] == [2, 2]
    assert np.array_equal(seen[1][0][:, sequence.VIEW_SHIFT:], strip[:, :-sequence.VIEW_SHIFT])
    monkeypatch.setattr(sequence, "VIEW_SURE", 0.0)  # every reading sure enough (or no digit, still read again)
    seen.clear()
    model.read(strip[None])
    assert [len(x) for x in seen] == ([1] if first.labels else [1, 1])
    monkeypatch.setattr(sequence, "VIEW_SHIFT", 0)
    seen.clear()
    model.read(strip[None])
    assert [len(x) for x in seen] == [1]


def _read_at(labels: list[int], frames: list[int], sure: float = 8.0):
    path = [BLANK] * FRAMES
    for lab, t in zip(labels, frames, strict=True):
        path[t] = lab
    return decode(_logits(path, sure))


def test_whole_pieces_of_a_sure_reading_cover_the_blob() -> None:
    crop = _blob([30, 30], height=60)
    strip = line_input(crop)
    f = [int(round((MARGIN + c * strip.scale - 1) / 2)) for c in (15, 45)]
    pieces = whole_pieces(crop, strip, _read_at([4, 2], f))
    assert [p.label for p in pieces] == [4, 2]
    assert pieces[0].box[0] == 10 and pieces[1].box[0] + pieces[1].box[2] == 70
    assert all(p.tile.shape == (28, 28) for p in pieces)


@pytest.mark.parametrize("why", ["one digit", "unsure", "low piece"])
def test_whole_pieces_refuses_a_reading_that_does_not_stand(why: str) -> None:
    crop = _blob([30, 30], height=60)
    if why == "low piece":  # the second digit's columns hold only a low stroke: a cursive join, not a digit
        crop[10:60, 40:70] = 0  # only the box's bottom stroke is left there
    strip = line_input(crop)
    f = [int(round((MARGIN + c * strip.scale - 1) / 2)) for c in (15, 45)]
    read = {"one digit": _read_at([4], f[:1]), "unsure": _read_at([4, 2], f, sure=1.0),
            "low piece": _read_at([4, 2], f)}[why]
    assert whole_pieces(crop, strip, read) is None


def test_a_blob_about_as_wide_as_tall_needs_surer_digits_than_a_wide_one() -> None:
    from digitkit.runtime.sequence import NARROW_SURE, PIECE_SURE, WIDE_ASPECT

    p = (PIECE_SURE + NARROW_SURE) / 2  # each digit read between the two bars at its step
    assert PIECE_SURE < p < NARROW_SURE
    logit = float(np.log(10 * p / (1 - p)))
    for widths, stands in (([30, 30], False), ([30, 30, 30], True)):
        crop = _blob(widths, height=50)
        assert (crop.shape[1] - 20) / 50 >= WIDE_ASPECT or not stands
        strip = line_input(crop)
        centres = [15 + 30 * k for k in range(len(widths))]
        f = [int(round((MARGIN + c * strip.scale - 1) / 2)) for c in centres]
        read = _read_at(list(range(1, len(widths) + 1)), f, sure=logit)
        assert min(read.confidences) == pytest.approx(p, abs=0.01)
        assert (whole_pieces(crop, strip, read) is not None) == stands


def test_a_digit_model_is_not_a_sequence_model() -> None:
    with pytest.raises(InferenceError, match="not a sequence model"):
        SequenceModel(DEFAULT_MODEL)


needs_model = pytest.mark.skipif(not SEQUENCE_MODEL.is_file(), reason="no shipped sequence model")


@needs_model
def test_shipped_sequence_model_is_trusted_integer_and_reads_blank_as_nothing() -> None:
    import hashlib

    from digitkit.runtime import modelcheck
    from digitkit.runtime.interpreter import load_interpreter_class

    assert hashlib.sha256(SEQUENCE_MODEL.read_bytes()).hexdigest() in modelcheck.TRUSTED_SHA256, (
        "the shipped sequence model changed: put its new sha256 in digitkit.runtime.modelcheck.TRUSTED_SHA256")

    interp = load_interpreter_class()[1](model_path=str(SEQUENCE_MODEL))
    interp.allocate_tensors()
    assert [t["name"] for t in interp.get_tensor_details() if t["dtype"] == np.float32] == []
    model = SequenceModel(SEQUENCE_MODEL)
    logits = model.logits(np.zeros((3, LINE_HEIGHT, LINE_WIDTH), np.uint8))
    assert logits.shape == (3, FRAMES, BLANK + 1)
    assert all(decode(z).labels == () for z in logits)


@needs_model
def test_reading_whole_can_be_turned_off() -> None:
    from digitkit.runtime.classifier import DigitClassifier

    assert DigitClassifier().sequence is not None
    assert DigitClassifier(read_whole=False).sequence is None



def _split_with(answer, sure_digit: float | None = None):
    """split_touching on one wide blob whose whole reading is ``answer`` (None / [] / pieces); returns
    (segments out, how many stretch tiles the cutter sent to the model). With ``sure_digit`` the one-digit model
    reads the blob as an 8 at that probability instead of rejecting it; the whole reading's digits are read at
    0.9."""
    from digitkit.runtime.segment import Segment
    from digitkit.runtime.sequence import Piece
    from digitkit.runtime.split import split_touching

    crop = _blob([40, 40] if sure_digit is not None else [30, 30], height=60)  # 100 x 80 / 80 x 80 pixels
    seg = Segment(box=(100, 50, crop.shape[1], crop.shape[0]), tile=np.zeros((28, 28), np.uint8), crop=crop,
                  origin=(90, 40))
    row = np.zeros((1, 11), np.float32)
    row[0, 10] = 0.9  # the one-digit model rejects the blob: it is tried
    if sure_digit is not None:
        row[0] = np.eye(11, dtype=np.float32)[8] * sure_digit
    calls = []

    def predict(tiles: np.ndarray) -> np.ndarray:
        calls.append(len(tiles))
        out = np.zeros((len(tiles), 11), np.float32)
        out[:, 10] = 1.0
        return out

    def read_whole(segs):
        assert len(segs) == 1
        if answer is None or answer == []:
            return [answer]
        return [[Piece((10 + 30 * k, 10, 30, 60), np.zeros((28, 28), np.uint8), lab, 0.9, np.eye(10)[lab],
                       row=np.eye(11, dtype=np.float32)[lab]) for k, lab in enumerate(answer)]]

    segs, rows, trace = split_touching([seg], row, predict, lambda p: p[:, :10], lambda r: r[10] >= 0.5,
                                       read_whole=read_whole)
    return segs, rows, trace, sum(calls)


def test_a_blob_read_whole_becomes_its_digits_without_cutting() -> None:
    segs, rows, trace, cut_tiles = _split_with([4, 2])
    assert cut_tiles == 0  # no stretch was cut and sent to the one-digit model
    assert [int(r.argmax()) for r in rows] == [4, 2]
    assert [s.box for s in segs] == [(100, 50, 30, 60), (130, 50, 30, 60)]  # crop pixels + origin
    assert [p.label for p in trace[0][0]] == [4, 2] and trace[0][1] == [0, 1]


def test_a_blob_surely_holding_at_most_one_digit_is_left_whole() -> None:
    segs, rows, trace, cut_tiles = _split_with([])
    assert cut_tiles == 0 and len(segs) == 1 and trace == [(None, [])]


def test_a_blob_whose_whole_reading_does_not_stand_is_cut() -> None:
    segs, rows, trace, cut_tiles = _split_with(None)
    assert cut_tiles > 0 and trace[0][0] is not None


def test_a_blob_read_surely_as_one_digit_is_still_read_whole_but_never_cut() -> None:
    # A 1 touching its neighbour makes a blob the one-digit model may take for one wide digit: the sequence
    # model is asked about it too, and when its reading does not stand the blob stays that one digit.
    segs, rows, trace, cut_tiles = _split_with([7, 1], sure_digit=0.6)
    assert cut_tiles == 0 and [int(r.argmax()) for r in rows] == [7, 1]
    segs, rows, trace, cut_tiles = _split_with(None, sure_digit=0.6)
    assert cut_tiles == 0 and len(segs) == 1 and int(rows[0].argmax()) == 8 and trace == [(None, [])]
    # A wide 0 read as one digit at 0.95 is not overridden by a whole reading "00" at 0.9 a digit.
    segs, rows, trace, cut_tiles = _split_with([0, 0], sure_digit=0.95)
    assert cut_tiles == 0 and len(segs) == 1 and int(rows[0].argmax()) == 8


@pytest.mark.parametrize(("digit_p", "answer", "piece_p", "asked", "read"), [
    (0.6, [7, 1], 0.95, True, [7, 1]),  # doubted: a 1 inside its neighbour is read as two digits
    (0.6, [1, 0], 0.75, True, [8]),  # ... but only if each is read surely: an open 0 read "10" stays one digit
    (0.6, None, 0.95, True, [8]),  # doubted, but the whole reading does not stand: one digit, not cut
    (0.95, [7, 1], 0.95, False, [8]),  # read surely: one digit, the sequence model is not asked
])
def test_a_narrow_blob_read_doubtfully_is_asked_but_never_cut(digit_p, answer, piece_p, asked, read) -> None:
    from digitkit.runtime.segment import Segment
    from digitkit.runtime.sequence import Piece
    from digitkit.runtime.split import ASK_DOUBT, ASK_NARROW, ASK_NARROW_SURE, SPLIT_ASPECT, split_touching

    crop = _blob([25, 25], height=60)  # 70 x 80 pixels: narrower than tall
    assert ASK_NARROW * crop.shape[0] < crop.shape[1] <= SPLIT_ASPECT * crop.shape[0]
    assert (digit_p < ASK_DOUBT or not asked) and (piece_p > ASK_NARROW_SURE or read == [8])
    seg = Segment(box=(0, 0, crop.shape[1], crop.shape[0]), tile=np.zeros((28, 28), np.uint8), crop=crop)
    row = np.eye(11, dtype=np.float32)[8:9] * digit_p
    calls, cut = [], []

    def read_whole(segs):
        calls.extend(segs)
        return [None if answer is None else [
            Piece((10 + 25 * k, 10, 25, 60), np.zeros((28, 28), np.uint8), lab, piece_p, np.eye(10)[lab],
                  row=np.eye(11, dtype=np.float32)[lab]) for k, lab in enumerate(answer)] for _ in segs]

    segs, rows, trace = split_touching([seg], row, lambda t: cut.append(len(t)) or np.zeros((len(t), 11)),
                                       lambda p: p[:, :10], lambda r: r[10] >= 0.5, read_whole=read_whole)
    assert bool(calls) == asked and not cut
    assert [int(r.argmax()) for r in rows] == read


def test_explain_draws_a_blob_read_whole_with_its_digits() -> None:
    from digitkit.runtime.explain import _WIDTH, _whole_panel
    from digitkit.runtime.segment import Segment

    crop = _blob([30, 30], height=60)
    seg = Segment(box=(0, 0, crop.shape[1], crop.shape[0]), tile=np.zeros((28, 28), np.uint8), crop=crop)
    _, _, trace, _ = _split_with([4, 2])
    panel = _whole_panel(seg, trace[0][0])
    assert panel.ndim == 3 and panel.shape[1] == _WIDTH
    # The pieces' boxes are drawn in orange (BGR 255, 128, 0) over the blob.
    assert ((panel[..., 0] == 255) & (panel[..., 1] == 128) & (panel[..., 2] == 0)).sum() > 100


class _Reads:
    """A stand-in sequence model: every strip read as nothing (``answer`` None) or as one 4."""

    def __init__(self, answer: int | None) -> None:
        self.answer, self.strips = answer, 0

    def read(self, strips: np.ndarray):
        self.strips += len(strips)
        return [decode(_logits([] if self.answer is None else [BLANK, self.answer])) for _ in strips]


@needs_model
@pytest.mark.parametrize(("top", "whole", "seq_answer", "asked", "vetoed"), [
    (0.6, True, None, 1, True),  # a doubtful digit the sequence model reads as nothing: not a digit
    (0.6, True, 4, 1, False),  # ... read as a digit there too: stands
    (0.95, True, None, 0, False),  # a sure digit is not asked
    (0.6, False, None, 0, False),  # a piece of a blob (no crop of its own) is not asked
])
def test_the_sequence_model_vetoes_a_doubtful_blob_it_reads_as_no_digit(
        top: float, whole: bool, seq_answer: int | None, asked: int, vetoed: bool) -> None:
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.runtime.segment import Segment

    clf = DigitClassifier()
    clf.sequence = _Reads(seq_answer)
    crop = _blob([40])
    seg = Segment(box=(0, 0, crop.shape[1], crop.shape[0]), tile=np.zeros((28, 28), np.uint8),
                  crop=crop if whole else None)
    row = np.zeros((1, 11), np.float32)
    row[0, 4], row[0, 10] = top, 0.02
    out = clf._veto([seg], row)
    assert clf.sequence.strips == asked
    assert clf.is_digit(out[0])[1] is (not vetoed)
    if seq_answer is None:  # the digits' probabilities are kept (--explain shows them)
        assert np.array_equal(out[0, :10], row[0, :10])


class _ReadsOne:
    """A stand-in sequence model: every strip read as the one digit ``digit``, at about ``conf``."""

    def __init__(self, digit: int, conf: float) -> None:
        self.digit, self.conf, self.strips = digit, conf, 0

    def read(self, strips: np.ndarray):
        self.strips += len(strips)
        z = _logits([BLANK, self.digit])
        z[1] = 0.0  # the digit's step: the digit has probability conf, the other ten classes share the rest
        z[1, self.digit] = float(np.log(self.conf * BLANK / (1.0 - self.conf)))
        return [decode(z) for _ in strips]


def test_second_opinion_averages_the_two_models_only_for_one_sure_digit_they_agree_on() -> None:
    digit_p = np.full(10, 0.02, np.float32)
    digit_p[8] = 0.3
    sure8 = decode(_logits([BLANK, 8]))
    both = second_opinion(sure8, digit_p, sure=0.9)
    assert both is not None and int(both.argmax()) == 8 and both[8] == pytest.approx((0.3 + sure8.confidences[0]) / 2)
    assert second_opinion(decode(_logits([BLANK, 8, BLANK, 3])), digit_p, sure=0.9) is None  # two digits
    assert second_opinion(decode(_logits([])), digit_p, sure=0.9) is None  # no digit
    assert second_opinion(sure8, digit_p, sure=1.01) is None  # not sure enough
    digit_p[6] = 0.6  # the one-digit model reads a 6: a sure 8 of the sequence model does not change the label
    assert second_opinion(sure8, digit_p, sure=0.9) is None


@needs_model
@pytest.mark.parametrize(("digit_p", "nad", "seq", "label", "kept"), [
    (0.3, 0.02, (6, 0.97), 6, True),  # a doubted 6 the sequence model surely reads as 6 too: their mean
    (0.6, 0.02, (8, 0.97), 6, True),  # ... surely read as 8: the one-digit model's 6 stands (labels never change)
    (0.95, 0.02, (8, 0.99), 6, True),  # a sure 6 is not asked
    (0.3, 0.4, (6, 0.97), 6, True),  # called "not a digit" below RESCUE_NAD, surely read as 6: a digit
    (0.3, 0.4, (6, 0.6), 6, False),  # ... read unsurely: stays "not a digit"
    (0.1, 0.8, (6, 0.99), 6, False),  # surely "not a digit": not asked
])
def test_the_sequence_model_gives_a_doubted_lone_blob_a_second_opinion(
        digit_p: float, nad: float, seq: tuple[int, float], label: int, kept: bool) -> None:
    from digitkit.runtime import sequence
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.runtime.segment import Segment

    clf = DigitClassifier()
    clf.sequence = _ReadsOne(*seq)
    crop = _blob([40])
    seg = Segment(box=(0, 0, crop.shape[1], crop.shape[0]), tile=np.zeros((28, 28), np.uint8), crop=crop)
    row = np.full((1, 11), 0.01, np.float32)
    row[0, 6], row[0, 10] = digit_p, nad
    out = clf._veto([seg], row)
    asked = digit_p < sequence.VETO_SURE and nad < sequence.RESCUE_NAD
    assert clf.sequence.strips == int(asked)
    best, is_digit = clf.is_digit(out[0])
    assert (best, is_digit) == (label, kept)
    both = asked and seq[0] == 6 and seq[1] >= sequence.SECOND_SURE
    assert out[0, 6] == pytest.approx((digit_p + seq[1]) / 2 if both else digit_p, abs=1e-3)


@needs_model
@pytest.mark.parametrize(("conf", "text", "marked"), [(0.97, "6", True), (0.6, "", False)])
def test_read_candidates_keeps_a_doubted_digit_both_models_read_and_marks_it_for_explain(
        conf: float, text: str, marked: bool) -> None:
    """A lone 6 the one-digit model reads at 0.3, below --min-confidence (0.35): dropped, unless the sequence model
    surely reads the same 6; then the reading has it, and ``--explain`` marks its tile (Candidates.second)."""
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.runtime.segment import Segment

    clf = DigitClassifier()
    clf.sequence = _ReadsOne(6, conf)
    crop = _blob([40])
    tile = np.zeros((28, 28), np.uint8)
    tile[4:24, 8:20] = 255
    tile[8:20, 12:16] = 0
    seg = Segment(box=(0, 0, crop.shape[1], crop.shape[0]), tile=tile, crop=crop)
    row = np.full((1, 11), 0.01, np.float32)
    row[0, 6], row[0, 10] = 0.3, 0.02
    seen = clf.read_candidates("x.png", [seg], row)
    assert seen.reading.text == text
    assert seen.second == (marked,)


class _ReadsPairs:
    """A stand-in sequence model: every strip read surely as the two digits 4 2 (or as nothing)."""

    def __init__(self, pair: bool) -> None:
        self.pair, self.strips = pair, 0

    def read(self, strips: np.ndarray):
        self.strips += len(strips)
        path = [BLANK] * 5 + [4] + [BLANK] * 6 + [2] if self.pair else []
        return [decode(_logits(path)) for _ in strips]


@needs_model
@pytest.mark.parametrize(("pair", "text"), [(True, "424242"), (False, "")])
def test_a_line_of_touching_pairs_the_digit_model_rejects_is_not_text_when_read_whole(pair: bool, text: str) -> None:
    """Three blobs of two touching digits each: the one-digit model calls each "not a digit" (it was taught that
    two digits in one tile are not one digit), which made the line text and dropped it before any blob was read
    whole. A blob the sequence model reads as digits is not text; one it reads as nothing still is."""
    from digitkit.runtime.classifier import DigitClassifier
    from digitkit.runtime.segment import Segment

    clf = DigitClassifier()
    clf.sequence = _ReadsPairs(pair)
    crop = _blob([40, 40])
    segs = [Segment(box=(10 + 100 * k, 10, crop.shape[1], crop.shape[0]), tile=np.zeros((28, 28), np.uint8),
                    crop=crop, origin=(100 * k, 0)) for k in range(3)]
    rows = np.zeros((3, 11), np.float32)
    rows[:, 10] = 0.95
    assert clf.read_candidates("line", segs, rows).reading.text == text
    assert clf.sequence.strips == 3  # each blob read once: the splitter reuses the text rule's readings
