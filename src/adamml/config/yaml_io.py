"""YAML in and out: presets by name or files by path, `section.key=value` overrides, strict conversion to the
dataclasses (unknown keys, wrong types and bad values are errors naming the file and the key; a syntax error
names its line), the resolved YAML saved next to every result."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from adamml.config.schema import Config
from adamml.errors import UserError, shorten


class ConfigError(UserError, ValueError):
    """A configuration file or override that does not fit the dataclasses."""


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    folder = resources.files("adamml") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


# a number in YAML 1.2 and to people; YAML 1.1 (PyYAML) reads 1e-3 and 1.0e30 as strings (it wants 1.0e-3, 1.0e+30)
_YAML12_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``): a config has no use for them, and nested aliases expand
    into values of any size (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(problem=f"YAML aliases (*{event.anchor}) are not allowed in a config",
                                       problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """A key given twice in one mapping is an error (YAML would keep the last silently)."""
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.MarkedYAMLError(problem=f"key {key!r} given twice (first at line {seen[key].line + 1})",
                                           problem_mark=key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """The value of YAML `text` (safe tags only, no aliases); a syntax error names `source`, line and column."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{source}{where}: {problem}") from None


def _read_source(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The raw mapping and a description of where it came from."""
    text = str(name_or_path)
    is_name = "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))
    if is_name:
        resource = resources.files("adamml") / "configs" / f"{text}.yaml"
        if not resource.is_file():
            raise ConfigError(f"no preset named {text!r}; presets: {', '.join(preset_names())} (or give a YAML path)")
        source, content = f"preset {text!r} ({resource})", resource.read_text(encoding="utf-8")
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            source, content = str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                              f"{error.start}); save the file as UTF-8") from None
        except OSError as error:
            raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    raw = parse_yaml(content, source)
    if raw is None:  # an empty file would silently mean the full paper defaults
        raise ConfigError(f"{source}: the file is empty; give at least `base: PRESET` or the keys to set")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    return raw, source


BASE_KEY = "base"  # a file's preset to start from: a preset name, or a YAML path relative to the file
MAX_BASE_DEPTH = 8


def _resolve_base(raw: dict[str, Any], source: str, name_or_path: str | Path, depth: int = 0) -> dict[str, Any]:
    """`raw` on top of the file its `base:` names (recursively): sections merge key by key, every other value
    (a list, a mapping field such as `train.efficiency_weights`) is replaced whole."""
    if BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{source}: `{BASE_KEY}` must name a preset or a YAML file, got {base!r}")
    if depth >= MAX_BASE_DEPTH:
        raise ConfigError(f"{source}: more than {MAX_BASE_DEPTH} `{BASE_KEY}` files in a chain (a cycle?)")
    target: str | Path = base
    here = Path(str(name_or_path))
    if base.endswith((".yaml", ".yml")) and here.suffix in (".yaml", ".yml") and not Path(base).is_absolute():
        target = here.parent / base
    parent, parent_source = _read_source(target)
    parent = _resolve_base(parent, parent_source, target, depth + 1)
    return _merge(parent, raw, Config, source)


def _merge(base: dict[str, Any], over: dict[str, Any], cls: Any, source: str) -> dict[str, Any]:
    """`over` on top of `base`, following the dataclasses: a section (a nested dataclass) merges key by key."""
    merged = dict(base)
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    for key, value in over.items():
        hint = hints.get(key)
        if (hint is not None and dataclasses.is_dataclass(hint) and isinstance(value, dict)
                and isinstance(merged.get(key), dict)):
            merged[key] = _merge(merged[key], value, hint, source)
        else:
            merged[key] = value  # unknown keys stay, for the error that names them
    return merged


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the nested mapping ``raw`` (the value is parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    key, value_text = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key part")
    # check the path against the dataclasses, for an error that names the override
    cls: Any = Config
    mapping_default: dict[str, Any] | None = None
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names:
            where = ".".join(parts[:i]) or "top level"
            raise ConfigError(f"override {override!r}: unknown key {'.'.join(parts[: i + 1])!r} "
                              f"(keys of {where}: {', '.join(names)})")
        hint = typing.get_type_hints(cls)[part]
        if i < len(parts) - 1 and typing.get_origin(hint) is dict and i == len(parts) - 2:
            # a key inside a mapping field (train.efficiency_weights.rgb=0.5): start from the default mapping
            mapping_default = dict(_default(cls, part))
            break
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(hint):
                raise ConfigError(f"override {override!r}: {'.'.join(parts[: i + 1])!r} has no sub-keys")
            cls = hint
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            is_mapping_field = mapping_default is not None and i == len(parts) - 2
            child = node[part] = dict(mapping_default) if is_mapping_field else {}
        elif not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a mapping in the loaded file")
        node = child
    node[parts[-1]] = parse_yaml(value_text, f"override {override!r}")


def _default(cls: type, name: str) -> Any:
    """The default value of field `name` of dataclass `cls`."""
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _convert(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check and convert one YAML value to the annotated type."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping, got {shorten(value)}")
        return _from_dict(hint, value, key, source)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{source}: bad value for {key!r}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{source}: {key!r} must be one of {list(allowed)}, got {shorten(value)}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping, got {shorten(value)}")
        key_type, value_type = typing.get_args(hint)
        return {_convert(k, key_type, f"{key} key", source): _convert(v, value_type, f"{key}.{k}", source)
                for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key!r} must be a list, got {shorten(value)}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key!r} must be true or false, got {shorten(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key!r} must be an integer, got {shorten(value)}")
        return value
    if hint is float:
        if isinstance(value, str) and _YAML12_NUMBER.match(value.strip()):
            value = float(value)  # 1e-3 and 1.0e30: numbers in YAML 1.2, strings to PyYAML's YAML 1.1
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key!r} must be a number, got {shorten(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key!r} must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key!r} must be a string, got {shorten(value)}")
        return value
    raise ConfigError(f"{source}: unsupported type {hint!r} for {key!r}")  # a bug in the dataclasses


def _from_dict(cls: type, raw: dict[str, Any], prefix: str, source: str) -> Any:
    """Build dataclass ``cls`` from ``raw``; unknown keys are errors naming the key and the source."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{source}: unknown key {shorten(full)} (allowed here: {', '.join(names)})")
        kwargs[key] = _convert(value, hints[key], full, source)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        where = f" (in {prefix})" if prefix and prefix not in str(error) else ""
        raise ConfigError(f"{source}: {error}{where}") from None


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """A ``Config`` from a nested mapping (as read from YAML)."""
    return _from_dict(Config, raw, "", source)


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a preset (bare name) or a YAML file, apply ``key.sub=value`` overrides, validate."""
    raw, source = _read_source(name_or_path)
    raw = _resolve_base(raw, source, name_or_path)
    for override in overrides:
        _apply_override(raw, override)
    if overrides:
        source += f" with overrides {list(overrides)}"
    return config_from_dict(raw, source)


# ---------------------------------------------------------------------------------------------- YAML out


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested mapping of a config dataclass (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def config_changes(old: Config, new: Config) -> list[str]:
    """Every key whose value differs between two configurations, as ``key: OLD -> NEW`` (dotted keys, in the
    order of the fields; a key present in one mapping only, such as a selection rate, shows ``-`` on the other
    side)."""
    missing = object()

    def flat(value: Any, prefix: str, into: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, dict):
            for key, item in value.items():
                flat(item, f"{prefix}.{key}" if prefix else str(key), into)
        else:
            into[prefix] = value
        return into

    before, after = flat(config_to_dict(old), "", {}), flat(config_to_dict(new), "", {})
    keys = list(before) + [k for k in after if k not in before]
    changes = []
    for key in keys:
        a, b = before.get(key, missing), after.get(key, missing)
        if a != b:
            changes.append(f"{key}: {'-' if a is missing else shorten(a)} -> {'-' if b is missing else shorten(b)}")
    return changes


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved configuration (every key, defaults included) as YAML; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    return path
