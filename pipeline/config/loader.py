"""Loading the configuration: built-in defaults < TOML file < environment < command line.

* TOML: top-level ``prefix`` and tables ``[broker]``, ``[edge]``, ``[worker]``.
* Environment: ``CAMOFFLOAD_PREFIX``, ``CAMOFFLOAD_<SECTION>_<KEY>``
  (e.g. ``CAMOFFLOAD_EDGE_DEADLINE_MS=500``).
* Command line: ``--set section.key=value`` (and shortcuts such as ``--broker URL``).

The layers merge into one plain mapping that msgspec converts into :class:`Config` in
lax mode, so the strings of the environment and the command line become the declared
ints, floats and bools ("500" -> 500); a value of the wrong kind or outside its declared
range comes back as a :class:`ConfigError` naming the dotted key and where it was set.
msgspec ignores keys a dataclass does not have, so unknown keys are refused here, before
it runs. The broker password is read only from ``CAMOFFLOAD_BROKER_PASSWORD``; a
password in a file or on the command line is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from pipeline.config.broker import PASSWORD_ENV
from pipeline.config.constraints import setting_error
from pipeline.config.sections import Config
from pipeline.errors import ConfigError

__all__ = ["ENV_PREFIX", "load_config"]

ENV_PREFIX = "CAMOFFLOAD_"
_NOT_SETTINGS = frozenset({PASSWORD_ENV, "CAMOFFLOAD_CONFIG"})

# What people write in an environment file or a shell that msgspec's lax mode does not
# read by itself: yes/no/on/off for a bool (it reads true/false/1/0), and "none" or
# nothing for an optional setting (it reads "null", and only for numbers).
_BOOL_WORDS = {"yes": True, "on": True, "no": False, "off": False}
_NONE_WORDS = frozenset({"", "none"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Setting:
    hint: Any  # the annotation, Annotated ranges included
    info: mi.Type  # msgspec's reading of it


@functools.cache
def _settings() -> dict[str, _Setting]:
    """Every setting by dotted key (``prefix``, ``edge.deadline_ms``, ...)."""
    found: dict[str, _Setting] = {}
    for name, hint in typing.get_type_hints(Config, include_extras=True).items():
        if dataclasses.is_dataclass(hint):
            for key, sub in typing.get_type_hints(hint, include_extras=True).items():
                found[f"{name}.{key}"] = _Setting(sub, mi.type_info(sub))
        else:
            found[name] = _Setting(hint, mi.type_info(hint))
    return found


@functools.cache
def _sections() -> tuple[str, ...]:
    return tuple(dict.fromkeys(key.partition(".")[0] for key in _settings() if "." in key))


def _unknown(dotted: str, origin: str) -> ConfigError:
    section, _, _ = dotted.partition(".")
    if section in _sections():
        known = [k.partition(".")[2] for k in _settings() if k.startswith(f"{section}.")]
        where = f"known in [{section}]: {', '.join(known)}"
    else:
        where = f"sections: {', '.join(_sections())}; and prefix"
    close = difflib.get_close_matches(dotted, list(_settings()), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown setting {dotted!r} from {origin}{hint} ({where})", key=dotted)


class _Layers:
    """The settings given so far by dotted key, later layers winning, and who set each."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.origins: dict[str, str] = {}

    def set(self, dotted: str, value: object, origin: str) -> None:
        if dotted not in _settings():
            raise _unknown(dotted, origin)
        self.values[dotted] = value
        self.origins[dotted] = origin

    def nested(self) -> dict[str, Any]:
        """The mapping msgspec converts: ``{"prefix": ..., "edge": {...}, ...}``."""
        data: dict[str, Any] = {}
        for dotted, value in self.values.items():
            section, dot, key = dotted.partition(".")
            plain = _plain(value, _settings()[dotted].info)
            if dot:
                data.setdefault(section, {})[key] = plain
            else:
                data[dotted] = plain
        return data


def _text_type(t: mi.Type) -> bool:
    return isinstance(t, mi.StrType) or (
        isinstance(t, mi.LiteralType) and all(isinstance(v, str) for v in t.values)
    )


def _plain(value: object, info: mi.Type) -> object:
    """``value`` as msgspec's lax mode reads it: the words above, surrounding space gone
    from a number or a bool, and a TOML number where a string is declared (rate = 30)."""
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    text = any(_text_type(m) for m in members)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value) if text else value
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in _NONE_WORDS and any(isinstance(m, mi.NoneType) for m in members):
        return None
    if text:
        return value
    if word in _BOOL_WORDS and any(isinstance(m, mi.BoolType) for m in members):
        return _BOOL_WORDS[word]
    return value.strip()


def _refused(exc: msgspec.ValidationError, layers: _Layers) -> ConfigError:
    """msgspec's ``Expected `int`, got `str` - at `$.edge.qos``` as our error."""
    detail, sep, where = str(exc).rpartition(" - at `$.")
    dotted = where.rstrip("`")
    if not sep or dotted not in _settings():
        return ConfigError(f"invalid configuration: {exc}", key=dotted if sep else None)
    value = "(hidden)" if dotted == "broker.password" else layers.values.get(dotted)
    error = setting_error(dotted, value, _settings()[dotted].hint, detail)
    origin = layers.origins.get(dotted)
    return error if origin is None else ConfigError(f"{error} (from {origin})", key=dotted)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def load_config(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Build the configuration from defaults, a TOML file, the environment and
    ``section.key=value`` overrides, validating every value and combination."""
    env = os.environ if env is None else env
    layers = _Layers()

    if path is not None:
        origin = f"config file {path}"
        for key, value in _read_toml(Path(path)).items():
            if isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    layers.set(f"{key}.{sub_key}", sub_value, origin)
            else:
                layers.set(key, value, origin)

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if rest == "prefix":
            layers.set("prefix", value, f"environment variable {name}")
        elif section in _sections():  # other CAMOFFLOAD_* variables are not settings
            layers.set(f"{section}.{key}", value, f"environment variable {name}")

    for item in overrides:
        dotted, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        layers.set(dotted.strip(), value, "the command line")

    if "broker.password" in layers.values:
        raise ConfigError(
            f"the broker password is a secret: set {PASSWORD_ENV} or broker.password_file "
            "instead of putting it in a file or on the command line",
            key="broker.password",
        )
    if PASSWORD_ENV in env:
        layers.values["broker.password"] = env[PASSWORD_ENV]

    try:
        return msgspec.convert(layers.nested(), type=Config, strict=False)
    except msgspec.ValidationError as exc:
        raise _refused(exc, layers) from exc
