"""Named extensions: a registered name (an entry point of a group such as ``fedpop.tasks``,
``fedpop.algorithms``, ``fedpop.aggregators``, ``fedpop.studies``, or a name registered in
this process) or an import path ``package.module:attr``.  Built-ins register the same way
a user's package does (pyproject.toml's entry points), so no component lists names in code.
"""
from __future__ import annotations

import functools
import importlib


class RegistryError(ValueError):
    """A name or import path that does not resolve; the message says what is allowed."""


_LOCAL: dict[str, dict[str, object]] = {}  # group -> name -> object, registered in this process


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def register(group: str, name: str, obj) -> None:
    _LOCAL.setdefault(group, {})[name] = obj


def names(group: str) -> list[str]:
    return sorted(set(_LOCAL.get(group, {})) | set(_entry_points(group)))


def import_path(spec: str, what: str = "object"):
    """The attribute ``attr`` (dotted) of module ``module`` for ``"module:attr"``."""
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise RegistryError(f"{what} {spec!r}: cannot import module {module_name!r} ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RegistryError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def lookup(group: str, spec: str, what: str = "object"):
    """The object a registered name or an import path names in ``group``."""
    if not isinstance(spec, str) or not spec:
        raise RegistryError(f"a {what} is a registered name or 'module:attr', not {spec!r}")
    if ":" in spec:
        return import_path(spec, what)
    if spec in _LOCAL.get(group, {}):
        return _LOCAL[group][spec]
    ep = _entry_points(group).get(spec)
    if ep is None:
        raise RegistryError(f"{spec!r} is not a registered {what} (allowed: {', '.join(names(group))}, "
                            f"or an import path 'package.module:attr')")
    return ep.load()


def path_of(obj) -> str:
    """The import path that names a class or function (``module:QualName``)."""
    return f"{obj.__module__}:{obj.__qualname__}"
