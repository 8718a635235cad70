"""Turning a parsed TOML table into typed, frozen settings dataclasses.

The settings model (`network.settings.model`) is a tree of dataclasses; this module walks it
against the TOML data and fails on the first unknown key, wrong type or missing
required key with a `ConfigError` that names the key path (``feeds[2].kind``) and
what was expected. Kept apart from the model so the model reads as documentation.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from datetime import timedelta
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from network.errors import ConfigError

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


class Duration(timedelta):
    """A length of time written as ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` or seconds."""


def _bounded(path: str, value: object, **parts: float) -> Duration:
    # timedelta raises OverflowError past ~2.7 million years (and for inf).
    try:
        return Duration(**parts)
    except OverflowError:
        raise ConfigError(f"duration {value!r} is too long", path=path) from None


def parse_duration(value: object, path: str) -> Duration:
    if isinstance(value, bool):
        raise ConfigError(f'expected a duration like "15m", got {value!r}', path=path)
    if isinstance(value, int | float):
        if value != value or value < 0:  # NaN compares unequal to itself
            raise ConfigError(f"expected a positive duration, got {value!r}", path=path)
        return _bounded(path, value, seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m and any(m.groups()):
            d, h, mi, s = (int(g) if g else 0 for g in m.groups())
            return _bounded(path, value, days=d, hours=h, minutes=mi, seconds=s)
    raise ConfigError(
        f'expected a duration like "90s", "15m", "1h30m" or "2d", got {value!r}', path=path
    )


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is Duration:
        return 'a duration like "15m"'
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        inner = get_args(tp)[0]
        names = {str: "strings", int: "integers", float: "numbers"}
        if dataclasses.is_dataclass(inner):
            return "a list of tables"
        return "a list of " + names.get(inner, _describe(inner))
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def convert(tp: Any, value: object, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return the typed value."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return convert(args[0], value, path)
    if tp is Any:
        return value
    if tp is Duration:
        return parse_duration(value, path)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"expected {_describe(tp)}, got {value!r}", path=path)
        return value
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    elif origin is tuple:
        if isinstance(value, list):
            (item_tp, *_) = get_args(tp)
            return tuple(convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    elif origin is dict:
        if isinstance(value, dict):
            _, val_tp = get_args(tp)
            return {str(k): convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return build(typing.cast(type[Any], tp), value, path)
    else:  # pragma: no cover - a model bug, not a user error
        raise TypeError(f"unsupported settings type {tp!r} at {path}")
    raise ConfigError(f"expected {_describe(tp)}, got {_type_name(value)} {value!r}", path=path)


def build(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``; unknown and missing keys are errors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        field = fields.get(key.replace("-", "_"))
        if field is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key (expected one of: {known})", path=sub)
        kwargs[field.name] = convert(hints[field.name], value, sub)
    for name, field in fields.items():
        if field.name in kwargs:
            continue
        no_default = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        if no_default:
            sub = f"{path}.{name}" if path else name
            raise ConfigError(
                f"missing required key, expected {_describe(hints[field.name])}", path=sub
            )
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(path)
    return obj
