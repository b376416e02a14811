"""The `xrootd` storage element: files on an XRootD server (EOS and most grid storage).

The PFN rule is a URL, `root://host:port//store/{lfn}`. Uploads use XrdCl's copy engine (the one
`xrdcp` runs) while the source adler32 is computed beside it; the destination adler32 is asked of
the server (`xrootd.chksum adler32` in its configuration).
Readers open the `root://` URL directly (`payload.rootio.open_file`).

Options: `timeout_s` (per request and for (re)connecting; default 20), `chunk_mb` (default 8),
`inflight` (chunks in flight, default 4), `copy_timeout_s` (default 3600).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodagent.payload.files import adler32_of
from prodagent.storage.base import ElementSpec, StorageElement, StorageError, TransientStorageError


class XRootDOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: int = Field(20, ge=1, le=3600)
    chunk_mb: int = Field(8, ge=1, le=256)
    inflight: int = Field(4, ge=1, le=64)
    copy_timeout_s: int = Field(3600, ge=1)  # the longest one copy may take


def _client() -> Any:
    from XRootD import client

    return client


def _configure(timeout_s: int) -> None:
    """Fail fast when the server is away (XrdCl's defaults retry for minutes); our retry layer
    (`prodagent.storage.transfer`) decides how long to keep trying."""
    client = _client()
    client.EnvPutInt("ConnectionRetry", 1)
    client.EnvPutInt("ConnectionWindow", timeout_s)
    client.EnvPutInt("RequestTimeout", timeout_s)
    client.EnvPutInt("StreamErrorWindow", 0)


class XRootDElement(StorageElement):
    kind = "xrootd"

    def __init__(self, spec: ElementSpec, name: str = "") -> None:
        super().__init__(spec, name)
        self.opts = XRootDOptions.model_validate(spec.options)
        scheme, sep, rest = spec.root.partition("://")
        if scheme not in ("root", "xroot") or not sep or "/" not in rest:
            raise ValueError(f"an xrootd pfn must look like root://host:port//path/{{lfn}}, not {spec.pfn}")
        host, _, path = rest.partition("/")
        self.server = f"{scheme}://{host}"
        _configure(self.opts.timeout_s)
        self.fs = _client().FileSystem(self.server)

    def _path(self, pfn: str) -> str:
        if not pfn.startswith(self.server + "/"):
            raise ValueError(f"{pfn} is not on {self.server}")
        return "/" + pfn[len(self.server) + 1:].lstrip("/")

    def _check(self, status: Any, what: str) -> None:
        if status.ok:
            return
        if status.errno == 3011 or "No such file" in status.message:
            raise FileNotFoundError(f"{what}: {status.message.strip()}")
        if status.errno in (3010,):  # kXR_NotAuthorized: a retry does not help
            raise StorageError(f"{what}: {status.message.strip()}")
        raise TransientStorageError(f"{what}: {status.message.strip()}")

    def _upload(self, local: Path, pfn: str) -> str:
        # XrdCl's copy engine (xrdcp's) moves the bytes; the source adler32 is computed meanwhile
        # in a thread (zlib releases the GIL), so the check costs no extra wall time
        process = _client().CopyProcess()
        process.add_job(str(local), pfn, force=True, mkdir=True, chunksize=self.opts.chunk_mb << 20,
                        parallelchunks=self.opts.inflight, inittimeout=self.opts.timeout_s,
                        cptimeout=self.opts.copy_timeout_s)
        status = process.prepare()
        self._check(status, f"prepare copy to {pfn}")
        with ThreadPoolExecutor(1) as pool:
            source = pool.submit(adler32_of, local)
            status, results = process.run()
            self._check(status, f"copy to {pfn}")
            for result in results or []:
                self._check(result["status"], f"copy to {pfn}")
            return source.result()

    def _checksum(self, pfn: str) -> str:
        from XRootD.client.flags import QueryCode

        status, response = self.fs.query(QueryCode.CHECKSUM, self._path(pfn), timeout=self.opts.timeout_s)
        self._check(status, f"checksum of {pfn}")
        text = (response or b"").decode(errors="replace").strip("\x00 \n")
        kind, _, value = text.partition(" ")
        if kind != "adler32" or len(value) != 8:
            raise StorageError(f"checksum of {pfn}: the server answered {text!r}, not an adler32")
        return value.lower()

    def _fresh_checksum(self, pfn: str) -> str:
        # the server keeps the adler32 it computed (keyed on the file's mtime): read the bytes
        value = 1
        for block in self._read_blocks(pfn):
            value = zlib.adler32(block, value)
        return f"{value:08x}"

    def _read_blocks(self, pfn: str) -> Iterator[bytes]:
        handle = _client().File()
        status, _ = handle.open(pfn, timeout=self.opts.timeout_s)
        self._check(status, f"open {pfn}")
        try:
            yield from handle.readchunks(chunksize=self.opts.chunk_mb << 20)
        finally:
            handle.close(timeout=self.opts.timeout_s)

    def _size(self, pfn: str) -> int:
        status, info = self.fs.stat(self._path(pfn), timeout=self.opts.timeout_s)
        self._check(status, f"stat {pfn}")
        return int(info.size)

    def _rename(self, source: str, target: str) -> None:
        status, _ = self.fs.mv(self._path(source), self._path(target), timeout=self.opts.timeout_s)
        self._check(status, f"rename {source} to {target}")

    def _remove(self, pfn: str) -> None:
        status, _ = self.fs.rm(self._path(pfn), timeout=self.opts.timeout_s)
        self._check(status, f"remove {pfn}")

    def _download(self, pfn: str, local: Path) -> None:
        with open(local, "wb") as out:
            for block in self._read_blocks(pfn):
                out.write(block)

    def _walk(self, pfn: str) -> Iterator[str]:
        from XRootD.client.flags import DirListFlags, StatInfoFlags

        status, listing = self.fs.dirlist(self._path(pfn), DirListFlags.STAT, timeout=self.opts.timeout_s)
        if not status.ok and (status.errno == 3011 or "No such file" in status.message):
            return
        self._check(status, f"list {pfn}")
        for entry in sorted(listing, key=lambda e: e.name):
            child = f"{pfn.rstrip('/')}/{entry.name}"
            if entry.statinfo.flags & StatInfoFlags.IS_DIR:
                yield from self._walk(child)
            else:
                yield child

