"""Line context: a line of writing whose candidates the model mostly calls "not a digit" is text.

A word is cut into letters, and some letters are digit-shaped (o, l, i, s, g read as 0, 1, 1, 5, 9). Read
one by one, those letters pass; read as a line, they are the minority of a line of non-digits. So, with a
model that has a "not a digit" answer, the candidates are grouped into lines (the same rule as the
segmenter's: a box joins a line its vertical centre falls in), and in a line of at least ``MIN_LINE``
candidates where at least ``TEXT_SHARE`` are rejected, nothing is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_LINE = 3  # a line this long or longer can be judged as a whole
TEXT_SHARE = 0.5  # this share of rejected candidates or more makes a line text


def lines_of(boxes: Sequence[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of ``boxes`` grouped into lines of writing (a box joins the first line its centre falls in)."""
    lines: list[list[int]] = []
    spans: list[list[float]] = []
    for i in sorted(range(len(boxes)), key=lambda k: boxes[k][1] + boxes[k][3] / 2):
        x, y, w, h = boxes[i]
        centre = y + h / 2
        for line, span in zip(lines, spans, strict=True):
            if span[0] <= centre <= span[1]:
                line.append(i)
                span[0], span[1] = min(span[0], y), max(span[1], y + h)
                break
        else:
            lines.append([i])
            spans.append([float(y), float(y + h)])
    return lines


def text_lines(boxes: Sequence[tuple[int, int, int, int]], rejected: Sequence[bool]) -> list[bool]:
    """For each candidate, whether it belongs to a line that is text (mostly rejected, long enough)."""
    out = [False] * len(boxes)
    for line in lines_of(boxes):
        if len(line) >= MIN_LINE and sum(rejected[i] for i in line) >= TEXT_SHARE * len(line):
            for i in line:
                out[i] = True
    return out
