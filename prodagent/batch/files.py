"""Small file helpers shared by the engines: atomic JSON writes and tolerant reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,120}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it does not exist (or is being replaced)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def file_key(job_id: str) -> str:
    """A file name for an agent job id: the id itself when safe, else a stable digest."""
    if _SAFE_NAME.fullmatch(job_id) and not job_id.startswith("."):
        return job_id
    return "~" + hashlib.sha256(job_id.encode()).hexdigest()[:40]
