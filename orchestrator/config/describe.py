"""The run config explained: every key with its value, its default and its description (`vrft config
show`), the keys a run changed from the defaults (the few lines `vrft train` prints at start), and
the key a typo meant ("did you mean learner.lr?")."""

from __future__ import annotations

import difflib
import json
import textwrap
import types
import typing

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

_UNSET = object()


def section_model(annotation) -> type[BaseModel] | None:
    """The pydantic model a field holds, directly, optionally, or as list items (None: a plain value)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list):
        for arg in typing.get_args(annotation):
            found = section_model(arg)
            if found is not None:
                return found
    return None


def key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of `model`, sections and leaves (list items without their index)."""
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        sub = section_model(field.annotation)
        if sub is not None:
            out += key_paths(sub, f"{prefix}{name}.")
    return out


def did_you_mean(key: str, model: type[BaseModel]) -> str | None:
    """The known key closest to `key` (difflib's ratio, at least 0.6), else None. Keys of the same
    section first: a typo in the last part mostly means a sibling."""
    known = key_paths(model)
    parent, _, leaf = key.rpartition(".")
    prefix = parent + "." if parent else ""
    siblings = {k[len(prefix):]: k for k in known if k.startswith(prefix) and "." not in k[len(prefix):]}
    match = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if match:
        return siblings[match[0]]
    # A typo in the section's name: the whole key must then be close.
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return match[0] if match else None


def _show(value) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str):
        return value if value else '""'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    # Lists and mappings may hold models (a list of rewards): pydantic makes them plain first.
    return json.dumps(to_jsonable_python(value)) if isinstance(value, (dict, list, tuple)) else str(value)


def _default(field):
    if field.default_factory is not None:
        try:
            return field.default_factory()
        except TypeError:  # a factory that needs the validated data
            return _UNSET
    return _UNSET if field.is_required() else field.default


def describe(cfg: BaseModel, width: int = 100, indent: str = "") -> list[str]:
    """Every field of `cfg`: `key: value` (with `(default X)` where it differs), then its
    description wrapped below; sections recursively, a list of sections item by item."""
    lines = []
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        text = (field.description or "").strip()
        sub = section_model(field.annotation)
        if isinstance(value, BaseModel):
            doc = text or (type(value).__doc__ or "").strip().split("\n\n")[0]
            lines.append(f"{indent}{name}:" + (f"  # {' '.join(doc.split())}" if doc else ""))
            lines += describe(value, width, indent + "  ")
            continue
        if sub is not None and isinstance(value, list) and value:
            lines.append(f"{indent}{name}:" + (f"  # {' '.join(text.split())}" if text else ""))
            for i, item in enumerate(value):
                lines.append(f"{indent}  - [{i}]")
                lines += describe(item, width, indent + "    ")
            continue
        if sub is not None and value is None:  # an optional section left off: its keys, for discovery
            lines.append(f"{indent}{name}: null" + (f"  # {' '.join(text.split())}" if text else ""))
            lines += _section_keys(sub, width, indent + "  ")
            continue
        default = _default(field)
        changed = "" if default is _UNSET or default == value else f"   (default {_show(default)})"
        required = "   (required)" if field.is_required() else ""
        lines.append(f"{indent}{name}: {_show(value)}{changed}{required}")
        if text:
            lines += textwrap.wrap(" ".join(text.split()), width, initial_indent=indent + "    # ",
                                   subsequent_indent=indent + "    # ")
    return lines


def _section_keys(model: type[BaseModel], width: int, indent: str) -> list[str]:
    """The keys a section that is not set would take, each with its default and description."""
    lines = []
    for name, field in model.model_fields.items():
        default = _default(field)
        shown = "(required)" if field.is_required() else f"(default {_show(default)})" if default is not _UNSET else ""
        lines.append(f"{indent}{name}:   {shown}".rstrip())
        text = (field.description or "").strip()
        if text:
            lines += textwrap.wrap(" ".join(text.split()), width, initial_indent=indent + "    # ",
                                   subsequent_indent=indent + "    # ")
    return lines


def changed_from_defaults(cfg: BaseModel, prefix: str = "") -> dict[str, object]:
    """`section.key -> value` of every leaf that differs from its default (required ones included)."""
    out: dict[str, object] = {}
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            out.update(changed_from_defaults(value, f"{prefix}{name}."))
            continue
        default = _default(field)
        if default is _UNSET or default != value:
            out[prefix + name] = value
    return out


def summary_lines(cfg: BaseModel, width: int = 110) -> list[str]:
    """The keys a run changed from the defaults, one line (wrapped) per section."""
    by_section: dict[str, list[str]] = {}
    for key, value in changed_from_defaults(cfg).items():
        section, _, rest = key.partition(".")
        if not rest:
            section, rest = "", key
        by_section.setdefault(section, []).append(f"{rest}={_show(value)}")
    lines = []
    for section, items in by_section.items():
        head = f"  {section}: " if section else "  "
        lines += textwrap.wrap(" ".join(items), width, initial_indent=head,
                               subsequent_indent=" " * len(head), break_long_words=False,
                               break_on_hyphens=False)
    return lines
