"""The storage plugins against real storage: a directory, and a real XRootD server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prodagent.payload.files import adler32_of
from prodagent.storage.base import ChecksumMismatch, ElementSpec, StorageElement
from prodagent.storage.names import UnsafeName
from prodagent.storage.registry import open_element

ESCAPING = ["../outside.root", "/store/../../outside.root", "/etc/passwd", "a/\x00b.root",
            "a/" + "x" * 600 + ".root", "a//b.root", "a/./b.root", "a/b c.root", "a/\nb.root"]


@pytest.fixture(params=["posix", "xrootd"])
def element(request, tmp_path) -> tuple[StorageElement, Path]:
    """(element, the directory on this machine that holds its files)."""
    if request.param == "posix":
        root = tmp_path / "se"
        return open_element(ElementSpec(plugin="posix", pfn=f"{root}/{{lfn}}"), "posix"), root
    server = request.getfixturevalue("xrootd_server")
    area = f"t{os.getpid()}{abs(hash(request.node.name)) % 10**8}"
    return open_element(ElementSpec(plugin="xrootd", pfn=server.pfn_rule(f"disk/{area}")), "xrootd"), \
        server.local("disk") / area


def _file(tmp_path: Path, size: int, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_put_stat_get_list_delete(element, tmp_path):
    se, local_root = element
    src = _file(tmp_path, 3_000_000)
    put = se.put(src, "/store/mc/A/unmerged/j1.root")
    assert put.adler32 == adler32_of(src) and put.size == 3_000_000
    assert (local_root / "mc/A/unmerged/j1.root").read_bytes() == src.read_bytes()
    assert se.stat("mc/A/unmerged/j1.root") == put
    assert list(se.list("mc")) == ["mc/A/unmerged/j1.root"]  # no temporary file left
    back = tmp_path / "back.bin"
    se.get("/store/mc/A/unmerged/j1.root", back)
    assert back.read_bytes() == src.read_bytes()
    assert se.delete("/store/mc/A/unmerged/j1.root") is True
    assert se.delete("/store/mc/A/unmerged/j1.root") is False
    with pytest.raises(FileNotFoundError):
        se.stat("mc/A/unmerged/j1.root")


def test_a_put_that_does_not_verify_leaves_nothing_under_the_final_name(element, tmp_path):
    se, local_root = element
    src = _file(tmp_path, 100_000)
    with pytest.raises(ChecksumMismatch):
        se.put(src, "mc/B/x.root", source_adler32="00000001")  # the catalog expected other bytes
    assert not (local_root / "mc/B/x.root").exists()
    assert list(se.list("mc")) == [] and not [p for p in local_root.rglob("*") if p.is_file()]


def test_a_corrupted_replica_fails_verification(element, tmp_path):
    se, local_root = element
    src = _file(tmp_path, 200_000)
    put = se.put(src, "mc/C/x.root")
    assert se.verify("mc/C/x.root", put.adler32).size == put.size
    on_disk = local_root / "mc/C/x.root"
    data = bytearray(on_disk.read_bytes())
    data[1000] ^= 0xFF
    on_disk.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch):
        se.verify("mc/C/x.root", put.adler32)
    se.put(src, "mc/C/x.root")  # putting again replaces the corrupt replica whole
    assert se.verify("mc/C/x.root", put.adler32).adler32 == put.adler32


@pytest.mark.parametrize("lfn", ESCAPING, ids=range(len(ESCAPING)))
def test_escaping_names_are_refused_and_nothing_is_written(element, tmp_path, lfn):
    se, local_root = element
    src = _file(tmp_path, 1000)
    for operation in (lambda: se.put(src, lfn), lambda: se.stat(lfn), lambda: se.delete(lfn)):
        with pytest.raises(UnsafeName):
            operation()
    assert not local_root.exists() or not any(local_root.rglob("*"))
    assert not (local_root.parent / "outside.root").exists()


def test_posix_refuses_a_name_that_resolves_outside_through_a_link(tmp_path):
    root = tmp_path / "se"
    (root / "mc").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "mc" / "link").symlink_to(tmp_path / "elsewhere")
    se = open_element(ElementSpec(plugin="posix", pfn=f"{root}/{{lfn}}"))
    with pytest.raises(UnsafeName):
        se.put(_file(tmp_path, 10), "mc/link/x.root")
    assert not any((tmp_path / "elsewhere").iterdir())


def test_uproot_reads_root_urls(xrootd_server, tmp_path):
    import uproot

    from prodagent.payload import rootio

    path = tmp_path / "t.root"
    with uproot.recreate(path) as f:
        f["events"] = {"x": [1, 2, 3]}
    se = open_element(ElementSpec(plugin="xrootd", pfn=xrootd_server.pfn_rule("disk/uproot")))
    se.put(path, "t.root")
    with rootio.open_file(se.read_url("t.root")) as f:
        assert f["events"].arrays(library="np")["x"].tolist() == [1, 2, 3]
