"""Find the digits in an ink map: connected components, drop specks / rules / page borders, merge the broken
strokes of one digit, order left to right. Supported layout: one horizontal line of separate digits
(several lines are read top to bottom, each left to right, joined with no separator).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitkit.runtime.preprocess import mnist_normalise, require_gray
from digitkit.runtime.strokes import normalise_strokes


@dataclass(frozen=True)
class Segment:
    """One digit candidate: its box in the picture and its MNIST-normalised 28x28 tile."""

    box: tuple[int, int, int, int]  # x, y, w, h in the picture's pixels
    tile: np.ndarray  # uint8 (28, 28), white on black
    # The cleaned ink crop the tile was made from (None for a picture that already is a tile), where its
    # top-left corner is in the ink map, and picture pixels per ink-map pixel: what splitting a blob needs.
    crop: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    px: float = 1.0
    back: np.ndarray | None = None  # 2x3: the crop's picture (turned upright) -> the ink map, if it was turned

    def to_dict(self) -> dict[str, object]:
        return {"box": list(self.box)}


@dataclass(frozen=True)
class SegmentConfig:
    """Geometry rules for what counts as one digit; fractions are of the tallest candidate's height."""

    min_height_px: int = 8  # anything shorter is a speck whatever the picture size
    min_height_fraction: float = 0.4  # a digit in a line is at least this tall relative to the tallest
    min_area_fraction: float = 0.00005  # of the picture's area
    max_digits: int = 32  # more candidates than this is texture, not a number
    max_stroke: float = 0.62  # widest stroke / longer side of the box; wider is a blob (MNIST max: 0.60)
    # Hysteresis (ink down to this fraction of the threshold joining a stroke it touches) is off: at 0.5 and
    # 0.7 it joined digits to the remains of cell borders and shadows (69 and 68 of 87 photos, against 73).
    hysteresis: float = 1.0  # ink down to this fraction of the threshold joins a stroke it touches
    # Two components of one line whose columns overlap by this much (or by most of the narrower one's width) are
    # one blob even when together they are wider than a digit (None: only when they are digit-shaped). On 300
    # touching lines of MNIST training digits (benchmarks/lines.py --split train) 84.0 -> 86.0 % exact; 0.1-0.3
    # read within a line of each other; the non-digit pages of seeds 5 and 7 and the development photos unchanged.
    join_overlap: float | None = 0.2


class _Groups:
    """Union-find over component indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def _union_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def find_digits(ink: np.ndarray, threshold: int, config: SegmentConfig | None = None) -> list[Segment]:
    """Digit candidates in an ink map (0 = paper), left to right.

    Args:
        ink: uint8 ink strength per pixel (see :func:`digitkit.runtime.preprocess.ink_map`).
        threshold: ink level that counts as a stroke.
        config: geometry rules (defaults: :class:`SegmentConfig`).

    Returns:
        One :class:`Segment` per digit candidate; empty for a blank picture.

    Raises:
        InferenceError: ``ink`` is not a uint8 (H, W) array.
    """
    require_gray(ink, "find_digits", allow_empty=True)
    cfg = config or SegmentConfig()
    H, W = ink.shape
    if H == 0 or W == 0:
        return []  # OpenCV's connected components crash the process (SIGSEGV) on an empty image
    # Hysteresis: strokes are what reaches the threshold, plus the fainter ink connected to it, so a faint
    # pencil or thin-pen digit whose stroke dips below the threshold in places stays one component.
    weak = (ink >= max(1, int(cfg.hysteresis * threshold))).astype(np.uint8)
    n, labels, stats, _ = components(weak)
    if n <= 1:
        return []
    strong = np.zeros(n, bool)
    strong[np.unique(labels[ink >= threshold])] = True
    strong[0] = False
    if not strong[1:].all():
        labels = np.where(strong[labels], labels, 0)
        stats = stats.copy()
        stats[~strong, cv2.CC_STAT_AREA] = 0  # dropped below, as specks
    stats = stats[1:]  # drop the background component
    min_area = max(4.0, cfg.min_area_fraction * H * W)
    keep = []
    small_picture = max(H, W) <= 64  # a tight crop: its digit may touch the edges
    for i, (x, y, w, h, area) in enumerate(stats):
        if area < min_area or h < cfg.min_height_px and w < cfg.min_height_px:
            continue
        touches = int(x == 0) + int(y == 0) + int(x + w == W) + int(y + h == H)
        if touches and not small_picture and (touches >= 2 or w >= 0.5 * W or h >= 0.5 * H) \
                and not (touches == 1 and _cut_stroke(labels, i + 1, stats[i])):
            continue  # a page edge, a desk, a shadow: not a digit
        if touches and (h >= 4 * w and w <= 0.06 * W or w >= 4 * h and h <= 0.06 * H):
            continue  # a thin strip along the frame: the rest of a cell border or the sheet's edge
        if touches and not small_picture and max(w, h) < 0.1 * min(H, W):
            continue  # a speck cut by the frame: too little of anything to read
        keep.append(i)
    if not keep:
        return []
    # Rules and underlines: flat strokes wider than the tallest upright component. A row of five or more touching
    # digits is as flat, and alone it has no upright component to compare with: it is no rule when its columns
    # hold more than one stroke (a rule's ink spans about its own thickness in every column).
    tall = max((int(stats[i, 3]) for i in keep if stats[i, 3] >= 0.5 * stats[i, 2]), default=0)
    keep = [i for i in keep if not (stats[i, 2] > 4 * stats[i, 3] and stats[i, 2] > 1.2 * tall
                                    and _crossed_once(labels, i + 1, stats[i]))]
    if not keep:
        return []

    # Merge the broken strokes of one digit: parts stacked vertically (x ranges mostly overlapping), or a
    # small fragment right next to a bigger part, as long as the union still has a digit's shape.
    ref = max(int(stats[i, 3]) for i in keep)
    groups = _Groups(len(keep))
    boxes = {k: stats[i, :4].copy() for k, i in enumerate(keep)}
    order = sorted(range(len(keep)), key=lambda k: boxes[k][0])
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            ba, bb = boxes[a], boxes[b]
            if bb[0] > ba[0] + ba[2] + 0.15 * ref:
                break
            overlap = min(ba[0] + ba[2], bb[0] + bb[2]) - max(ba[0], bb[0])
            x, y, w, h = _union_box(ba, bb)
            stacked = overlap >= 0.6 * min(ba[2], bb[2])
            fragment = min(ba[3], bb[3]) < 0.5 * ref and overlap > -0.1 * ref
            # A 5's flag drawn apart from its body sits at the top and reaches out to the right: the union is
            # wider than a digit (1.3 heights for MNIST training 5s; the rule asks only that the small part sit in
            # the union's top third, so a dash at mid-height stays apart). And the two halves of a digit broken
            # across the middle interlock (their rows overlap too): together taller than the tallest part, which
            # is the line's height when the digit is alone. On 1 000 level and 1 000 tilted scenes of MNIST
            # training digits (photos.py's photo_set, seeds 5 and 6) 985 / 981 -> 988 / 982 read exactly (seed 7:
            # 985, unchanged); 2 000 level training lines of line seeds 0 and 3 1 867 / 1 857 -> 1 869 / 1 856,
            # 300 tilted 267 -> 268; the non-digit pages of seeds 5 and 7 and the development photos unchanged.
            small, big = (ba, bb) if ba[3] < bb[3] else (bb, ba)
            flag = fragment and small[3] < 0.5 * big[3] and small[1] + small[3] / 2 < y + h / 3
            rows_shared = min(ba[1] + ba[3], bb[1] + bb[3]) > max(ba[1], bb[1])
            interlocked = stacked and rows_shared
            digit_shaped = w <= (1.4 if flag else 1.1) * h and (interlocked or h <= 1.15 * ref)
            if digit_shaped and (stacked or fragment):
                groups.union(a, b)
            elif cfg.join_overlap is not None and h <= 1.15 * ref and (stacked or overlap >= cfg.join_overlap * ref) \
                    and rows_shared:
                # Wider than a digit, but one above the other in the same line: a digit broken in two with each
                # part touching a different neighbour (a 5's flag on the next digit, its bowl on the last). Read
                # apart, both blobs read that digit; as one blob it is read once.
                groups.union(a, b)
    members: dict[int, list[int]] = {}
    for k in range(len(keep)):
        members.setdefault(groups.find(k), []).append(k)

    candidates = []
    for ks in members.values():
        x0 = min(int(boxes[k][0]) for k in ks)
        y0 = min(int(boxes[k][1]) for k in ks)
        x1 = max(int(boxes[k][0] + boxes[k][2]) for k in ks)
        y1 = max(int(boxes[k][1] + boxes[k][3]) for k in ks)
        candidates.append(((x0, y0, x1 - x0, y1 - y0), [keep[k] + 1 for k in ks]))
    # A filled shape (a shadow, a thumb, a blot) is not writing, and must not set the line's height below.
    candidates = [c for c in candidates if not _solid(labels, c, cfg.max_stroke)]
    if not candidates:
        return []
    # The line's height comes from candidates wholly inside the picture: something cut by the frame (a
    # shadow's corner, the desk) must not make every real digit look too small to keep.
    inside = [b[3] for b, _ in candidates if b[0] > 0 and b[1] > 0 and b[0] + b[2] < W and b[1] + b[3] < H]
    top = max(inside or [b[3] for b, _ in candidates])
    candidates = [c for c in candidates if c[0][3] >= max(cfg.min_height_px, cfg.min_height_fraction * top)]
    if len(candidates) > cfg.max_digits:
        return []
    candidates = [c for line in _lines(candidates) for c in line]

    segments = []
    for (x, y, w, h), ids in candidates:
        # Pad the box so the soft (blurred) edges of the strokes come along; blank the other components.
        p = max(2, int(0.08 * max(w, h)))
        X0, Y0, X1, Y1 = max(0, x - p), max(0, y - p), min(W, x + w + p), min(H, y + h + p)
        lab = labels[Y0:Y1, X0:X1]
        crop = ink[Y0:Y1, X0:X1].copy()
        mine = np.isin(lab, ids)
        near = cv2.dilate(mine.astype(np.uint8), np.ones((2 * p + 1, 2 * p + 1), np.uint8)).astype(bool)
        crop[~near | ((lab > 0) & ~mine)] = 0
        crop = _clean(crop, threshold, mine)
        segments.append(Segment(box=(x, y, w, h), tile=mnist_normalise(normalise_strokes(crop)), crop=crop,
                                origin=(X0, Y0)))
    return segments


def _cut_stroke(labels: np.ndarray, label: int, stat: np.ndarray) -> bool:
    """Whether a big component touching one edge of the picture meets it over a pen stroke's width only: a
    digit whose tail the frame cuts (the stem of a 9 in a tight crop), not a page edge, desk or shadow, which
    meet the frame along a long stretch. (Filled shapes that pass are dropped later as blobs.)"""
    x, y, w, h = (int(v) for v in stat[:4])
    H, W = labels.shape
    edges = ([labels[y:y + h, 0]] if x == 0 else []) + ([labels[y:y + h, W - 1]] if x + w == W else []) + \
        ([labels[0, x:x + w]] if y == 0 else []) + ([labels[H - 1, x:x + w]] if y + h == H else [])
    side = W if y == 0 or y + h == H else H
    return bool(edges) and int(np.count_nonzero(edges[0] == label)) <= 0.1 * side


def _crossed_once(labels: np.ndarray, label: int, stat: np.ndarray) -> bool:
    """Whether a flat component is a line: at most a fifth of its columns cross its ink more than once, where a
    row of digits is crossed twice or more wherever a loop or a second stroke is (a 0, an 8, a 7's bar over its
    leg)."""
    x, y, w, h = (int(v) for v in stat[:4])
    mine = (labels[y:y + h, x:x + w] == label).astype(np.int8)
    starts = np.count_nonzero(np.diff(mine, axis=0, prepend=0) == 1, axis=0)  # runs of ink down each column
    inked = starts > 0
    return not inked.any() or float(np.mean(starts[inked] >= 2)) <= 0.2


def components(binary: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components with stats, as ``cv2.connectedComponentsWithStats`` gives them, by the BBDT
    algorithm: the same labels and stats (checked on 372 camera frames and real photos, OpenCV 5.0), but
    0.5 ms instead of 1.75 ms on a 640x480 frame on one core, the camera's largest single cost after the
    ink map."""
    return cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, cv2.CV_32S, cv2.CCL_BBDT)


def _lines(candidates: list) -> list[list]:
    """Group candidates into text lines (a box joins a line its vertical centre falls inside), lines top to
    bottom, each left to right. One line is the supported layout; this keeps two lines from interleaving."""
    lines: list[list] = []
    for c in sorted(candidates, key=lambda c: c[0][1] + c[0][3] / 2):
        centre = c[0][1] + c[0][3] / 2
        for line in lines:
            top = min(b[1] for b, _ in line)
            bottom = max(b[1] + b[3] for b, _ in line)
            if top <= centre <= bottom:
                line.append(c)
                break
        else:
            lines.append([c])
    lines.sort(key=lambda line: min(b[1] for b, _ in line))
    return [sorted(line, key=lambda c: c[0][0] + c[0][2] / 2) for line in lines]


def _clean(crop: np.ndarray, threshold: int, mine: np.ndarray) -> np.ndarray:
    """Zero the paper around the strokes and stretch the ink so the stroke cores are saturated, like
    MNIST's (whose pen strokes are 255 in the middle and anti-aliased at the edges)."""
    floor = 0.35 * threshold
    strokes = crop[mine]
    peak = float(np.percentile(strokes, 90)) if strokes.size else 255.0
    scale = 255.0 / max(peak - floor, 1.0)
    out = (crop.astype(np.float32) - floor) * scale
    return np.clip(out, 0, 255).astype(np.uint8)


def _solid(labels: np.ndarray, candidate: tuple, max_stroke: float) -> bool:
    """Whether a candidate's widest stroke (twice its largest inscribed radius) exceeds ``max_stroke`` of its
    box's longer side: the same rule as :func:`digitkit.runtime.preprocess.stroke_width` on the tile."""
    (x, y, w, h), ids = candidate
    mask = np.isin(labels[y:y + h, x:x + w], ids).astype(np.uint8)
    # Padded by one pixel so a shape cut by the crop's edge is measured as if the paper went on.
    radius = float(cv2.distanceTransform(cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0),
                                         cv2.DIST_L2, 3).max())
    return 2.0 * radius > max_stroke * max(w, h)
