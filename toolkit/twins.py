"""Make ``digitkit.toolkit.train(...)``, ``.evaluate(...)`` and ``.convert(...)`` hold after any import order.

Each twin's name is also the name of the submodule that implements it, and importing a submodule sets the
package attribute of that name to the module (Python's import system does it, whoever imports it). So the
attribute IS the module, always, and the module is made callable: calling it calls the function of the same
name. ``import digitkit.toolkit.train as m`` still gives the module; ``digitkit.toolkit.train(...)`` trains.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class TwinModule(types.ModuleType):
    """A module that, called, calls its function of the same name (``train.train``, ``convert.convert``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Turn the (already imported) module ``module_name`` into a :class:`TwinModule`."""
    sys.modules[module_name].__class__ = TwinModule
