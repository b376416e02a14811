"""The `posix` storage element: a directory (local disk or a shared file system).

The PFN rule is a path, `/data/se/{lfn}`. Besides the name checks every plugin makes, a path
whose real location (symbolic links followed) is outside the root is refused.
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

from prodagent.payload.files import adler32_of
from prodagent.storage.base import StorageElement, StorageError
from prodagent.storage.names import UnsafeName

_CHUNK = 8 << 20


class PosixElement(StorageElement):
    kind = "posix"

    def pfn(self, lfn: str) -> str:
        path = super().pfn(lfn)
        root = os.path.realpath(self.spec.root)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise UnsafeName(f"{lfn!r} resolves outside the element's root {root}")
        return path

    def _upload(self, local: Path, pfn: str) -> str:
        target = Path(pfn)
        target.parent.mkdir(parents=True, exist_ok=True)
        value = 1
        with open(local, "rb") as src, open(target, "wb") as dst:
            while block := src.read(_CHUNK):
                value = zlib.adler32(block, value)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        return f"{value:08x}"

    def _download(self, pfn: str, local: Path) -> None:
        shutil.copyfile(pfn, local)

    def _checksum(self, pfn: str) -> str:
        return adler32_of(pfn)

    def _size(self, pfn: str) -> int:
        return os.stat(pfn).st_size

    def _rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def _remove(self, pfn: str) -> None:
        try:
            os.unlink(pfn)
        except IsADirectoryError as exc:
            raise StorageError(f"{pfn} is a directory") from exc

    def _walk(self, pfn: str) -> Iterator[str]:
        for dirpath, _dirs, names in os.walk(pfn):
            for name in sorted(names):
                yield os.path.join(dirpath, name)
