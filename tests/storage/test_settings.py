"""The `storage` configuration section: what it refuses, and the stage-out it gives a job."""

from __future__ import annotations

import pytest

from prodagent.config import config_from_dict
from prodagent.errors import ConfigError
from prodagent.storage.transfer import stage_out_spec

DISK = {"plugin": "xrootd", "pfn": "root://se.example:1094//store/{lfn}"}
TAPE = {"plugin": "posix", "pfn": "/archive/{lfn}"}


@pytest.mark.parametrize(("storage", "named"), [
    ({"default": "disk"}, "no element named 'disk'"),
    ({"elements": {"disk": DISK}, "sites": {"CERN": "eos"}}, "sites.CERN: no element named 'eos'"),
    ({"elements": {"disk": DISK}, "default": "disk", "archive": "disk"}, "archive must be a second element"),
    ({"elements": {"disk": {**DISK, "plugin": "s3"}}}, "unknown plugin 's3'"),
    ({"elements": {"disk": {**DISK, "pfn": "root://se:1094//store/{lfn}/x"}}}, "must end with '/{lfn}'"),
    ({"elements": {"disk": {**DISK, "pfn": "root://se:1094//store/"}}}, "must end with '/{lfn}'"),
])
def test_bad_storage_sections_are_refused_naming_the_key(storage, named):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"storage": storage})
    assert "storage" in str(info.value) and named in str(info.value)


def test_no_storage_means_the_work_area_and_sites_pick_their_element():
    assert stage_out_spec(config_from_dict({}).storage, "/store/a/b.root") is None
    config = config_from_dict({"storage": {"elements": {"disk": DISK, "tape": TAPE, "nfs": TAPE | {"pfn": "/nfs/{lfn}"}},
                                           "default": "disk", "sites": {"T2_X": "nfs"}, "archive": "tape"}})
    spec = stage_out_spec(config.storage, "/store/a/b.root")
    assert spec is not None
    assert spec.destination("T2_X").name == "nfs" and spec.destination("elsewhere").name == "disk"
    assert spec.destination(None).element.pfn == DISK["pfn"]
