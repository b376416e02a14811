"""Which module implements which storage plugin; an element's `plugin` picks one by name."""

from __future__ import annotations

from prodagent.plugins import load_class
from prodagent.storage.base import ElementSpec, StorageElement

PLUGINS: dict[str, str] = {
    "posix": "prodagent.storage.posix:PosixElement",
    "xrootd": "prodagent.storage.xrootd:XRootDElement",
}


def element_class(name: str) -> type[StorageElement]:
    return load_class(PLUGINS, name, "storage plugin")


def open_element(spec: ElementSpec, name: str = "") -> StorageElement:
    """The storage element `spec` describes, ready to use."""
    return element_class(spec.plugin)(spec, name)
