"""Finding the Strategy subclass to run, in a ``.py`` file or an importable module."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType

from ..errors import SeqtradeError
from .strategy import Strategy

__all__ = ["load_strategy"]


def load_strategy(target: str) -> type[Strategy]:
    """The Strategy subclass in a ``.py`` file or an importable module (exactly one, or one named by ``:``)."""
    name = None
    if ":" in target and not (len(target) > 1 and target[1] == ":"):
        target, name = target.rsplit(":", 1)
    module: ModuleType
    if target.endswith(".py") or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise SeqtradeError(f"strategy file not found: {target}")
        spec = importlib.util.spec_from_file_location(f"seqtrade_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if name is not None:
        cls = getattr(module, name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
            raise SeqtradeError(f"{target} has no Strategy subclass named {name!r}")
        return cls
    found = [
        c for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, Strategy) and c is not Strategy and c.__module__ == module.__name__
    ]  # fmt: skip
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise SeqtradeError(
            f"{target} must define exactly one Strategy subclass (found {names}); name one with file.py:Class"
        )
    return found[0]
