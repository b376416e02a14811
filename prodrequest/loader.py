"""From raw bytes to a validated workflow, or to the complete list of what is wrong with them.

Checks run in order: size, encoding (UTF-8 only), syntax (YAML, or JSON by content type; no
aliases, no duplicate keys, one document, a mapping at the top), then the pydantic models of
`prodrequest.spec`. Every error names a field path (`events.total`, or `(document)` for the whole
file) and says what was expected.
"""

from __future__ import annotations

import difflib
import json
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from prodrequest.spec import KINDS, MonteCarloWorkflow, ProcessingWorkflow, workflow_adapter

MAX_DOCUMENT_BYTES = 1024 * 1024
DOCUMENT = "(document)"


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a document: where, and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class WorkflowInvalid(ValueError):
    """The document is not a valid workflow; `errors` lists every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("invalid workflow:\n" + "\n".join(f"  {e}" for e in errors))


def load_workflow(
    data: bytes, content_type: str | None = None
) -> MonteCarloWorkflow | ProcessingWorkflow:
    """Parse and validate a workflow document; raises WorkflowInvalid with every error."""
    text = decode_document(data)
    document = parse_json(text) if _is_json(content_type) else parse_yaml(text)
    return validate_workflow(document)


def decode_document(data: bytes) -> str:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _invalid(
            f"document is {len(data)} bytes, more than the limit of {MAX_DOCUMENT_BYTES}"
        )
    if not data.strip():
        raise _invalid("empty document: expected a workflow mapping")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        raise _invalid("document is UTF-16 or UTF-32 encoded; expected UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid(
            f"document is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "(save the file as UTF-8)"
        ) from None
    if "\x00" in text:
        raise _invalid("document contains NUL characters; expected UTF-8 text")
    return text


def parse_yaml(text: str) -> Any:
    try:
        documents = list(yaml.load_all(text, Loader=_StrictLoader))  # noqa: S506 - safe subclass
    except _DuplicateKey as exc:
        raise WorkflowInvalid([FieldError(exc.path, exc.message)]) from None
    except yaml.YAMLError as exc:
        raise _invalid(f"malformed YAML: {_yaml_problem(exc)}") from None
    if len(documents) != 1:
        raise _invalid(f"expected exactly one YAML document, found {len(documents)}")
    return documents[0]


def parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_pairs)
    except _DuplicateKey as exc:
        raise WorkflowInvalid([FieldError(exc.path, exc.message)]) from None
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def validate_workflow(document: Any) -> MonteCarloWorkflow | ProcessingWorkflow:
    """Validate a parsed document (a dict) against the workflow models."""
    if not isinstance(document, dict):
        got = "nothing" if document is None else type(document).__name__
        raise _invalid(f"expected a mapping of workflow fields at the top level, got {got}")
    errors: list[FieldError] = []
    kind = document.get("kind")
    if kind not in KINDS:
        errors.append(_kind_error(kind))
        # Still report everything else, judged against the kind the keys suggest.
        kind = "processing" if "input" in document else "montecarlo"
        document = {**document, "kind": kind}
    try:
        workflow = workflow_adapter.validate_python(document)
    except ValidationError as exc:
        errors.extend(_field_errors(exc, KINDS[kind]))
    if errors:
        raise WorkflowInvalid(errors)
    return workflow


def _kind_error(kind: Any) -> FieldError:
    expected = "expected one of: " + ", ".join(repr(k) for k in KINDS)
    if kind is None:
        return FieldError("kind", f"field required; {expected}")
    return FieldError("kind", f"unknown kind {kind!r}; {expected}")


def _field_errors(exc: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    result = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and loc[0] in KINDS:
            loc = loc[1:]  # the discriminator tag pydantic prefixes
        path = _path(loc)
        result.append(FieldError(path, _message(err, model, loc)))
    return result


def _path(loc: list[Any]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or DOCUMENT


def _message(err: Any, model: type[BaseModel], loc: list[Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(model, loc)
    if kind == "missing":
        return "field required"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "string_pattern_mismatch":
        msg = f"does not match the expected pattern {err['ctx']['pattern']}"
    if kind == "value_error" or "input" not in err or not loc:
        return msg
    return f"{msg} (got {_show(err['input'])})"


def _unknown_key_message(model: type[BaseModel], loc: list[Any]) -> str:
    allowed = _allowed_keys(model, loc[:-1])
    key = str(loc[-1]) if loc else ""
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key{hint}; allowed keys: {', '.join(sorted(allowed))}"


def _allowed_keys(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The field names of the model found by walking `loc` down from `model`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid(message: str) -> WorkflowInvalid:
    return WorkflowInvalid([FieldError(DOCUMENT, message)])


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


class _DuplicateKey(Exception):
    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message)


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(str(key), f"duplicate key {key!r}")
        result[key] = value
    return result


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (billion-laughs documents) and duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _DuplicateKey(str(key), f"duplicate key {key!r} at line {line}")
            if isinstance(key, (dict, list)):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be scalars", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _is_json(content_type: str | None) -> bool:
    return bool(content_type) and "json" in str(content_type).lower()
