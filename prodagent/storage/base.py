"""The storage-element interface every plugin implements, and the put protocol they share.

A put never leaves a partial or corrupt file under its final name: the file is written under a
temporary name beside the final one, the destination's adler32 (computed by the element: the
XRootD server, or a re-read of the written bytes) is compared with the adler32 computed at the
source, and only a match is renamed to the final name. A mismatch removes the temporary file and
raises `ChecksumMismatch`.

Errors: `FileNotFoundError` for a name the element does not hold; `TransientStorageError` for
what a retry may cure (server down, timeout, checksum mismatch); `StorageError` otherwise.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prodagent.payload.files import adler32_of
from prodagent.storage.names import relative_name


class StorageError(Exception):
    """A storage operation failed for good."""


class TransientStorageError(StorageError):
    """A storage operation failed in a way a retry may cure."""


class ChecksumMismatch(TransientStorageError):
    """The destination's adler32 differs from the source's."""


class ElementSpec(BaseModel):
    """One storage element: its plugin and the rule mapping a relative LFN to a physical name."""

    model_config = ConfigDict(extra="forbid")

    plugin: str = Field("posix", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    #: e.g. `root://host:port//store/{lfn}` or `/data/se/{lfn}`: the root is what precedes {lfn}
    pfn: str = Field(min_length=7, max_length=500)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pfn")
    @classmethod
    def _one_lfn_at_end(cls, value: str) -> str:
        if value.count("{lfn}") != 1 or not value.endswith("/{lfn}"):
            raise ValueError("pfn must end with '/{lfn}' (the element's root, then the name)")
        return value

    @property
    def root(self) -> str:
        return self.pfn[: -len("{lfn}")]


@dataclass(frozen=True)
class Stat:
    """A file on an element: its physical name, size and adler32 (8 lower-case hex digits)."""

    pfn: str
    size: int
    adler32: str


class StorageElement(ABC):
    """A place that holds files by relative LFN. Subclasses implement the primitive operations."""

    kind: ClassVar[str]

    def __init__(self, spec: ElementSpec, name: str = "") -> None:
        self.spec = spec
        self.name = name or spec.plugin

    # -- names ----------------------------------------------------------------------------
    def pfn(self, lfn: str) -> str:
        """The physical name (path or URL) of `lfn` on this element; checks the name first."""
        return self.spec.root + relative_name(lfn)

    def lfn_of(self, pfn: str) -> str:
        """The relative LFN of a physical name on this element; raises ValueError if not on it."""
        if not pfn.startswith(self.spec.root):
            raise ValueError(f"{pfn} is not on element {self.name} ({self.spec.root})")
        return relative_name(pfn[len(self.spec.root):])

    # -- operations -----------------------------------------------------------------------
    def put(self, local: str | os.PathLike[str], lfn: str, source_adler32: str | None = None) -> Stat:
        """Copy a local file to `lfn`, verified by adler32 at source and destination.

        `source_adler32`, when given (the catalog's), must also match the local file."""
        final = self.pfn(lfn)
        directory, _, base = final.rpartition("/")
        temp = f"{directory}/.{base}.{uuid.uuid4().hex[:12]}.part"
        try:
            source = self._upload(Path(local), temp) or adler32_of(local)
            if source_adler32 is not None and source != source_adler32:
                raise ChecksumMismatch(f"{local}: adler32 {source}, expected {source_adler32}")
            got = self._checksum(temp)
            if got != source:
                raise ChecksumMismatch(f"{final}: adler32 {got} at the destination, {source} at the source")
            self._rename(temp, final)
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the original error is what matters
                self._remove(temp)
            raise
        return Stat(final, Path(local).stat().st_size, source)

    def get(self, lfn: str, local: str | os.PathLike[str]) -> Stat:
        """Copy `lfn` to a local file (replaced whole), verified against the element's adler32."""
        source = self.stat(lfn, checksum=True)
        target = Path(local)
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
        try:
            self._download(source.pfn, part)
            got = adler32_of(part)
            if got != source.adler32:
                raise ChecksumMismatch(f"{source.pfn}: read back with adler32 {got}, element says {source.adler32}")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return source

    def stat(self, lfn: str, checksum: bool = True) -> Stat:
        """Size (and adler32, computed by the element, unless `checksum` is False) of `lfn`."""
        pfn = self.pfn(lfn)
        size = self._size(pfn)
        return Stat(pfn, size, self._checksum(pfn) if checksum else "")

    def verify(self, lfn: str, adler32: str) -> Stat:
        """The file's stat if its bytes, read now, have adler32 `adler32`; raises ChecksumMismatch.

        Unlike `stat`, never trusts a checksum the element stored earlier: that misses bit rot."""
        pfn = self.pfn(lfn)
        found = Stat(pfn, self._size(pfn), self._fresh_checksum(pfn))
        if found.adler32 != adler32:
            raise ChecksumMismatch(f"{found.pfn}: adler32 {found.adler32} on the element, {adler32} in the catalog")
        return found

    def delete(self, lfn: str) -> bool:
        """Remove `lfn`; False if it was not there (so a repeated delete is harmless)."""
        try:
            self._remove(self.pfn(lfn))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        """The relative LFNs of the files under the directory `prefix`, recursively."""
        base = relative_name(prefix)
        for pfn in self._walk(self.spec.root + base):
            if not pfn.rsplit("/", 1)[-1].startswith("."):
                yield pfn[len(self.spec.root):]

    def read_url(self, lfn: str) -> str:
        """What a reader (uproot) opens to read `lfn` directly: a path or a root:// URL."""
        return self.pfn(lfn)

    # -- primitives -----------------------------------------------------------------------
    @abstractmethod
    def _upload(self, local: Path, pfn: str) -> str | None:
        """Write `local` to `pfn`; the source's adler32 if computed on the way, else None."""

    @abstractmethod
    def _download(self, pfn: str, local: Path) -> None: ...

    @abstractmethod
    def _checksum(self, pfn: str) -> str: ...

    def _fresh_checksum(self, pfn: str) -> str:
        """adler32 of the bytes as they are now (default: `_checksum`, when that never caches)."""
        return self._checksum(pfn)

    @abstractmethod
    def _size(self, pfn: str) -> int: ...

    @abstractmethod
    def _rename(self, source: str, target: str) -> None: ...

    @abstractmethod
    def _remove(self, pfn: str) -> None: ...

    @abstractmethod
    def _walk(self, pfn: str) -> Iterator[str]: ...
