"""The reward registry: built-in rewards by name, user rewards as ``"package.module:function"``.

A reward is ``fn(completion: str, ground_truth: dict, **options) -> float``. ``get_reward(name,
**options)`` validates the options (names and values) and returns ``fn`` with them bound, so a bad
config fails with a one-line ``ValueError`` naming the reward before any actor starts.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vrft.plugins import load_callable, one_line  # noqa: F401 (one_line: re-exported, rewards use it)

RewardFn = Callable[[str, dict], float]
Validator = Callable[[Any], Any]


class RewardValueError(ValueError):
    """A user reward returned something that is not a finite real number."""


@dataclass(frozen=True)
class RewardInfo:
    """What the registry knows about one built-in reward."""

    name: str
    fn: Callable[..., float]
    low: float
    high: float
    options: dict[str, Validator] = field(default_factory=dict)
    warmup: Callable[[], None] | None = None  # run once in a fresh scoring process, off the clock
    check: Callable[[dict[str, Any]], None] | None = None  # cross-option validation (all options)


_REGISTRY: dict[str, RewardInfo] = {}
_BUILTIN_MODULES = (
    "vrft.verifiers.rewards_text",
    "vrft.verifiers.rewards_detection",
    "vrft.verifiers.rewards_grounding",
    "vrft.verifiers.rewards_spatial",
    "vrft.verifiers.math_reward",
    "vrft.verifiers.rewards_tools",
)
RESERVED_KEYS = frozenset({"total"})


def register(
    name: str,
    low: float,
    high: float,
    options: dict[str, Validator] | None = None,
    warmup: Callable[[], None] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator registering a built-in reward with its documented range and option validators."""

    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"reward {name!r} is registered twice")
        if name in RESERVED_KEYS or ":" in name or "#" in name:
            raise ValueError(f"reward name {name!r} is reserved")
        _REGISTRY[name] = RewardInfo(name, fn, float(low), float(high), dict(options or {}), warmup, check)
        return fn

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def list_rewards() -> list[str]:
    """Names of the built-in rewards, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def reward_info(name: str) -> RewardInfo:
    """Registry entry of a built-in reward (its range, options, warm-up)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


# ---- option validators ---------------------------------------------------------------------------


def one_of(*allowed: Any) -> Validator:
    def check(v: Any) -> Any:
        if v not in allowed:
            raise ValueError(f"must be one of {list(allowed)}, got {v!r}")
        return v

    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def positive_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"must be a positive number, got {v!r}")
    return float(v)


def unit_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (0.0 <= v <= 1.0):
        raise ValueError(f"must be a number in [0, 1], got {v!r}")
    return float(v)


def str_list_or_none(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, Sequence) or not all(isinstance(x, str) for x in v):
        raise ValueError("must be a list of strings")
    return tuple(v)


# ---- lookup ---------------------------------------------------------------------------------------


def _checked(fn: Callable[..., Any], name: str) -> Callable[[str, dict], float]:
    """Wrap a user reward so a non-number or non-finite return raises (the composite scores it 0 and
    counts it in ``verifier/errors``)."""

    @functools.wraps(fn)
    def run(completion: str, ground_truth: dict) -> float:
        v = fn(completion, ground_truth)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise RewardValueError(f"reward {name!r} returned {type(v).__name__}, not a float")
        v = float(v)
        if not math.isfinite(v):
            raise RewardValueError(f"reward {name!r} returned {v}")
        return v

    return run


def _load_user(name: str, options: dict[str, Any]) -> Callable[[str, dict], float]:
    obj = load_callable(name, f"reward {name!r}")
    try:
        inspect.signature(obj).bind("", {}, **options)
    except TypeError as e:
        raise ValueError(
            f"reward {name!r}: must accept (completion, ground_truth{''.join(', ' + k for k in options)}): "
            f"{one_line(e)}"
        ) from None
    except ValueError:  # builtins without a signature: accept, the call itself will tell
        pass
    fn = functools.partial(obj, **options) if options else obj
    return _checked(fn, name)


def bind_options(info: RewardInfo, options: dict[str, Any]) -> dict[str, Any]:
    """Validate option names and values of a built-in reward; return the normalized options."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        check = info.options.get(key)
        if check is None:
            known = ", ".join(sorted(info.options)) or "none"
            raise ValueError(f"reward {info.name!r}: unknown option {key!r} (options: {known})")
        try:
            out[key] = check(value)
        except ValueError as e:
            raise ValueError(f"reward {info.name!r}: option {key!r} {one_line(e)}") from None
    if info.check is not None:
        defaults = {
            p.name: p.default
            for p in inspect.signature(info.fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        }
        try:
            info.check({**defaults, **out})
        except ValueError as e:
            raise ValueError(f"reward {info.name!r}: {one_line(e)}") from None
    return out


def get_reward(name: str, **options: Any) -> RewardFn:
    """The reward called ``name`` with ``options`` bound: ``fn(completion, ground_truth) -> float``.

    ``name`` is a built-in (see ``list_rewards()``) or ``"package.module:function"``; a user reward is
    imported, its signature checked against ``(completion, ground_truth, **options)``, and wrapped so
    that a non-finite or non-numeric return raises ``RewardValueError``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"reward name must be a non-empty string, got {name!r}")
    if ":" in name:
        return _load_user(name, options)
    info = reward_info(name)
    bound = bind_options(info, options)
    return functools.partial(info.fn, **bound) if bound else info.fn


def warmup_for(names: Sequence[str]) -> list[Callable[[], None]]:
    """Warm-up hooks of the named built-ins (e.g. importing math-verify), deduplicated."""
    _load_builtins()
    seen: list[Callable[[], None]] = []
    for n in names:
        info = _REGISTRY.get(n)
        if info is not None and info.warmup is not None and info.warmup not in seen:
            seen.append(info.warmup)
    return seen
