"""Lazy package exports (PEP 562): a package names what it exports and where each name lives, and
the defining module is imported on first access, so `import cooper_lib` stays cheap.

Each package also imports the same names under `typing.TYPE_CHECKING`, so type checkers, IDEs and
the import-layer contract see exactly the imports they saw when they were eager.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str | None], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package` whose public names are resolved on first access.

    Args:
        package: the package's `__name__`.
        exports: public name -> module defining it; ``None`` for a submodule of `package` of that name.
        namespace: the package's `globals()`; a resolved name is cached there.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = exports[name]
        value = (
            importlib.import_module(f"{package}.{name}")
            if where is None
            else getattr(importlib.import_module(where), name)
        )
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
