"""Touching and overlapping digits: segmentation by recognition.

A blob that may hold several digits (wider than one digit, or one the model does not believe) is scaled to a
work height, and candidate cuts are made: seeds at the column-projection minima and on a regular grid, each
grown into the cheapest top-to-bottom path through the least ink (a shortest path that may bend around
strokes, so overlapping digits are parted along their gap rather than by a straight line). Every stretch
between two cuts that is a plausible digit width becomes a tile; the model scores all tiles in one batch,
and dynamic programming picks the sequence of stretches that covers the blob with the highest total score
(the sum of each stretch's log-probability of its best digit, plus a per-digit bonus that balances the
product's preference for fewer pieces; the bonus was tuned on lines made from MNIST *training* digits,
``benchmarks/lines.py --split train``).

Only numpy and OpenCV; the model is called by the classifier, which hands the probabilities back here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitkit.runtime.preprocess import mnist_normalise
from digitkit.runtime.strokes import normalise_strokes

WORK_HEIGHT = 40  # blobs are cut at this height: strokes stay 2+ px wide, and paths stay cheap
MIN_WIDTH = 0.12  # narrowest stretch (a "1"), as a fraction of the blob's height
MAX_WIDTH = 1.3  # widest stretch that may hold one digit
SEED_STEP = 0.1  # grid of extra cut seeds, as a fraction of the height
BAND = 0.15  # how far a cut may wander from its seed column
MIN_GAP = 2.0  # work pixels between two cuts kept
BEND_COST = 24.0  # extra cost of one diagonal step of a cut, in ink levels (0-255)
DIGIT_BONUS = 0.6  # added per digit to the sequence's log-probability (tuned on MNIST-train lines)
CROSS_COST = 0.8  # subtracted per stroke a cut goes through (tuned on MNIST-train lines)
ASPECT_WEIGHT = 0.5  # weight of the shape prior below against the model's log-probability
# log(width / height) of each digit's ink box across the 60 000 MNIST *training* images: mean and standard
# deviation per label (benchmarks/lines.py --aspect-table prints it). A stretch far wider or narrower than
# the digit it is read as is probably two digits or a part of one.
LOG_ASPECT = np.array([[-0.106, 0.196], [-0.931, 0.459], [-0.071, 0.218], [-0.235, 0.212], [-0.241, 0.212],
                       [-0.074, 0.258], [-0.326, 0.217], [-0.264, 0.215], [-0.282, 0.221], [-0.395, 0.205]],
                      np.float32)


@dataclass(frozen=True)
class SplitPlan:
    """The cuts tried on one blob and the tile of every stretch between two cuts."""

    scale: float  # work pixels per blob pixel
    paths: np.ndarray  # int (n_cuts, H): the x of each cut in every row, work pixels; first = left edge, last = right
    spans: tuple[tuple[int, int], ...]  # (i, j): the stretch between cut i and cut j
    tiles: np.ndarray  # uint8 (n_spans, 28, 28)
    boxes: tuple[tuple[int, int, int, int], ...]  # each stretch's ink box (x, y, w, h) in blob pixels
    crossings: np.ndarray  # float (n_cuts,): about how many strokes each cut goes through (0 at the edges)


def _cut_paths(ink: np.ndarray, seeds: np.ndarray, band: int) -> np.ndarray:
    """The cheapest top-to-bottom path from each seed column, each kept within ``band`` columns of its seed.

    Vectorised over seeds: a dynamic programme row by row over a (n_seeds, 2*band+1) window.
    """
    h, w = ink.shape
    offs = np.arange(-band, band + 1)
    cols = np.clip(seeds[:, None] + offs[None, :], 0, w - 1)  # (S, B)
    inside = (seeds[:, None] + offs[None, :] >= 0) & (seeds[:, None] + offs[None, :] < w)
    big = np.float32(1e9)
    cost = np.where(inside, ink[0][cols].astype(np.float32), big)
    back = np.zeros((h, *cols.shape), np.int8)
    for y in range(1, h):
        left = np.concatenate([np.full((len(seeds), 1), big, np.float32), cost[:, :-1]], 1) + BEND_COST
        right = np.concatenate([cost[:, 1:], np.full((len(seeds), 1), big, np.float32)], 1) + BEND_COST
        stack = np.stack([left, cost, right])  # came from column-1, same, column+1
        arg = stack.argmin(0)
        cost = stack.min(0) + np.where(inside, ink[y][cols].astype(np.float32), big)
        back[y] = arg.astype(np.int8) - 1
    pos = cost.argmin(1)
    paths = np.empty((len(seeds), h), np.int64)
    for y in range(h - 1, -1, -1):
        paths[:, y] = cols[np.arange(len(seeds)), pos]
        if y:
            pos = pos + back[y, np.arange(len(seeds)), pos]
    return paths


def plan_split(crop: np.ndarray) -> SplitPlan | None:
    """Candidate cuts and stretch tiles for one blob's cleaned ink crop (0 = paper, strokes ~255).

    Returns None when the blob is too small to cut.
    """
    h0, w0 = crop.shape
    if h0 < 8 or w0 < 4:
        return None
    s = WORK_HEIGHT / h0
    w = max(2, round(w0 * s))
    work = cv2.resize(crop, (w, WORK_HEIGHT), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    h = WORK_HEIGHT
    ink = work.astype(np.float32)
    proj = cv2.blur(ink.sum(0)[None, :], (3, 1)).ravel()
    lo, hi = int(MIN_WIDTH * h), w - int(MIN_WIDTH * h)
    minima = [x for x in range(max(1, lo), min(w - 1, hi)) if proj[x] <= proj[x - 1] and proj[x] <= proj[x + 1]]
    grid = list(range(max(1, lo), max(1, hi), max(1, int(SEED_STEP * h))))
    seeds = np.array(sorted(set(minima) | set(grid)), np.int64)
    left_edge, right_edge = np.zeros((1, h), np.int64), np.full((1, h), w, np.int64)
    if len(seeds):
        paths = _cut_paths(ink, seeds, max(1, int(BAND * h)))
        # Nearly identical cuts waste model calls: keep one per MIN_GAP columns (many seeds find one gap).
        paths = paths[np.argsort(paths.mean(1))]
        mean, kept, last = paths.mean(1), [], -np.inf
        for k, m in enumerate(mean):
            if m - last >= MIN_GAP:
                kept.append(k)
                last = m
        paths = paths[kept]
        paths = np.concatenate([left_edge, paths, right_edge])
    else:
        paths = np.concatenate([left_edge, right_edge])
    mean = paths.mean(1)
    # How many strokes each cut goes through: the runs of ink along it (thin or faint strokes count as
    # much as bold ones: a cut through a loop crosses two whatever the pen).
    rows = np.arange(h)
    on = work[rows[None, :], np.clip(paths, 0, w - 1)] >= 64
    crossings = (on[:, 1:] & ~on[:, :-1]).sum(1).astype(np.float32) + on[:, 0]
    crossings[0] = crossings[-1] = 0.0
    xx = np.arange(w)[None, :]
    spans, tiles, boxes = [], [], []
    n = len(paths)
    for i in range(n - 1):
        for j in range(i + 1, n):
            width = mean[j] - mean[i]
            whole = i == 0 and j == n - 1
            if width > MAX_WIDTH * h and not whole:
                if i == 0:  # past the widest digit, but the whole blob read as one is always a candidate
                    continue
                break
            if width < MIN_WIDTH * h and not whole:
                continue
            mask = (xx >= paths[i][:, None]) & (xx < paths[j][:, None])
            piece = np.where(mask, work, 0).astype(np.uint8)
            piece = _drop_slivers(piece)
            ys, xs = np.nonzero(piece > 64)
            if len(xs) == 0:
                continue
            spans.append((i, j))
            tiles.append(mnist_normalise(normalise_strokes(piece)))
            boxes.append((int(xs.min() / s), int(ys.min() / s), int(np.ptp(xs) / s) + 1, int(np.ptp(ys) / s) + 1))
    if not tiles:
        return None
    return SplitPlan(scale=s, paths=paths, spans=tuple(spans), tiles=np.stack(tiles), boxes=tuple(boxes),
                     crossings=crossings)


def _drop_slivers(piece: np.ndarray) -> np.ndarray:
    """Remove the bits of a neighbour that a cut leaves in a stretch: components much smaller than the largest."""
    binary = (piece > 64).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 2:
        return piece
    areas = stats[1:, cv2.CC_STAT_AREA]
    small = np.nonzero(areas < 0.15 * areas.max())[0] + 1
    if len(small):
        near = cv2.dilate(np.isin(labels, small).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        piece = np.where(near & ~np.isin(labels, np.setdiff1d(np.arange(1, n), small)), 0, piece).astype(np.uint8)
    return piece


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


def stretch_scores(digit_p: np.ndarray, log_aspect: np.ndarray, weight: float = ASPECT_WEIGHT) -> np.ndarray:
    """How much each stretch looks like one digit: the best over labels of the label's log-probability
    minus ``weight`` times how unusual the stretch's shape is for that label (a squared z-score / 2)."""
    z = (log_aspect[:, None] - LOG_ASPECT[None, :, 0]) / LOG_ASPECT[None, :, 1]
    return (np.log(np.clip(digit_p, 1e-6, 1.0)) - weight * 0.5 * z * z).max(1)


MAX_DIGITS = 8  # a blob wider than this many heights is a rule or a scribble, not a number to cut
SPLIT_ASPECT = 1.0  # wider than this times its height may hold several digits
SURE_ASPECT = 1.6  # ... but up to this width, a blob read this surely (SURE) is taken as one digit
SURE = 0.9
SPLIT_REJECTED = True  # also try blobs the model calls "not a digit" (when it has that answer)
PIECE_SURE = 0.7  # with that answer, every piece of an accepted split is read at least this surely
PIECE_HEIGHT = 0.6  # ... and is at least this tall relative to the blob


def split_touching(segments: list, probs: np.ndarray, predict, digit_probs, rejected=None,
                   bonus: float = DIGIT_BONUS, cross: float = CROSS_COST,
                   aspect_weight: float = ASPECT_WEIGHT) -> tuple[list, np.ndarray, list]:
    """Replace each blob that may hold several digits by the best sequence of stretches of it.

    Args:
        segments: :class:`digitkit.runtime.segment.Segment` list (any images, flattened).
        probs: the model's rows for their tiles.
        predict: tiles (n, 28, 28) uint8 -> probability rows; called once for all blobs.
        digit_probs: probability rows -> the (n, 10) digit part (drops a "not a digit" column).
        rejected: probability row -> whether the model's own "not a digit" answer rejects it (None: the
            model has no such answer). A rejected blob at least half as wide as tall is tried too: two
            digits overlapping so much that their blob is narrow are still not one digit.

    Returns:
        The new segments, their probability rows, and for each input segment its plan (or None) and the
        chosen stretches: what ``--explain`` draws.
    """
    from digitkit.runtime.segment import Segment

    plans: list[SplitPlan | None] = []
    for seg, row in zip(segments, probs, strict=True):
        x, y, w, h = seg.box
        # A blob wider than one digit is cut. A low confidence alone is no reason: with a digits-only model
        # that cut real single digits (a faint 0 into "61") on the development photos.
        is_rejected = rejected is not None and rejected(row)
        doubtful = SPLIT_ASPECT * h < w <= MAX_DIGITS * h or (
            SPLIT_REJECTED and is_rejected and 0.5 * h <= w <= MAX_DIGITS * h)
        # A blob not much wider than a digit that the model reads with confidence is left alone: it is
        # usually one wide digit, and trying dozens of stretches for every such blob costs the camera its speed.
        if doubtful and not is_rejected and w <= SURE_ASPECT * h and float(digit_probs(row[None])[0].max()) >= SURE:
            doubtful = False
        plans.append(plan_split(seg.crop) if doubtful and seg.crop is not None else None)
    tried = [p for p in plans if p is not None]
    if not tried:
        return list(segments), probs, [(None, []) for _ in segments]
    piece_probs = predict(np.concatenate([p.tiles for p in tried]))
    aspect = np.log(np.array([b[2] / max(b[3], 1) for p in tried for b in p.boxes], np.float32))
    d_pieces = digit_probs(piece_probs)
    scores = stretch_scores(d_pieces, aspect, aspect_weight)
    out_segs, out_rows, trace = [], [], []
    at = 0
    for seg, row, plan in zip(segments, probs, plans, strict=True):
        if plan is None:
            out_segs.append(seg)
            out_rows.append(row)
            trace.append((None, []))
            continue
        n = len(plan.spans)
        chosen = best_sequence(plan, scores[at:at + n], bonus, cross)
        # With a "not a digit" answer, a split stands only if the model takes every piece for a digit, surely,
        # and every piece is nearly as tall as the blob (digits of one number): cutting a letter or a doodle
        # into strokes must not manufacture digits out of it (a lone stroke is always a fine "1").
        if rejected is not None and any(
                rejected(piece_probs[at + k]) or float(d_pieces[at + k].max()) < PIECE_SURE
                or plan.boxes[k][3] < PIECE_HEIGHT * seg.crop.shape[0] for k in chosen):
            chosen = []
        trace.append((plan, chosen))
        if len(chosen) <= 1:
            out_segs.append(seg)
            out_rows.append(row)
        else:
            ox, oy = seg.origin
            for k in chosen:
                bx, by, bw, bh = plan.boxes[k]
                piece = (ox + bx, oy + by, bw, bh)
                if seg.back is not None:  # found on the ink map turned upright: back to its own pixels
                    from digitkit.runtime.deskew import box_back

                    piece = box_back(piece, seg.back)
                box = (round(piece[0] * seg.px), round(piece[1] * seg.px), max(1, round(piece[2] * seg.px)),
                       max(1, round(piece[3] * seg.px)))
                out_segs.append(Segment(box=box, tile=plan.tiles[k]))
                out_rows.append(piece_probs[at + k])
        at += n
    return out_segs, np.stack(out_rows) if out_rows else probs[:0], trace
