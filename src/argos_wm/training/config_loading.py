"""Training configs from a YAML file plus `--key value` command-line overrides, checked against a dataclass.

    accelerate launch examples/train_world_model.py --config examples/configs/pusht_tiny.yaml --max_train_steps 500

Values given on the command line are parsed as YAML (`--learning_rate 3e-4`, `--datasets "[{root: data}]"`), a flag
without a value is `True` (`--push_to_hub`), and a dotted key sets one entry of a dict field
(`--scheduler.bootstrap_fraction 0.5`). Unknown keys and values of the wrong type raise a `ValueError` naming them.
`--help` (or `-h`) prints every key with its type and default, and exits.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import types
import typing
from typing import Any, TypeVar

import yaml


ConfigT = TypeVar("ConfigT")


def parse_overrides(arguments: list[str]) -> dict[str, Any]:
    """`["--a", "1", "--b.c=x", "--flag"]` -> `{"a": 1, "b.c": "x", "flag": True}` (values parsed as YAML)."""
    values, position = {}, 0
    while position < len(arguments):
        flag = arguments[position]
        if not flag.startswith("--") or len(flag) == 2:
            raise ValueError(f"overrides must be `--key value` pairs, got {flag!r} in {arguments}.")
        key, has_value, value = flag[2:].partition("=")
        position += 1
        if not has_value:
            if position < len(arguments) and not arguments[position].startswith("--"):
                value, position = arguments[position], position + 1
            else:
                value = "true"
        values[key] = yaml.safe_load(value) if value != "" else None
    return values


def _allowed_types(annotation: Any) -> tuple[type, ...]:
    """The runtime types a field annotation (`int`, `float | None`, `list[dict]`...) accepts."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _allowed_types(arg))
    if annotation is None or annotation is type(None):
        return (type(None),)
    if annotation is typing.Any:
        return (object,)
    return (origin or annotation,)


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """`value` as the field type wants it (an int where a float is expected becomes a float), or a ValueError."""
    allowed = _allowed_types(annotation)
    if float in allowed and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in allowed and object not in allowed:
        raise ValueError(f"config key {name!r} expects {annotation}, got {value!r}.")
    if not isinstance(value, allowed):
        raise ValueError(f"config key {name!r} expects {annotation}, got {value!r} ({type(value).__name__}).")
    return value


def build_config(config_class: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Instantiates the dataclass `config_class` from `values`, rejecting unknown keys and wrong types."""
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    values = dict(values)
    for key in [key for key in values if "." in key]:
        parent, _, child = key.partition(".")
        if parent not in fields or dict not in _allowed_types(hints[parent]):
            raise ValueError(
                f"unknown config key {key!r}: dotted keys set an entry of a dict field; dict fields are "
                f"{sorted(name for name in fields if dict in _allowed_types(hints[name]))}."
            )
        base = values.get(parent)
        if base is None:
            default = fields[parent]
            base = default.default_factory() if default.default_factory is not dataclasses.MISSING else {}
        values[parent] = {**base, child: values.pop(key)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; {config_class.__name__} takes {sorted(fields)}.")
    coerced = {key: _coerce(key, value, hints[key]) for key, value in values.items()}
    return config_class(**coerced)


def _field_comments(config_class: type) -> dict[str, str]:
    """The `# comment` after each field of a dataclass's source (`name: int = 3  # what it is`), when it has one."""
    try:
        lines = inspect.getsource(config_class).splitlines()
    except (OSError, TypeError):
        return {}
    comments = {}
    for line in lines:
        name, _, rest = line.strip().partition(":")
        if name.isidentifier() and "  # " in rest:
            comments[name] = rest.split("  # ", 1)[1].strip()
    return comments


def config_help(config_class: type, program: str) -> str:
    """The `--help` text: usage, the config class's docstring, and every key with its type and default."""
    hints = typing.get_type_hints(config_class)
    comments = _field_comments(config_class)
    lines = [f"usage: {program} [--config FILE.yaml] [--key value ...]", ""]
    if config_class.__doc__:
        lines += [inspect.cleandoc(config_class.__doc__), ""]
    lines.append("options (values are parsed as YAML; --key.entry value sets one entry of a dict):")
    lines.append("  --config FILE.yaml: a YAML file of keys; --key value flags override it")
    for field in dataclasses.fields(config_class):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = "required"
        annotation = hints[field.name]
        kind = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
        comment = f"  # {comments[field.name]}" if field.name in comments else ""
        lines.append(f"  --{field.name} ({kind}, default {default!r}){comment}")
    return "\n".join(lines)


def load_config(config_class: type[ConfigT], argv: list[str] | None = None) -> ConfigT:
    """
    Reads `--config FILE.yaml` (optional) and `--key value` overrides from `argv` into `config_class`.

    Args:
        config_class: a dataclass whose fields are the settings.
        argv: command-line arguments without the program name; None reads `sys.argv[1:]`.

    Returns:
        The config instance; its `__post_init__` may check values further.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(config_help(config_class, os.path.basename(sys.argv[0]) or config_class.__name__))
        raise SystemExit(0)
    overrides = parse_overrides(argv)
    path = overrides.pop("config", None)
    values = {}
    if path is not None:
        if not isinstance(path, str) or not os.path.isfile(path):
            raise FileNotFoundError(f"--config must be an existing YAML file, got {path!r}.")
        with open(path, encoding="utf-8") as file:
            values = yaml.safe_load(file) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} must hold a mapping of config keys, got {type(values).__name__}.")
    return build_config(config_class, {**values, **overrides})


__all__ = ["build_config", "config_help", "load_config", "parse_overrides"]
