"""Line context: a line of writing whose candidates the model mostly calls "not a digit" is text.

A word is cut into letters, and some letters are digit-shaped (o, l, i, s, g read as 0, 1, 1, 5, 9). Read
one by one, those letters pass; read as a line, they are the minority of a line of non-digits. So, with a
model that has a "not a digit" answer, the candidates are grouped into lines (marks whose heights overlap
by half the shorter one, chained: letters of mixed heights along one line stay one line), and in a line of
at least ``MIN_LINE`` candidates where at least ``TEXT_SHARE`` are rejected, nothing is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_LINE = 2  # a line this long or longer can be judged as a whole
# Before touching digits are split, a line is judged only from this length: one rejected blob beside one digit
# may be two touching digits the splitter will part; after splitting, a pair is judged like any line.
MIN_LINE_BEFORE_SPLIT = 3
TEXT_SHARE = 0.5  # this share of rejected candidates or more makes a line text
LINE_OVERLAP = 0.5  # two marks share a line when their heights overlap by this share of the shorter one


def lines_of(boxes: Sequence[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of ``boxes`` grouped into lines of writing, top line first.

    Two boxes are on one line when their vertical extents overlap by at least ``LINE_OVERLAP`` of the shorter
    one's height, and lines are the chains of such pairs. Marks of mixed heights written along one line (a
    small letter, then a tall one, then one sitting lower) are one line; so is a line that climbs a little.
    """
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (_, yi, _, hi) in enumerate(boxes):
        for j in range(i):
            _, yj, _, hj = boxes[j]
            if min(yi + hi, yj + hj) - max(yi, yj) >= LINE_OVERLAP * min(hi, hj):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda line: min(boxes[i][1] for i in line))


def text_lines(boxes: Sequence[tuple[int, int, int, int]], rejected: Sequence[bool],
               min_line: int = MIN_LINE) -> list[bool]:
    """For each candidate, whether it belongs to a line that is text (mostly rejected, at least ``min_line``
    candidates)."""
    out = [False] * len(boxes)
    for line in lines_of(boxes):
        if len(line) >= min_line and sum(rejected[i] for i in line) >= TEXT_SHARE * len(line):
            for i in line:
                out[i] = True
    return out
