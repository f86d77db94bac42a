"""The registered architectures' figures as a static table, so ``digitkit models`` answers without TensorFlow.

``tests/toolkit/test_catalog.py`` builds every architecture and holds this table equal to
:func:`digitkit.toolkit.models.describe`; change an architecture and that test says which row to update.
"""

from __future__ import annotations

from digitkit.toolkit.models import ARCHITECTURES, ArchInfo

# name -> (parameters, MACs), as describe(name) measures them (11 outputs: the digits and "not a digit").
FIGURES: dict[str, tuple[int, int]] = {
    "seed": (242_191, 3_363_200),
    "seed-bn": (242_731, 3_363_200),
    "vgg": (468_907, 18_691_968),
    "strided": (326_955, 15_162_880),
    "strided-pair": (653_910, 30_325_760),
    "seed-strided": (569_686, 18_526_080),
    "tiny": (9_883, 290_864),
}


def catalog() -> list[ArchInfo]:
    """Every registered architecture with its description, parameter count and MACs (no TensorFlow).

    An architecture registered in ``models.ARCHITECTURES`` but missing here shows -1 (the test fails on it).
    """
    return [ArchInfo(name, ARCHITECTURES[name][1], *FIGURES.get(name, (-1, -1))) for name in ARCHITECTURES]
