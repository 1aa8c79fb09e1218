"""Lazy exports: a package's public names, imported on first use (PEP 562).

Every package's `__init__` names its public API in a table, name -> the module that defines it
("module", or "module:attribute" when the name there differs), and hands the table to `exports`:

    from warehouse.lazy import exports

    _EXPORTS = {"Warehouse": "warehouse.store", "sqlalchemy_engine": "warehouse.sa:engine"}
    __getattr__, __dir__, __all__ = exports(__name__, _EXPORTS)
    del exports

Why: importing a package then costs one small module, not DuckDB, polars or torch (`import engine` does
not import torch; `cli.py run` does not pay for Altair). The first `pkg.Name` imports the defining module.

The rule the tables keep: no exported name is also a submodule's name, unless it exports that very
submodule ("charts": "analysis.charts"). Importing a submodule sets the package attribute of its name,
which would then shadow the export without `__getattr__` ever being asked.

This module lives in the bottom layer (warehouse) and imports only the standard library, so every
layer can use it and importing it stays cheap.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str,
    table: Mapping[str, str],
    *,
    cache: bool = True,
    sort: bool = False,
    dir_lists_all_only: bool = False,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The module-level `__getattr__`, `__dir__` and `__all__` of `package`, whose public names are `table`.

    `table` maps each name to "module" (the name is an attribute of that module, or that module itself
    when it is `package`.name) or "module:attribute". Call it from the package's `__init__`, with
    `__name__`: the package must be in `sys.modules` already, as it is while its `__init__` runs.

    cache: store each value in the package's namespace on first use (later lookups bypass `__getattr__`).
    sort: `__all__` in sorted order (otherwise the table's order).
    dir_lists_all_only: `dir(package)` is `__all__`, sorted (otherwise the namespace and `__all__`).
    """
    namespace = vars(sys.modules[package])
    names = sorted(table) if sort else list(table)

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        if not attribute and module_name == f"{package}.{name}":
            value: Any = module  # the export is the submodule itself
        else:
            value = getattr(module, attribute or name)
        if cache:
            namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(names) if dir_lists_all_only else sorted({*namespace, *names})

    return __getattr__, __dir__, names
