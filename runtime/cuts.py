"""Candidate cuts through a blob that may hold several touching or overlapping digits, and the tile of
every stretch between two cuts (what :mod:`digitkit.runtime.split` scores with the model).

The blob is scaled to a work height. Cut seeds go at the column-projection minima and on a regular grid;
each grows into the cheapest top-to-bottom path through the least ink within a band around its seed (a
shortest path that may bend around strokes, so overlapping digits are parted along their gap rather than by
a straight line). Slanted writing is cut along its slant too (the ink's second moments give it): the gap
between two digits leaning right leans right, and a vertical band cannot follow it. Cuts that stay within
MIN_GAP columns of another in every row are dropped (they would waste model calls).

Only numpy and OpenCV.
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
MIN_GAP = 3.0  # a cut within this many work pixels of a kept one in every row is dropped
MAX_SLANT = 0.6  # steepest slant followed, x per row
MIN_SLANT = 0.08  # a slant below this is taken as upright
BEND_COST = 24.0  # extra cost of one diagonal step of a cut, in ink levels (0-255)

@dataclass(frozen=True)
class SplitPlan:
    """The cuts tried on one blob and the tile of every stretch between two cuts."""

    scale: float  # work pixels per blob pixel
    paths: np.ndarray  # int (n_cuts, H): the x of each cut in every row, work pixels; first = left edge, last = right
    spans: tuple[tuple[int, int], ...]  # (i, j): the stretch between cut i and cut j
    tiles: np.ndarray  # uint8 (n_spans, 28, 28)
    boxes: tuple[tuple[int, int, int, int], ...]  # each stretch's ink box (x, y, w, h) in blob pixels
    crossings: np.ndarray  # float (n_cuts,): about how many strokes each cut goes through (0 at the edges)
    ink_height: float  # the blob's ink height, blob pixels (its crop is padded)


def _cut_paths(ink: np.ndarray, seeds: np.ndarray, band: int, slope: float = 0.0) -> np.ndarray:
    """The cheapest top-to-bottom path from each seed column, each kept within ``band`` columns of the line
    through its seed at ``slope`` (x per row, about the middle row): following the slant of the writing is
    free, each step sideways from it costs ``BEND_COST``.

    Vectorised over seeds: a dynamic programme row by row over a (n_seeds, 2*band+1) window.
    """
    h, w = ink.shape
    offs = np.arange(-band, band + 1)
    shift = np.round(slope * (np.arange(h) - (h - 1) / 2)).astype(np.int64)
    big = np.float32(1e9)

    def window(y: int) -> tuple[np.ndarray, np.ndarray]:
        raw = seeds[:, None] + shift[y] + offs[None, :]
        inside = (raw >= 0) & (raw < w)
        return np.clip(raw, 0, w - 1), inside

    cols, inside = window(0)
    cost = np.where(inside, ink[0][cols].astype(np.float32), big)
    back = np.zeros((h, *cols.shape), np.int8)
    all_cols = np.empty((h, *cols.shape), np.int64)
    all_cols[0] = cols
    pad = np.full((len(seeds), 1), big, np.float32)
    for y in range(1, h):
        cols, inside = window(y)
        all_cols[y] = cols
        left = np.concatenate([pad, cost[:, :-1]], 1) + BEND_COST
        right = np.concatenate([cost[:, 1:], pad], 1) + BEND_COST
        stack = np.stack([left, cost, right])  # came from offset-1, same, offset+1
        arg = stack.argmin(0)
        cost = stack.min(0) + np.where(inside, ink[y][cols].astype(np.float32), big)
        back[y] = arg.astype(np.int8) - 1
    pos = cost.argmin(1)
    paths = np.empty((len(seeds), h), np.int64)
    rows = np.arange(len(seeds))
    for y in range(h - 1, -1, -1):
        paths[:, y] = all_cols[y, rows, pos]
        if y:
            pos = np.clip(pos + back[y, rows, pos], 0, len(offs) - 1)  # ties outside the picture
    return paths


def slant(work: np.ndarray) -> float:
    """The writing's slant, x per row (negative: leaning right), from the ink's second moments."""
    m = cv2.moments(work)
    return float(np.clip(m["mu11"] / m["mu02"], -MAX_SLANT, MAX_SLANT)) if m["mu02"] > 0 else 0.0


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
        # Cuts along the vertical and, for slanted writing, along its slant (the gap between two digits
        # leaning right leans right too).
        lean = slant(ink)
        slopes = [0.0] + ([lean] if abs(lean) >= MIN_SLANT else [])
        paths = np.concatenate([_cut_paths(ink, seeds, max(1, int(BAND * h)), sl) for sl in slopes])
        paths = _distinct(paths[np.argsort(paths.mean(1), kind="stable")])
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
    rows_inked = np.nonzero(work.max(1) > 64)[0]
    ink_height = (float(np.ptp(rows_inked)) + 1 if len(rows_inked) else float(h)) / s
    return SplitPlan(scale=s, paths=paths, spans=tuple(spans), tiles=np.stack(tiles), boxes=tuple(boxes),
                     crossings=crossings, ink_height=ink_height)


def _distinct(paths: np.ndarray) -> np.ndarray:
    """Nearly identical cuts waste model calls (many seeds find one gap): of paths (sorted by mean x) that
    stay within MIN_GAP columns of each other in every row, the first is kept."""
    kept: list[int] = []
    for k in range(len(paths)):
        if all(np.abs(paths[k] - paths[j]).max() >= MIN_GAP for j in kept[-8:]):
            kept.append(k)
    return paths[kept]


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
