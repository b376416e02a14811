"""Logical file names (LFNs) and the checks that keep them inside a storage element's root.

A catalog LFN is `/store/<relative name>`; the storage element maps the relative name under its
root with its PFN rule. Anything that could leave the root is refused: `..` or `.` components,
empty components, an absolute path outside `/store/`, control characters (NUL among them),
characters outside a small safe set, and over-long names. The request service refuses such names
at submission (`prodrequest.spec`) and every plugin checks again before touching storage.
"""

from __future__ import annotations

import re

NAMESPACE = "/store/"
MAX_LFN_CHARS = 500
MAX_COMPONENT_CHARS = 255
_COMPONENT = re.compile(r"[A-Za-z0-9_+=@-][A-Za-z0-9_.+=@-]*")


class UnsafeName(ValueError):
    """A logical file name that could escape the element's root, or is not a plain name."""


def relative_name(lfn: str) -> str:
    """The element-relative path of `lfn` (`/store/a/b` or `a/b`); raises UnsafeName."""
    if not isinstance(lfn, str) or not lfn:
        raise UnsafeName("a logical file name must be a non-empty string")
    if len(lfn) > MAX_LFN_CHARS:
        raise UnsafeName(f"logical file name longer than {MAX_LFN_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in lfn):
        raise UnsafeName("logical file name holds a control character (NUL, newline, ...)")
    rel = lfn[len(NAMESPACE):] if lfn.startswith(NAMESPACE) else lfn
    if rel.startswith("/"):
        raise UnsafeName(f"absolute name outside {NAMESPACE}: {lfn!r}")
    for part in rel.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeName(f"logical file name has an empty, '.' or '..' component: {lfn!r}")
        if len(part) > MAX_COMPONENT_CHARS:
            raise UnsafeName(f"a component of the name is longer than {MAX_COMPONENT_CHARS} characters")
        if not _COMPONENT.fullmatch(part):
            raise UnsafeName(f"component {part!r} has characters outside [A-Za-z0-9_.+=@-]")
    return rel


_URL = re.compile(r"^[a-z][a-z0-9+.-]{0,15}://[A-Za-z0-9.:-]*(/.*)$")


def check_input_name(name: str) -> str:
    """`name` itself if it is a safe input file name (a validator): a relative LFN as `check_lfn`
    wants it, or an absolute path or URL (`root://host//path`) with no empty, `.` or `..`
    component beyond the leading slashes. Which paths and URLs a deployment reads is its
    input-prefix policy (`prodmanager`'s `--input-prefix`, default /store/), checked at submission."""
    url = _URL.match(name) if isinstance(name, str) else None
    if url is None and not (isinstance(name, str) and name.startswith("/")):
        return check_lfn(name)
    if len(name) > MAX_LFN_CHARS:
        raise UnsafeName(f"input file name longer than {MAX_LFN_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise UnsafeName("input file name holds a control character (NUL, newline, ...)")
    path = url.group(1) if url is not None else name
    for part in path.lstrip("/").split("/"):
        if part in ("", ".", ".."):
            raise UnsafeName(f"input URL has an empty, '.' or '..' component: {name!r}")
        if not _COMPONENT.fullmatch(part):
            raise UnsafeName(f"component {part!r} has characters outside [A-Za-z0-9_.+=@-]")
    return name


def check_lfn(lfn: str) -> str:
    """`lfn` itself if it is safe (a validator for pydantic models); raises UnsafeName."""
    relative_name(lfn)
    return lfn
