"""Hostile workflow documents over real HTTP: each is answered 4xx with an error naming the field
(never 5xx), the answer is small whatever the input, and no table changes.

Classes (issue 9): complex keys, nesting thousands of levels deep, integers thousands of digits
long or beyond 64 bits, lone surrogates, NaN and infinities, control characters and terminal
escapes, YAML 1.1 surprises (sexagesimal, yes/no, octal, hex), tags and aliases, non-string
keys, error amplification (90,000 keys) and too many values. (The input-file policy is in
test_visibility.py: processing requests are not accepted at the door yet.)
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import yaml

from prodmanager.db import queries as q
from tests.prodmanager.conftest import Server

JSON = "application/json"
MAX_ANSWER_BYTES = 20_000

GOOD_YAML = """\
kind: montecarlo
name: {name}
description: hostile corpus
payload:
  transformation: pythia
  version: "8.317"
  parameters: {{process: minbias}}
events: {{total: 1000, per_job: 100}}
output: {{dataset: /MinBias/hostile-v1/GEN, tier: GEN}}
"""


def good_dict(name: str = "hostile") -> dict[str, object]:
    return yaml.safe_load(GOOD_YAML.format(name=name))


def yaml_doc(old: str = "", new: str = "", extra: str = "") -> bytes:
    """The good document with `old` replaced by `new`, and `extra` lines appended."""
    text = GOOD_YAML.format(name="hostile")
    if old:
        assert old in text, old
        text = text.replace(old, new, 1)
    return (text + extra).encode()


def json_doc(
    change: Callable[[dict[str, object]], object], raw: dict[str, str] | None = None
) -> bytes:
    """The good document as JSON after `change(doc)`; `raw` replaces placeholder strings with raw
    JSON text (for what json.dumps cannot write: NaN, lone surrogates, huge numbers)."""
    doc = good_dict()
    change(doc)
    text = json.dumps(doc)
    for placeholder, replacement in (raw or {}).items():
        assert f'"{placeholder}"' in text, placeholder
        text = text.replace(f'"{placeholder}"', replacement)
    return text.encode()


def put(path: str, value: object) -> Callable[[dict[str, object]], None]:
    def change(doc: dict[str, object]) -> None:
        *parents, last = path.split(".")
        node: dict[str, object] = doc
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[last] = value

    return change


DEEP = 10_000
KEYS_90K = "".join(f"k{i}: 1\n" for i in range(90_000))

# (name, body, content type, expected error path; a path ending in "*" is a prefix)
CASES: list[tuple[str, bytes, str | None, str]] = [
    # complex mapping keys
    ("complex_key_top", yaml_doc(extra="? [a, b]\n: 1\n"), None, "(document)"),
    (
        "complex_key_params",
        yaml_doc("{process: minbias}", "{? {x: 1} : 2}"),
        None,
        "payload.parameters",
    ),
    ("complex_key_flow", yaml_doc("{total: 1000, per_job: 100}", "{[a]: 1}"), None, "events"),
    ("complex_key_block", yaml_doc(extra="merge:\n  ? - x\n  : 1\n"), None, "merge"),
    # nesting
    (
        "deep_yaml_flow",
        yaml_doc("{process: minbias}", "{x: " + "[" * DEEP + "]" * DEEP + "}"),
        None,
        "(document)",
    ),
    ("deep_yaml_block", yaml_doc(extra="extra:\n" + "  " + "- " * DEEP + "x\n"), None, "extra[0]*"),
    (
        "deep_yaml_40",
        yaml_doc("{process: minbias}", "{x: " + "[" * 40 + "]" * 40 + "}"),
        None,
        "payload.parameters.x*",
    ),
    (
        "deep_json",
        json_doc(put("payload.parameters.x", "DEEP"), {"DEEP": "[" * DEEP + "]" * DEEP}),
        JSON,
        "(document)",
    ),
    (
        "deep_json_40",
        json_doc(put("payload.parameters.x", "DEEP"), {"DEEP": "[" * 40 + "]" * 40}),
        JSON,
        "(document)",
    ),
    ("deep_json_objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP, JSON, "(document)"),
    ("deep_yaml_mappings", b"{a: " * DEEP + b"1" + b"}" * DEEP, None, "a.a.a*"),
    # integers
    ("int_5000_digits_yaml", yaml_doc("total: 1000", "total: " + "9" * 5000), None, "events.total"),
    (
        "int_5000_digits_json",
        json_doc(put("events.total", "N"), {"N": "9" * 5000}),
        JSON,
        "events.total",
    ),
    (
        "int_negative_5000_digits",
        yaml_doc("{process: minbias}", "{n: -" + "9" * 5000 + "}"),
        None,
        "payload.parameters.n",
    ),
    ("int_above_64_bits", yaml_doc("total: 1000", f"total: {2**64}"), None, "events.total"),
    ("int_2_63_priority", json_doc(put("priority", 2**63)), JSON, "priority"),
    (
        "int_below_64_bits",
        json_doc(put("payload.parameters.n", -(2**63) - 1)),
        JSON,
        "payload.parameters.n",
    ),
    (
        "int_in_list",
        json_doc(put("payload.parameters.xs", [1, 2, 10**30])),
        JSON,
        "payload.parameters.xs[2]",
    ),
    # lone surrogates
    (
        "surrogate_parameter",
        json_doc(put("payload.parameters.process", "S"), {"S": '"a\\ud800b"'}),
        JSON,
        "payload.parameters.process",
    ),
    (
        "surrogate_description",
        json_doc(put("description", "S"), {"S": '"\\ud800"'}),
        JSON,
        "description",
    ),
    ("surrogate_name", json_doc(put("name", "S"), {"S": '"abc\\udfff"'}), JSON, "name"),
    (
        "surrogate_low_dataset",
        json_doc(put("output.dataset", "S"), {"S": '"/A/B\\udc00/GEN"'}),
        JSON,
        "output.dataset",
    ),
    (
        "surrogate_key",
        json_doc(put("payload.parameters.K", 1), {"K": '"\\ud83d"'}),
        JSON,
        "payload.parameters.*",
    ),
    ("surrogate_yaml", yaml_doc("hostile corpus", '"\\ud800"'), None, "(document)"),
    # NaN and infinities
    ("nan_json_total", json_doc(put("events.total", "X"), {"X": "NaN"}), JSON, "events.total"),
    (
        "infinity_json_param",
        json_doc(put("payload.parameters.ecm", "X"), {"X": "Infinity"}),
        JSON,
        "payload.parameters.ecm",
    ),
    ("minus_infinity_json", json_doc(put("priority", "X"), {"X": "-Infinity"}), JSON, "priority"),
    (
        "overflow_json_float",
        json_doc(put("retry.base_s", "X"), {"X": "1e999"}),
        JSON,
        "retry.base_s",
    ),
    (
        "nan_yaml_param",
        yaml_doc("process: minbias", "process: .nan"),
        None,
        "payload.parameters.process",
    ),
    (
        "nan_yaml_caps",
        yaml_doc("process: minbias", "process: .NaN"),
        None,
        "payload.parameters.process",
    ),
    ("inf_yaml_retry", yaml_doc(extra="retry: {base_s: .inf}\n"), None, "retry.base_s"),
    (
        "minus_inf_yaml",
        yaml_doc("process: minbias", "process: -.Inf"),
        None,
        "payload.parameters.process",
    ),
    ("overflow_yaml_float", yaml_doc(extra="retry: {base_s: 1e999}\n"), None, "retry.base_s"),
    (
        "nan_in_list_yaml",
        yaml_doc("process: minbias", "xs: [1.0, .nan]"),
        None,
        "payload.parameters.xs[1]",
    ),
    # control characters and terminal escapes
    ("esc_description", yaml_doc("hostile corpus", '"\\e[31mred"'), None, "description"),
    ("csi_clear_name", json_doc(put("name", "hostile\u001b[2J")), JSON, "name"),
    (
        "c1_csi_parameter",
        json_doc(put("payload.parameters.process", "x\u009b31m")),
        JSON,
        "payload.parameters.process",
    ),
    ("bell_description", yaml_doc("hostile corpus", '"ding\\a"'), None, "description"),
    (
        "nul_escape_parameter",
        yaml_doc("process: minbias", 'process: "a\\0b"'),
        None,
        "payload.parameters.process",
    ),
    ("bidi_override", json_doc(put("description", "abc\u202edcba")), JSON, "description"),
    (
        "del_parameter",
        json_doc(put("payload.parameters.process", "a\u007f")),
        JSON,
        "payload.parameters.process",
    ),
    ("newline_in_name", json_doc(put("name", "host\nile")), JSON, "name"),
    ("carriage_return_tier", json_doc(put("output.tier", "GEN\r")), JSON, "output.tier"),
    (
        "escape_in_key",
        json_doc(put("payload.parameters.\u001b[31m", 1)),
        JSON,
        "payload.parameters.*",
    ),
    (
        "line_separator",
        json_doc(put("payload.parameters.process", "a\u2028b")),
        JSON,
        "payload.parameters.process",
    ),
    # keys that are not strings
    ("int_key", yaml_doc(extra="1: x\n"), None, "1"),
    ("null_key", yaml_doc(extra="~: x\n"), None, "None"),
    ("bool_key", yaml_doc("{process: minbias}", "{true: x}"), None, "payload.parameters.True"),
    ("float_key", yaml_doc("{process: minbias}", "{1.5: x}"), None, "payload.parameters.1.5"),
    (
        "long_key",
        yaml_doc("{process: minbias}", "{" + "k" * 1000 + ": 1}"),
        None,
        "payload.parameters.*",
    ),
    # YAML 1.1 surprises: under YAML 1.2 these are strings, which the typed fields refuse
    ("sexagesimal_total", yaml_doc("total: 1000", "total: 190:20:30"), None, "events.total"),
    ("sexagesimal_priority", yaml_doc(extra="priority: 1:30\n"), None, "priority"),
    ("yes_boolean", yaml_doc(extra="merge: {enabled: yes}\n"), None, "merge.enabled"),
    ("off_boolean", yaml_doc(extra="merge: {enabled: off}\n"), None, "merge.enabled"),
    ("octal_per_job", yaml_doc("per_job: 100", "per_job: 0o17"), None, "events.per_job"),
    ("hex_total", yaml_doc("total: 1000", "total: 0x3e8"), None, "events.total"),
    ("underscore_total", yaml_doc("total: 1000", "total: 1_000"), None, "events.total"),
    # tags, aliases, merge keys
    ("binary_tag", yaml_doc("hostile corpus", "!!binary aGVsbG8="), None, "description"),
    (
        "python_tag",
        yaml_doc("hostile corpus", "!!python/object/apply:os.system [ls]"),
        None,
        "description",
    ),
    ("set_tag", yaml_doc("{process: minbias}", "!!set {a, b}"), None, "payload.parameters"),
    ("local_tag", yaml_doc("minbias}", "!custom minbias}"), None, "payload.parameters.process"),
    (
        "alias",
        yaml_doc("{process: minbias}", "&p {process: minbias}", "extra: *p\n"),
        None,
        "extra",
    ),
    (
        "merge_key",
        yaml_doc("{total: 1000, per_job: 100}", "{<<: {total: 5}, per_job: 100}"),
        None,
        "events.<<",
    ),
    # amplification and size of the parse
    ("keys_90k_yaml", KEYS_90K.encode(), None, "(document)"),
    ("keys_90k_json", json.dumps({f"k{i}": 1 for i in range(90_000)}).encode(), JSON, "(document)"),
    (
        "values_150k",
        yaml_doc("{process: minbias}", "{xs: [" + "1," * 150_000 + "1]}"),
        None,
        "(document)",
    ),
    (
        "values_300k_json",
        json_doc(put("payload.parameters.xs", "X"), {"X": "[" + "1," * 300_000 + "1]"}),
        JSON,
        "(document)",
    ),
]


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({name for name, *_ in CASES}) == len(CASES)


def _matches(expected: str, paths: list[str]) -> bool:
    if expected.endswith("*"):
        return any(p.startswith(expected[:-1]) for p in paths)
    return expected in paths


def test_hostile_documents_are_refused_naming_the_field(server: Server) -> None:
    env = server.env
    headers = {"Authorization": f"Bearer {env.tokens['alice']}"}
    before = env.db.read(q.table_counts)
    wrong = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for name, body, content_type, expected in CASES:
            extra = {"Content-Type": content_type} if content_type else {}
            r = client.post("/api/v1/requests", content=body, headers=extra)
            paths = [e["path"] for e in r.json().get("errors") or []]
            if not (400 <= r.status_code < 500) or not _matches(expected, paths):
                wrong.append((name, r.status_code, expected, r.text[:300]))
            elif len(r.content) > MAX_ANSWER_BYTES:
                wrong.append((name, r.status_code, "small answer", len(r.content)))
    assert wrong == [], "\n".join(map(str, wrong))
    assert env.db.read(q.table_counts) == before
    assert before["pm_request"] == 0


def test_many_errors_are_capped_and_counted(server: Server) -> None:
    """500 unknown keys: 50 errors listed, the rest counted, the answer small."""
    env = server.env
    doc = yaml_doc(extra="".join(f"unknown_{i}: 1\n" for i in range(500)))
    r = httpx.post(
        f"{server.url}/api/v1/requests",
        content=doc,
        headers={"Authorization": f"Bearer {env.tokens['alice']}"},
    )
    body = r.json()
    assert r.status_code == 422
    assert len(body["errors"]) == 50 and body["errors_omitted"] == 450
    assert "500 error(s)" in body["detail"]
    assert len(r.content) < MAX_ANSWER_BYTES


def test_yaml_1_2_reads_what_is_written(server: Server) -> None:
    """Accepted documents keep YAML 1.1 look-alikes as the strings they are written as."""
    env = server.env
    doc = yaml_doc(
        "{process: minbias}", "{process: minbias, tag: 190:20:30, flag: yes, mode: 0o17}"
    )
    r = httpx.post(
        f"{server.url}/api/v1/requests",
        content=doc,
        headers={"Authorization": f"Bearer {env.tokens['alice']}"},
    )
    if r.status_code == 201:  # the transformation may refuse unknown parameters, but never 5xx
        params = r.json()["request"]
        spec = env.requests.get(env.who("alice"), params["id"]).spec
        assert spec["payload"]["parameters"]["tag"] == "190:20:30"
        assert spec["payload"]["parameters"]["flag"] == "yes"
    else:
        assert r.status_code == 422, r.text


def test_depth_scan_counts_structure_not_text() -> None:
    """Brackets inside strings are text; 32 levels pass, 33 do not."""
    from prodrequest.loader import MAX_DEPTH, WorkflowInvalid, load_json

    assert load_json(b'{"a": "' + b"[{" * 100 + b'\\"]"}') == {"a": "[{" * 100 + '"]'}
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    try:
        load_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    except WorkflowInvalid as exc:
        assert "nested more than 32 levels" in str(exc)
    else:
        raise AssertionError("33 levels accepted")
