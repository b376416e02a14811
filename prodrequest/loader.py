"""From raw bytes to a validated workflow, or to the complete list of what is wrong with them.

Checks run in order: size, encoding (UTF-8 only), syntax (YAML 1.2 core schema, or JSON by
content type; no aliases, tags, complex keys or duplicate keys, one document, a mapping at the
top, nesting bounded while parsing), a bounded walk of the parsed document (string keys, real
Unicode without control characters, 64-bit integers, finite numbers, mappings of bounded size),
then the pydantic models of `prodrequest.spec`, which never see a document the walk refused.
Every error names a field path (`events.total`, or `(document)` for the whole file) and says
what was expected; at most MAX_ERRORS are kept, with the count of the rest.

`load_json` runs the same parse and walk over any JSON body (the server's door uses it for every
JSON route).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import typing
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, ScalarNode
from yaml.resolver import BaseResolver

try:  # LibYAML's event parser is C and twenty times faster; composing stays ours, in Python.
    from yaml.cyaml import CParser as _EventParser
except ImportError:  # pragma: no cover - PyYAML built without LibYAML
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventParser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


from prodmanager.text import printable, text_problem
from prodrequest.spec import (
    KINDS,
    RUNNABLE_KINDS,
    MonteCarloWorkflow,
    ProcessingWorkflow,
    workflow_adapter,
)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_KEYS = 1000  # keys in one mapping
MAX_NODES = 100_000  # values in one YAML document (each costs Python objects while composing)
MAX_JSON_VALUES = 250_000  # values in one JSON body (a merged report names up to 100,000 files)
MAX_KEY_CHARS = 200
MAX_ERRORS = 50  # errors reported; the rest are counted
MAX_INT_DIGITS = 19  # longer digit strings are never converted (int() of 5,000 digits fails)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MULTILINE_KEYS = frozenset({"description"})  # top-level free text that may hold newlines and tabs
DOCUMENT = "(document)"


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a document: where, and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class WorkflowInvalid(ValueError):
    """The document is not a valid workflow; `errors` lists the first MAX_ERRORS problems found,
    `total` counts them all."""

    def __init__(self, errors: list[FieldError], total: int | None = None) -> None:
        self.total = max(total or 0, len(errors))
        self.errors = errors[:MAX_ERRORS]
        lines = [f"  {e}" for e in self.errors]
        if self.omitted:
            lines.append(f"  ... and {self.omitted} more error(s)")
        super().__init__("invalid workflow:\n" + "\n".join(lines))

    @property
    def omitted(self) -> int:
        return self.total - len(self.errors)


def load_workflow(
    data: bytes, content_type: str | None = None
) -> MonteCarloWorkflow | ProcessingWorkflow:
    """Parse and validate a workflow document; raises WorkflowInvalid with every error."""
    text = decode_document(data)
    document = parse_json(text) if _is_json(content_type) else parse_yaml(text)
    return validate_workflow(document)


def load_json(data: bytes) -> Any:
    """Parse a JSON body (UTF-8) and walk it; raises WorkflowInvalid naming each bad field."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(
            f"body is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None
    document = parse_json(text)
    check_document(document, multiline=frozenset())
    return document


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
    except _Refused as exc:
        raise WorkflowInvalid([FieldError(exc.path, exc.message)]) from None
    except yaml.YAMLError as exc:
        raise _invalid(f"malformed YAML: {printable(_yaml_problem(exc), 300)}") from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise _invalid(f"YAML document could not be read: {type(exc).__name__}") from None
    if len(documents) != 1:
        raise _invalid(f"expected exactly one YAML document, found {len(documents)}")
    return documents[0]


def parse_json(text: str) -> Any:
    _check_json_shape(text)
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicate_pairs,
            parse_int=_json_int,
            parse_constant=_NonFinite,
        )
    except _Refused as exc:
        raise WorkflowInvalid([FieldError(exc.path, exc.message)]) from None
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise _invalid(f"JSON document could not be read: {type(exc).__name__}") from None


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_DELTA = [0] * 256
_DELTA[ord("[")] = _DELTA[ord("{")] = 1
_DELTA[ord("]")] = _DELTA[ord("}")] = -1


def _check_json_shape(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, or more than MAX_JSON_VALUES values, before
    json.loads sees the text (its C scanner recurses once per level, and builds every value).
    Strings are cut out (the commas left separate values), then everything but brackets; two rounds
    of removing innermost pairs shrink ordinary documents to almost nothing, and a running sum
    over what is left (C iteration, no Python loop per character) gives the depth."""
    structure = _JSON_STRING.sub("", text)
    if structure.count(",") >= MAX_JSON_VALUES:
        raise _invalid(f"more than {MAX_JSON_VALUES} values")
    brackets = structure.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKETS)
    for _ in range(2):
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
    depth = max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)
    if depth + 2 > MAX_DEPTH:
        raise _invalid(f"nested more than {MAX_DEPTH} levels deep")


class _BigInt(str):
    """A digit string too long to be converted; the walk refuses it with its path."""


class _NonFinite(str):
    """JSON's NaN, Infinity or -Infinity; the walk refuses it with its path."""


def _json_int(text: str) -> int | _BigInt:
    return _BigInt(text) if _too_many_digits(text) else int(text)


def _too_many_digits(text: str) -> bool:
    return len(text.lstrip("+-").lstrip("0")) > MAX_INT_DIGITS


# --- the bounded walk ---------------------------------------------------------------------------


def check_document(document: Any, multiline: frozenset[str] = MULTILINE_KEYS) -> None:
    """Walk a parsed document without recursion; raise WorkflowInvalid naming every bad value.

    `multiline` names the top-level keys whose strings may hold newlines and tabs."""
    errors: list[FieldError] = []
    total = 0
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        parts, value = stack.pop()
        problem = _value_problem(value, parts, multiline)
        if problem is None and isinstance(value, dict):
            problem, children = _mapping_children(value, parts)
            stack.extend(reversed(children))
        elif problem is None and isinstance(value, list):
            if len(parts) >= MAX_DEPTH:
                problem = f"nested more than {MAX_DEPTH} levels deep"
            else:
                stack.extend((parts + (i,), item) for i, item in reversed(list(enumerate(value))))
        if problem is not None:
            total += 1
            if len(errors) < MAX_ERRORS:
                errors.append(FieldError(_path(list(parts)), problem))
    if total:
        raise WorkflowInvalid(errors, total)


def _mapping_children(
    value: dict[Any, Any], parts: tuple[Any, ...]
) -> tuple[str | None, list[tuple[tuple[Any, ...], Any]]]:
    if len(parts) >= MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep", []
    if len(value) > MAX_KEYS:
        return f"mapping has {len(value)} keys, more than the limit of {MAX_KEYS}", []
    children: list[tuple[tuple[Any, ...], Any]] = []
    for key, item in value.items():
        if not isinstance(key, str):
            shown = printable(str(key), 40)
            why = f"key {shown} is a {type(key).__name__}; mapping keys must be strings"
            children.append((parts + (shown,), _KeyProblem(why)))
        elif len(key) > MAX_KEY_CHARS or text_problem(key):
            why = text_problem(key) or f"key longer than {MAX_KEY_CHARS} characters"
            children.append((parts + (printable(key, 40),), _KeyProblem(f"bad key: {why}")))
        else:
            children.append((parts + (key,), item))
    return None, children


class _KeyProblem(str):
    """Stands in for the value of a refused key, so the walk reports it in document order."""


def _value_problem(value: Any, parts: tuple[Any, ...], multiline: frozenset[str]) -> str | None:
    if isinstance(value, _KeyProblem):
        return str(value)
    if isinstance(value, _BigInt):
        return f"integer of {len(value.lstrip('+-'))} digits is out of range ({INT_MIN}..{INT_MAX})"
    if isinstance(value, _NonFinite):
        return f"{value} is not a number; expected a finite number"
    if isinstance(value, str):
        return text_problem(value, multiline=bool(parts) and parts[0] in multiline)
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return None
        return f"integer out of range ({INT_MIN}..{INT_MAX})"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not allowed; expected a finite number"
    return f"unsupported value of type {type(value).__name__}"


def validate_workflow(document: Any) -> MonteCarloWorkflow | ProcessingWorkflow:
    """Validate a parsed document (a dict) against the workflow models."""
    if not isinstance(document, dict):
        got = "nothing" if document is None else type(document).__name__
        raise _invalid(f"expected a mapping of workflow fields at the top level, got {got}")
    check_document(document)
    errors: list[FieldError] = []
    kind = document.get("kind")
    if kind not in KINDS:
        errors.append(_kind_error(kind))
        # Still report everything else, judged against the kind the keys suggest.
        kind = "processing" if "input" in document else "montecarlo"
        document = {**document, "kind": kind}
    total = len(errors)
    try:
        workflow = workflow_adapter.validate_python(document)
    except ValidationError as exc:
        errors.extend(_field_errors(exc, KINDS[kind]))
        total += exc.error_count()
    if errors:
        raise WorkflowInvalid(errors, total)
    return workflow


def _kind_error(kind: Any) -> FieldError:
    expected = "expected one of: " + ", ".join(repr(k) for k in sorted(RUNNABLE_KINDS))
    if kind is None:
        return FieldError("kind", f"field required; {expected}")
    return FieldError("kind", f"unknown kind {kind!r}; {expected}")


def _field_errors(exc: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    """The first MAX_ERRORS errors (only these get the costlier messages)."""
    result = []
    for err in exc.errors(include_url=False)[:MAX_ERRORS]:
        loc = list(err["loc"])
        if loc and loc[0] in KINDS:
            loc = loc[1:]  # the discriminator tag pydantic prefixes
        path = _path(loc)
        result.append(FieldError(path, _message(err, model, loc)))
    return result


def _path(loc: list[Any]) -> str:
    path = ""
    for part in loc:
        shown = printable(str(part), MAX_KEY_CHARS)
        path += f"[{part}]" if isinstance(part, int) else (f".{shown}" if path else shown)
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
    return printable(repr(value), 60)


def _invalid(message: str) -> WorkflowInvalid:
    return WorkflowInvalid([FieldError(DOCUMENT, message)])


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


class _Refused(Exception):
    """A refusal found while parsing, with the path it concerns."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message)


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(printable(str(key), 60), f"duplicate key {printable(repr(key), 60)}")
        result[key] = value
    return result


class _Yaml12Resolver(BaseResolver):
    """YAML 1.2 core schema: no yes/no/on/off booleans, no sexagesimal or octal-by-zero numbers,
    no timestamps; `0x10`, `0o17` and `190:20:30` stay strings."""


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^[-+]?[0-9]+$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
):
    _Yaml12Resolver.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


class _StrictLoader(_EventParser, Composer, SafeConstructor, _Yaml12Resolver):
    """A safe loader with YAML 1.2 scalars that refuses, naming the path: aliases (billion-laughs
    documents), explicit tags, complex (non-scalar) keys, nesting deeper than MAX_DEPTH (checked
    before the recursive composer descends) and duplicate keys."""

    # Compose in Python (with the checks below), not in LibYAML's recursive C composer.
    check_node = Composer.check_node
    get_node = Composer.get_node
    get_single_node = Composer.get_single_node

    def __init__(self, stream: str) -> None:
        _EventParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _Yaml12Resolver.__init__(self)
        self._parts: list[Any] = []
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        part = index.value if isinstance(index, ScalarNode) else index
        if part is not None:
            self._parts.append(part)
        try:
            self._check_next(parent, index)
            return super().compose_node(parent, index)
        finally:
            if part is not None:
                self._parts.pop()

    def _check_next(self, parent: Any, index: Any) -> None:
        event = self.peek_event()
        line = f" (line {event.start_mark.line + 1})"
        if isinstance(event, yaml.AliasEvent):
            self._refuse(f"YAML aliases (*name) are not allowed{line}")
        key = isinstance(parent, MappingNode) and index is None
        if key and not isinstance(event, yaml.ScalarEvent):
            self._refuse(f"complex mapping key: keys must be plain strings{line}")
        if key and len(parent.value) >= MAX_KEYS:
            self._refuse(f"mapping has more than {MAX_KEYS} keys{line}")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(DOCUMENT, f"document has more than {MAX_NODES} values{line}")
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            self._refuse(f"YAML tags ({printable(tag, 40)}) are not allowed{line}")
        if isinstance(event, yaml.CollectionStartEvent) and len(self._parts) >= MAX_DEPTH:
            self._refuse(f"nested more than {MAX_DEPTH} levels deep{line}")

    def _refuse(self, message: str) -> None:
        raise _Refused(_path(list(self._parts)), message)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                shown = printable(repr(key), 60)
                raise _Refused(printable(str(key), 60), f"duplicate key {shown} at line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: SafeConstructor, node: ScalarNode) -> int | _BigInt:
    text = str(node.value)
    if _too_many_digits(text):
        return _BigInt(text)
    try:
        return int(text, 10)
    except ValueError:
        raise ConstructorError(None, None, f"not an integer: {text!r}", node.start_mark) from None


def _construct_float(loader: SafeConstructor, node: ScalarNode) -> float:
    text = str(node.value).lower().replace(".inf", "inf").replace(".nan", "nan")
    try:
        return float(text)
    except ValueError:
        raise ConstructorError(None, None, f"not a number: {text!r}", node.start_mark) from None


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _is_json(content_type: str | None) -> bool:
    return bool(content_type) and "json" in str(content_type).lower()
