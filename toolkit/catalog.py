"""The registered architectures' figures as a static table, so ``digitkit models`` answers without TensorFlow.

``tests/toolkit/test_catalog.py`` builds every architecture and holds this table equal to
:func:`digitkit.toolkit.models.describe`; change an architecture and that test says which row to update.
"""

from __future__ import annotations

from digitkit.toolkit.models import ARCHITECTURES, ArchInfo

# name -> (parameters, MACs), as describe(name) measures them.
FIGURES: dict[str, tuple[int, int]] = {
    "seed": (242_062, 3_363_072),
    "seed-bn": (242_602, 3_363_072),
    "vgg": (468_778, 18_691_840),
    "strided": (326_826, 15_162_752),
    "strided-pair": (653_652, 30_325_504),
    "tiny": (9_098, 290_080),
}


def catalog() -> list[ArchInfo]:
    """Every registered architecture with its description, parameter count and MACs (no TensorFlow).

    An architecture registered in ``models.ARCHITECTURES`` but missing here shows -1 (the test fails on it).
    """
    return [ArchInfo(name, ARCHITECTURES[name][1], *FIGURES.get(name, (-1, -1))) for name in ARCHITECTURES]
