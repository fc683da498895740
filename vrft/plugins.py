"""A user's own function named in a config as ``"package.module:function"``: the one loader the
reward registry (verifiers) and the image tools (rollout) share, below both. Imports nothing of vrft.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def one_line(text: object, limit: int = 300) -> str:
    """A message collapsed to one bounded line (error messages end up in logs and metrics)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def load_callable(spec: str, what: str) -> Callable[..., Any]:
    """The callable `spec` names (``package.module:function``, the attribute may be dotted).

    `what` names it in errors ("reward 'x'", "tool 'y'"); every failure is a one-line ValueError, an
    import-time exception of the user's module included, since it is a config error to them.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{what}: a user's own function is named 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import-time failure is the config's error
        raise ValueError(f"{what}: cannot import {module_name!r}: {one_line(repr(e))}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what}: module {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{what}: {attr!r} is not callable")
    return obj
