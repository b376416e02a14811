"""Small file helpers shared by the payload modules: atomic writes and adler32 checksums."""

from __future__ import annotations

import functools
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

_CHUNK = 1 << 20


def atomic_write_text(target: Path, text: str, fsync: bool = True) -> None:
    """Readers see the old file or the whole new one, never a partial one (and, with `fsync`,
    neither does anyone after a crash of the machine)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Flush to disk what was written on the filesystem holding `path` (Linux `syncfs`; `sync`
    elsewhere). After writing many small files without `fsync`, one call makes them all durable:
    an fsync each costs a journal commit each."""
    syncfs = _syncfs()
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs, found in the running process (no library search); None where there is none."""
    import ctypes  # only where specs are written in batches, not in every job wrapper

    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def adler32_of(path: str | os.PathLike[str]) -> str:
    """adler32 of a file's bytes, read in chunks, as 8 lower-case hex digits."""
    value = 1
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            value = zlib.adler32(block, value)
    return f"{value:08x}"
