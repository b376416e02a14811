"""Which module implements which storage plugin; an element's `plugin` picks one by name."""

from __future__ import annotations

import importlib

from prodagent.errors import ConfigError
from prodagent.storage.base import ElementSpec, StorageElement

PLUGINS: dict[str, str] = {
    "posix": "prodagent.storage.posix:PosixElement",
    "xrootd": "prodagent.storage.xrootd:XRootDElement",
}


def element_class(name: str) -> type[StorageElement]:
    try:
        module_name, class_name = PLUGINS[name].split(":")
    except KeyError:
        raise ConfigError(f"storage plugin: unknown plugin {name!r}; known: {sorted(PLUGINS)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def open_element(spec: ElementSpec, name: str = "") -> StorageElement:
    """The storage element `spec` describes, ready to use."""
    return element_class(spec.plugin)(spec, name)
