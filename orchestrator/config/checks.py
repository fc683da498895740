"""Checks on a config's raw values (YAML + overrides) before pydantic reads them.

pydantic in its lax mode reads `true` as 1 for an int field (`rollout.n=true` would sample one
completion per prompt) and passes `.inf`/`.nan` through free-form mappings (algorithm options,
`rollout.vllm`, reward options) that no field type covers. So, walking the data beside the schema:
a boolean where the schema wants a number, and a non-finite number anywhere, is a one-line error
naming the key.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel


def _options(annotation: Any) -> list[Any]:
    """The alternatives of a union (`int | None` -> [int, NoneType]); a plain type alone."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [alt for arg in typing.get_args(annotation) for alt in _options(arg)]
    if origin is typing.Annotated:
        return _options(typing.get_args(annotation)[0])
    return [annotation]


def _wants_number_not_bool(annotation: Any) -> bool:
    alts = _options(annotation)
    if bool in alts or Any in alts:
        return False
    for alt in alts:
        if alt in (int, float):
            return True
        if typing.get_origin(alt) is Literal and any(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in typing.get_args(alt)):
            return True
    return False


def _children(annotation: Any, value: Any) -> list[tuple[str, Any, Any]]:
    """(key, child annotation, child value) of a mapping or list, typed where the schema says."""
    alts = _options(annotation)
    if isinstance(value, dict):
        model = next((a for a in alts if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is not None:
            return [(str(k), model.model_fields[k].annotation if k in model.model_fields else Any, v)
                    for k, v in value.items()]
        mapping = next((a for a in alts if typing.get_origin(a) is dict), None)
        inner = typing.get_args(mapping)[1] if mapping is not None and typing.get_args(mapping) else Any
        return [(str(k), inner, v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        seq = next((a for a in alts if typing.get_origin(a) in (list, tuple)), None)
        args = typing.get_args(seq) if seq is not None else ()
        inner = args[0] if args and args[-1] is not Ellipsis and len(args) == 1 else Any
        if seq is not None and typing.get_origin(seq) is tuple and args and Ellipsis not in args:
            return [(f"{i}", args[i] if i < len(args) else Any, v) for i, v in enumerate(value)]
        return [(f"{i}", inner, v) for i, v in enumerate(value)]
    return []


def raw_problem(model: type[BaseModel], data: Any) -> str | None:
    """`key.path: what is wrong` for the first bad raw value of `data` read as `model`, or None."""
    stack: list[tuple[str, Any, Any]] = [("", model, data)]
    while stack:
        path, annotation, value = stack.pop(0)
        if isinstance(value, bool):
            if _wants_number_not_bool(annotation):
                return f"{path}: expected a number, got the boolean {str(value).lower()}"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{path}: must be a finite number, got {value}"
        for key, child_annotation, child in _children(annotation, value):
            stack.append((f"{path}.{key}" if path else key, child_annotation, child))
    return None
