"""A corpus of bad workflow documents: each is refused with an error naming the field, and the
database is unchanged afterwards."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from prodmanager.db import queries as q
from prodmanager.errors import InvalidInput
from prodrequest.loader import MAX_DOCUMENT_BYTES, WorkflowInvalid, load_workflow
from tests.prodmanager.conftest import WORKFLOWS, Env, Server

CORPUS = sorted((Path(__file__).parent / "bad_workflows").glob("*.yaml"))
GOOD = (WORKFLOWS / "minbias_demo.yaml").read_bytes()

# Documents that cannot be files with a comment line: (name, bytes, expected path).
GENERATED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "(document)"),
    ("only_whitespace", b"  \n\n", "(document)"),
    ("huge", b"# padding\n" * (MAX_DOCUMENT_BYTES // 10 + 1) + GOOD, "(document)"),
    ("utf16", GOOD.decode().encode("utf-16"), "(document)"),
    ("latin1", GOOD.replace(b"demo.", "démo.".encode("latin-1")), "(document)"),
    ("nul_bytes", GOOD + b"\x00\x00", "(document)"),
    ("binary", bytes(range(256)) * 10, "(document)"),
]


def expected_paths(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), path
    return [p.strip() for p in first.removeprefix("# expect: ").split(",")]


def cases() -> list[tuple[str, bytes, list[str]]]:
    files = [(p.stem, p.read_bytes(), expected_paths(p)) for p in CORPUS]
    return files + [(name, data, [path]) for name, data, path in GENERATED]


def test_corpus_is_large_enough() -> None:
    assert len(cases()) >= 30


@pytest.mark.parametrize(("name", "data", "paths"), cases(), ids=[c[0] for c in cases()])
def test_each_bad_document_names_its_field(name: str, data: bytes, paths: list[str]) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(data)
    found = [e.path for e in info.value.errors]
    for path in paths:
        assert path in found, f"{name}: no error for {path}; got {info.value}"
    assert all(len(e.message) > 5 for e in info.value.errors)


def test_every_error_is_listed_not_just_the_first() -> None:
    doc = (Path(__file__).parent / "bad_workflows" / "45_many_errors.yaml").read_bytes()
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(doc)
    messages = {e.path: e.message for e in info.value.errors}
    assert len(messages) >= 5
    assert "greater than or equal to 1" in messages["events.total"]
    assert "'linear', 'squared' or 'exponential'" in messages["retry.cooloff"]
    assert "unknown key" in messages["bogus"]


def test_unknown_key_suggests_the_right_one() -> None:
    doc = (Path(__file__).parent / "bad_workflows" / "14_unknown_top_level_key.yaml").read_bytes()
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(doc)
    assert "did you mean 'events'?" in str(info.value)


def test_unknown_kind_offers_only_what_agents_can_run() -> None:
    doc = (Path(__file__).parent / "bad_workflows" / "02_unknown_kind.yaml").read_bytes()
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(doc)
    (message,) = [e.message for e in info.value.errors if e.path == "kind"]
    assert "'montecarlo'" in message and "'processing'" in message, message


def test_encoding_errors_say_what_is_expected() -> None:
    with pytest.raises(WorkflowInvalid, match="not valid UTF-8: byte 0xe9"):
        load_workflow(GENERATED[4][1])
    with pytest.raises(WorkflowInvalid, match="UTF-16"):
        load_workflow(GENERATED[3][1])


def test_bad_documents_leave_the_database_unchanged(env: Env) -> None:
    alice = env.who("alice")
    before = env.db.read(q.table_counts)
    refused = 0
    for name, data, paths in cases():
        with pytest.raises(InvalidInput) as info:
            env.requests.submit_document(alice, data)
        found = [e["path"] for e in info.value.details["errors"]]
        assert set(paths) <= set(found), name
        refused += 1
    assert refused == len(cases())
    assert env.db.read(q.table_counts) == before
    assert before["pm_request"] == 0 and before["pm_allocation"] == 0


def test_rest_refuses_bad_documents_with_field_errors(server: Server) -> None:
    env = server.env
    headers = {"Authorization": f"Bearer {env.tokens['alice']}"}
    before = env.db.read(q.table_counts)
    for name, data, paths in cases()[::6]:
        r = httpx.post(f"{server.url}/api/v1/requests", content=data, headers=headers)
        assert r.status_code in (413, 422), name
        body = r.json()
        assert body["error"] in ("invalid", "too_large")
        assert set(paths) <= {e["path"] for e in body["errors"]}, name
    huge = GENERATED[2][1]
    r = httpx.post(f"{server.url}/api/v1/requests", content=huge, headers=headers)
    assert r.status_code == 413 and r.json()["errors"][0]["path"] == "(document)"
    assert env.db.read(q.table_counts) == before


def test_an_unknown_input_dataset_is_refused_storing_nothing(env: Env) -> None:
    """The dataset a chained request reads must be some request's output (checked by the service)."""
    doc = b"""kind: processing
name: orphan_reco
payload: {transformation: reconstruct, version: "1"}
input: {dataset: /Nobody/makes-v1/GEN}
output: {dataset: /Nobody/reco-v1/MDST, tier: MDST}
"""
    before = env.db.read(q.table_counts)
    with pytest.raises(InvalidInput) as info:
        env.requests.submit_document(env.who("alice"), doc)
    assert [e["path"] for e in info.value.details["errors"]] == ["input.dataset"]
    assert "no request produces /Nobody/makes-v1/GEN" in str(info.value.details["errors"])
    assert env.db.read(q.table_counts) == before
