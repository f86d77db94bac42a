"""Touching and overlapping digits: segmentation by recognition.

A blob that may hold several digits (wider than one digit, or one the model calls "not a digit") gets
candidate cuts and a tile for every stretch between two cuts (:mod:`digitkit.runtime.cuts`). The model
scores all tiles of all such blobs of an image in one batch, and dynamic programming picks the sequence of
stretches that covers the blob with the highest total score: the sum over stretches of the log-probability
of its best digit (from the model's full softmax, so its "not a digit" share counts against a stretch),
minus a shape prior (the stretch's log aspect against that digit's in the MNIST training images), minus a
width prior (the stretch's width against the blob's ink height: a digit is about 0.2-0.9 heights wide),
plus a per-digit bonus, minus a cost per stroke a cut goes through.

The best sequence is then accepted or not (:func:`accept_split`). A blob that is about as wide as tall may
as well be one letter or doodle cut into digit-like strokes (an ``h`` into ``17``), so each of its pieces
must be read surely; a blob at least ``WIDE_ASPECT`` heights wide is no single character, so there the
sequence as a whole is judged (the geometric mean of its pieces' confidences) and one less sure piece no
longer throws away every digit of the number. The weights were tuned on lines made from MNIST *training*
digits (``benchmarks/lines.py --split train``) against non-digit pages of other seeds than the measured one
(``benchmarks/nondigit_pages.py --seed 5`` and ``--seed 7``).

Only numpy; the model is called by the classifier, which hands the probabilities back here.
"""

from __future__ import annotations

import numpy as np

from digitkit.runtime.cuts import SplitPlan, plan_split

# The weights were searched together (500 random draws, with the acceptance rules below) on 300 lines of MNIST
# *training* digits (benchmarks/lines.py --split train), keeping the letter, word, symbol and doodle pages of
# benchmarks/nondigit_pages.py --seed 5 (not the measured seed 11) no worse than before (400 pages: 53 report a
# digit against 52, one more cursive page), then checked on 100 further training lines and on --seed 7 (500
# pages: 98 against 97).
# The search put the per-label shape prior's weight near 0 once the width prior was in (0.3 before it): the
# model's own answer already knows a 0 from a 1, and the width prior catches slivers and pairs. Both stay
# parameters (stretch_scores) so a model without a "not a digit" answer can be tuned the same way.
DIGIT_BONUS = 0.4  # added per digit to the sequence's log-probability
CROSS_COST = 0.2  # subtracted per stroke a cut goes through
ASPECT_WEIGHT = 0.0  # weight of the shape prior below against the model's log-probability
WIDTH_WEIGHT = 0.15  # weight of the width prior (a stretch's width / the blob's ink height)
LOG_WIDTH = (-1.0, 0.5)  # ... its mean and standard deviation, in log(width / height)
# log(width / height) of each digit's ink box across the 60 000 MNIST *training* images: mean and standard
# deviation per label (benchmarks/lines.py --aspect-table prints it). A stretch far wider or narrower than
# the digit it is read as is probably two digits or a part of one.
LOG_ASPECT = np.array([[-0.106, 0.196], [-0.931, 0.459], [-0.071, 0.218], [-0.235, 0.212], [-0.241, 0.212],
                       [-0.074, 0.258], [-0.326, 0.217], [-0.264, 0.215], [-0.282, 0.221], [-0.395, 0.205]],
                      np.float32)


def best_sequence(plan: SplitPlan, scores: np.ndarray, bonus: float = DIGIT_BONUS,
                  cross: float = CROSS_COST) -> list[int]:
    """The stretches (indices into ``plan.spans``) covering the blob left to right with the best total score.

    Args:
        plan: from :func:`plan_split`.
        scores: log-probability of each stretch being one digit (its best digit).
        bonus: added per digit, so n good digits beat one forced reading of the whole blob.
    """
    n = len(plan.paths)
    best = np.full(n, -np.inf)
    prev: list[int] = [-1] * n
    best[0] = 0.0
    for k, (i, j) in sorted(enumerate(plan.spans), key=lambda t: t[1][1]):
        if best[i] == -np.inf:
            continue
        v = best[i] + scores[k] + bonus - cross * plan.crossings[i]
        if v > best[j]:
            best[j], prev[j] = v, k
    if best[n - 1] == -np.inf:
        return []
    out, at = [], n - 1
    while at > 0:
        k = prev[at]
        out.append(k)
        at = plan.spans[k][0]
    return out[::-1]


def stretch_scores(digit_p: np.ndarray, log_aspect: np.ndarray, weight: float = ASPECT_WEIGHT,
                   log_width: np.ndarray | None = None, width_weight: float = WIDTH_WEIGHT) -> np.ndarray:
    """How much each stretch looks like one digit: the best over labels of the label's log-probability
    minus ``weight`` times how unusual the stretch's shape is for that label (a squared z-score / 2), minus
    ``width_weight`` times how unusual its width is for a digit of the blob's height (``log_width``:
    log(stretch width / blob ink height); a sliver of a digit or two digits side by side are unusual)."""
    z = (log_aspect[:, None] - LOG_ASPECT[None, :, 0]) / LOG_ASPECT[None, :, 1]
    out = (np.log(np.clip(digit_p, 1e-6, 1.0)) - weight * 0.5 * z * z).max(1)
    if log_width is not None and width_weight:
        zw = (log_width - LOG_WIDTH[0]) / LOG_WIDTH[1]
        out = out - width_weight * 0.5 * zw * zw
    return out


def span_log_widths(plan: SplitPlan) -> np.ndarray:
    """log(width / ink height) of each stretch of ``plan``, its width measured between its two cuts."""
    mean = plan.paths.mean(1)
    widths = np.array([(mean[j] - mean[i]) / plan.scale for i, j in plan.spans], np.float32)
    return np.log(np.maximum(widths, 1e-3) / max(plan.ink_height, 1e-3))


MAX_DIGITS = 8  # a blob wider than this many heights is a rule or a scribble, not a number to cut
SPLIT_ASPECT = 1.0  # wider than this times its height may hold several digits
SURE_ASPECT = 1.6  # ... but up to this width, a blob read this surely (SURE) is taken as one digit
SURE = 0.9
# With a "not a digit" answer (trained on two digits in one tile), a blob the model accepts as a digit at
# SURE_ND or more is one digit up to SURE_ASPECT_ND heights: on 300 MNIST-train lines this gave up 1 line
# in 300, and the camera stops cutting every wide 4 or 0 into a hundred stretches.
SURE_ND = 0.5
SURE_ASPECT_ND = 2.0
# ... such a blob is still read whole by the sequence model, which sees a 1 touching a neighbour where the
# one-digit model sees one wide digit; when that reading does not stand, or any of its digits is read no more
# surely than the one-digit model reads the blob (a wide 0 read "00"), the blob stays one digit (not cut).
# On 800 lines of MNIST training digits: 83.9 -> 85.0 % exact, camera-like scenes and photos unchanged.
ASK_SURE = True
# A blob narrower than SPLIT_ASPECT heights but wider than ASK_NARROW heights that the one-digit model reads as
# a digit less surely than ASK_DOUBT is asked too, the same way (never cut): a 1 pushed into its neighbour makes
# a blob no wider than one digit, which the one-digit model reads as that neighbour, doubtfully (0.35-0.77 on
# the training lines where it happened, against 0.74-0.98 for the single digits beside them). On 300 lines of
# MNIST training digits 83.0 -> 84.0 % exact (0.5 / 0.9 read the same); the non-digit pages of seeds 5 and 7,
# the development photos and the camera-like scenes unchanged. None: not asked. A blob no wider than one digit
# is most often one digit, so its whole reading stands only with every digit read at ASK_NARROW_SURE or more
# (those that were right on the training lines: 0.98-1.0; an open-bottomed 0 of the camera benchmark read
# "10" at 0.71 / 0.9 stays one digit).
# ASK_DOUBT 0.8 -> 0.9 later (with the join, the one-blob deskew, the underline and text rules and NARROW_SURE 0.6
# in): a 21 or a 15 the one-digit model read as one digit at 0.81-0.91 was never asked. 2 000 training lines 91.65
# -> 91.9 % exact (96.81 -> 96.90 % of digits; 0.95: 92.0 % / 96.93 %), 1 000 scenes of separate training digits,
# level and tilted, and the pages of seeds 5 and 7 unchanged; camera frames per CPU-second alternated 171.1 /
# 165.3 at 0.8, 168.4 / 164.7 at 0.9, 155.5 / 155.1 at 0.95 (not taken: the nearest to the 150 asked).
# ASK_NARROW_SURE 0.9 -> 0.8 later, with the sequence model's second view (runtime/sequence.py, VIEW_SHIFT) in: a 41
# whose 1 hides in the 4's box was read "41" at 0.99 / 0.84 and left one 4. 2 000 training lines (line seeds 0 and
# 3) 203 -> 199 and 206 -> 202 digit errors (0.7 the same); the pages of seeds 5 and 7, 1 000 scenes of separate
# training digits (level and tilted), the development photos and the camera's frames read right unchanged. The
# camera's open 0 read "10" at 0.71 still stays one digit.
ASK_NARROW = 0.6
ASK_DOUBT = 0.9
ASK_NARROW_SURE = 0.8
SPLIT_REJECTED = True  # also try blobs the model calls "not a digit" (when it has that answer)
PIECE_SURE = 0.8  # with that answer, every piece of an accepted split is read at least this surely (0.7 / 0.5
# below let twice as many doodle pages through with the slanted cuts: nondigit_pages.py --seed 5)
PIECE_NAD = 0.1  # ... and called "not a digit" at less than this (stricter than the reject threshold: doodles)
PIECE_HEIGHT = 0.6  # ... and is at least this tall relative to the blob's ink
# A blob at least WIDE_ASPECT times as wide as tall is no single letter, symbol or doodle (on the non-digit pages
# of seeds 5 and 7, 1.4 and 1.5 let letters through; such blobs there are words). Its split is judged as a
# sequence: the geometric mean of the pieces' best-digit probabilities at least WIDE_SURE, no piece below
# WIDE_PIECE_SURE nor rejected by the model, every piece at least WIDE_HEIGHT of the blob's ink height, and
# every piece read as 1 read at least PIECE_SURE (a cursive word's strokes are read as 1s).
WIDE_ASPECT = 1.6
WIDE_SURE = 0.75
WIDE_PIECE_SURE = 0.3
WIDE_HEIGHT = 0.45


def accept_split(pieces: np.ndarray, digit_p: np.ndarray, heights: np.ndarray, blob_aspect: float,
                 rejected) -> bool:
    """Whether a split into several pieces stands (with a "not a digit" answer; see the module's docstring).

    Args:
        pieces: the model's full rows for the chosen pieces.
        digit_p: their digit columns (n, 10).
        heights: each piece's ink height / the blob's ink height.
        blob_aspect: the blob's width / height.
        rejected: row -> whether the model's own "not a digit" answer rejects it.
    """
    if any(rejected(row) for row in pieces):
        return False
    top = digit_p.max(1)
    # Cutting a letter or a doodle into strokes must not manufacture digits out of it, and a lone stroke is
    # always a fine "1": in a blob about as wide as tall every piece must be a sure digit and nearly as tall
    # as the blob; in a wide blob, every piece read as 1 (column 1, as in LOG_ASPECT) must be sure.
    if blob_aspect >= WIDE_ASPECT:
        ones = digit_p.argmax(1) == 1
        return bool(top.min() >= WIDE_PIECE_SURE and heights.min() >= WIDE_HEIGHT
                    and (top[ones] >= PIECE_SURE).all()
                    and np.exp(np.log(np.clip(top, 1e-6, 1.0)).mean()) >= WIDE_SURE)
    return bool(top.min() >= PIECE_SURE and heights.min() >= PIECE_HEIGHT
                and (1.0 - digit_p.sum(1)).max() < PIECE_NAD)


def split_touching(segments: list, probs: np.ndarray, predict, digit_probs, rejected=None,
                   bonus: float = DIGIT_BONUS, cross: float = CROSS_COST,
                   aspect_weight: float = ASPECT_WEIGHT, read_whole=None) -> tuple[list, np.ndarray, list]:
    """Replace each blob that may hold several digits by the best sequence of stretches of it.

    Args:
        segments: :class:`digitkit.runtime.segment.Segment` list (any images, flattened).
        probs: the model's rows for their tiles.
        predict: tiles (n, 28, 28) uint8 -> probability rows; called once for all blobs.
        digit_probs: probability rows -> the (n, 10) digit part (drops a "not a digit" column).
        rejected: probability row -> whether the model's own "not a digit" answer rejects it (None: the
            model has no such answer). A rejected blob at least half as wide as tall is tried too: two
            digits overlapping so much that their blob is narrow are still not one digit.
        read_whole: blob segments -> for each, its digits read whole by the sequence model (a list of
            :class:`digitkit.runtime.sequence.Piece`; [] to leave it whole and uncut, None when the reading
            does not stand), or None (no sequence model): a blob read whole is not cut.

    Returns:
        The new segments, their probability rows, and for each input segment its plan (or None) and the
        chosen stretches, or for a blob read whole its pieces and their indices: what ``--explain`` draws.
    """
    plans: list = []
    for seg, row in zip(segments, probs, strict=True):
        x, y, w, h = seg.box
        # A blob wider than one digit is cut. A low confidence alone is no reason: with a digits-only model
        # that cut real single digits (a faint 0 into "61") on the development photos.
        is_rejected = rejected is not None and rejected(row)
        doubtful = SPLIT_ASPECT * h < w <= MAX_DIGITS * h or (
            SPLIT_REJECTED and is_rejected and 0.5 * h <= w <= MAX_DIGITS * h)
        # A blob not much wider than a digit that the model reads with confidence is left alone: it is
        # usually one wide digit, and trying dozens of stretches for every such blob costs the camera its speed.
        sure, wide = (SURE, SURE_ASPECT) if rejected is None else (SURE_ND, SURE_ASPECT_ND)
        # ask: read whole by the sequence model, but not cut when that reading does not stand; it stands only if
        # each of its digits is read more surely than this
        ask: float | None = None
        top = float(digit_probs(row[None])[0].max())
        if doubtful and not is_rejected and w <= wide * h and top >= sure:
            doubtful, ask = False, (top if ASK_SURE else None)
        elif ASK_NARROW is not None and not doubtful and not is_rejected and ASK_NARROW * h < w and top < ASK_DOUBT:
            ask = max(top, ASK_NARROW_SURE)  # narrower than a split, but doubted: maybe a 1 inside its neighbour
        # True: cut (and asked first); a float: asked, with that bar, never cut; None: left alone
        plans.append(True if doubtful and seg.crop is not None else (ask if seg.crop is not None else None))
    whole: dict[int, list] = {}
    if read_whole is not None:
        asked = [i for i, p in enumerate(plans) if p is not None]
        for i, pieces in zip(asked, read_whole([segments[i] for i in asked]), strict=True):
            if pieces is not None and plans[i] is not True and len(pieces) > 1 and min(
                    p.confidence for p in pieces) <= plans[i]:
                # an asked blob (plans[i] is its bar: the one-digit model's own confidence in it, or for a
                # narrow one at least ASK_NARROW_SURE) whose whole reading does not clear it stays one digit
                pieces = None
            if pieces is not None:  # read whole (or surely no several digits: not cut)
                plans[i] = None
                if len(pieces) > 1:
                    whole[i] = pieces
    plans = [plan_split(seg.crop) if p is True else None for seg, p in zip(segments, plans, strict=True)]
    tried = [p for p in plans if p is not None]
    if not tried and not whole:
        return list(segments), probs, [(None, []) for _ in segments]
    if not tried:
        piece_probs = d_pieces = scores = np.zeros((0, 1), np.float32)
    else:
        piece_probs = predict(np.concatenate([p.tiles for p in tried]))
        aspect = np.log(np.array([b[2] / max(b[3], 1) for p in tried for b in p.boxes], np.float32))
        d_pieces = digit_probs(piece_probs)
        widths = np.concatenate([span_log_widths(p) for p in tried])
        scores = stretch_scores(d_pieces, aspect, aspect_weight, widths)
    out_segs, out_rows, trace = [], [], []
    at = 0
    for i, (seg, row, plan) in enumerate(zip(segments, probs, plans, strict=True)):
        if i in whole:
            for piece in whole[i]:
                out_segs.append(_placed(seg, piece.box, piece.tile))
                out_rows.append(piece.row)
            trace.append((whole[i], list(range(len(whole[i])))))
            continue
        if plan is None:
            out_segs.append(seg)
            out_rows.append(row)
            trace.append((None, []))
            continue
        n = len(plan.spans)
        chosen = best_sequence(plan, scores[at:at + n], bonus, cross)
        # With a "not a digit" answer, a split stands only if its pieces are read as digits (accept_split).
        if rejected is not None and len(chosen) > 1 and not accept_split(
                piece_probs[[at + k for k in chosen]], d_pieces[[at + k for k in chosen]],
                np.array([plan.boxes[k][3] / max(plan.ink_height, 1e-3) for k in chosen]),
                seg.box[2] / max(seg.box[3], 1), rejected):
            chosen = []
        trace.append((plan, chosen))
        if len(chosen) <= 1:
            out_segs.append(seg)
            out_rows.append(row)
        else:
            for k in chosen:
                out_segs.append(_placed(seg, plan.boxes[k], plan.tiles[k]))
                out_rows.append(piece_probs[at + k])
        at += n
    return out_segs, np.stack(out_rows) if out_rows else probs[:0], trace


def _placed(seg, box: tuple[int, int, int, int], tile: np.ndarray):
    """A piece of ``seg`` (its box in the blob's crop pixels) as a segment of the picture's own pixels."""
    from digitkit.runtime.segment import Segment

    ox, oy = seg.origin
    bx, by, bw, bh = box
    piece = (ox + bx, oy + by, bw, bh)
    if seg.back is not None:  # found on the ink map turned upright: back to its own pixels
        from digitkit.runtime.deskew import box_back

        piece = box_back(piece, seg.back)
    return Segment(box=(round(piece[0] * seg.px), round(piece[1] * seg.px), max(1, round(piece[2] * seg.px)),
                        max(1, round(piece[3] * seg.px))), tile=tile)
