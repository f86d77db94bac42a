"""``digitkit models`` prints a static table (no TensorFlow); the table must match what the builders build."""

from __future__ import annotations

from digitkit.toolkit.catalog import FIGURES, catalog
from digitkit.toolkit.models import ARCHITECTURES, describe


def test_the_static_table_matches_every_builder() -> None:
    assert set(FIGURES) == set(ARCHITECTURES), "add the new architecture's figures to toolkit/catalog.py"
    for info in catalog():
        assert info == describe(info.name), f"toolkit/catalog.py FIGURES[{info.name!r}] is stale"
