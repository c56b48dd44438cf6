"""Raw setting values (TOML, environment strings, flags) → typed, frozen settings dataclasses,
by their annotations: bool, int, float, str, Path, StrEnum choices, tuples and ``X | None``.
Knows nothing of the gateway's settings; ``gateway/config.py`` says what they are."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting that is missing, misspelt, of the wrong type or out of range; the message names
    where it came from (file, environment, command line) and the key."""


def shown(value: object) -> str:
    """A value as the operator wrote it in TOML: strings in double quotes, lists in brackets."""
    if isinstance(value, list | tuple):
        return f"[{', '.join(shown(item) for item in value)}]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML / env value into the annotated type, or say which setting is wrong."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is types.UnionType or origin is typing.Union:
        if value is None:
            return None
        return coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is tuple:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {shown(value)}")
        return tuple(coerce(item, args[0], where) for item in value)
    if isinstance(annotation, type) and issubclass(annotation, enum.StrEnum):
        return _choice(value, annotation, where)
    try:
        if annotation is bool:
            return _bool(value)
        if annotation is Path:
            return Path(value)
        if annotation in (int, float, str):
            if annotation is not str and isinstance(value, bool):
                raise ValueError(value)
            if annotation is int and isinstance(value, float):
                raise ValueError(value)
            return annotation(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {shown(value)}") from None
    raise ConfigError(f"{where}: unsupported setting type {annotation}")


def _choice(value: Any, choices: type[enum.StrEnum], where: str) -> enum.StrEnum:
    # The enum's own _missing_ reads other spellings (e.g. Layout's lower case).
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(member.value for member in choices)
        raise ConfigError(f"{where}: {shown(value)} is not one of {allowed}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise ValueError(value)
    return value


def build(cls: type[T], values: Mapping[str, Any], where: Callable[[str], str]) -> T:
    """A ``cls`` dataclass from ``values``; ``where(key)`` names a key's place in messages."""
    hints = typing.get_type_hints(cls)  # a dataclass: every annotated name is a field
    known = set(hints)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where(unknown[0])}: unknown setting (known: {', '.join(sorted(known))})"
        )
    return cls(**{k: coerce(v, hints[k], where(k)) for k, v in values.items()})
