"""Small file helpers shared by the payload modules: atomic writes and adler32 checksums."""

from __future__ import annotations

import os
import tempfile
import zlib
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


def adler32_of(path: str | os.PathLike[str]) -> str:
    """adler32 of a file's bytes, read in chunks, as 8 lower-case hex digits."""
    value = 1
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            value = zlib.adler32(block, value)
    return f"{value:08x}"
