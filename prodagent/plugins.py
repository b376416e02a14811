"""Loading a plugin class named in the configuration from a {name: "module:Class"} table."""

from __future__ import annotations

import importlib
from typing import Any

from prodagent.errors import ConfigError


def load_class(table: dict[str, str], name: str, where: str) -> Any:
    """The class `table` maps `name` to; ConfigError naming `where` and the known names if none."""
    try:
        module_name, class_name = table[name].split(":")
    except KeyError:
        raise ConfigError(f"{where}: unknown plugin {name!r}; known: {sorted(table)}") from None
    return getattr(importlib.import_module(module_name), class_name)
