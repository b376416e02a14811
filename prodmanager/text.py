"""What text may hold when it crosses the door: real Unicode, no control characters.

One place for the rule, used by the workflow loader (every string of a document) and by the wire
models (reasons, names, checksums). Control characters include terminal escapes (ESC, CSI);
bidirectional overrides and line separators are refused too, since they make text display as
something other than what it holds. Newline and tab may be allowed for multi-line free text.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls, DEL, line/paragraph separators, bidi embeddings/overrides/isolates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_EXCEPT_NL_TAB = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def text_problem(value: str, multiline: bool = False) -> str | None:
    """Why `value` may not be stored, or None when it is fine."""
    found = _SURROGATE.search(value)
    if found:
        return (
            f"not valid Unicode: lone surrogate U+{ord(found.group()):04X} at character "
            f"{found.start()}"
        )
    found = (_CONTROL_EXCEPT_NL_TAB if multiline else _CONTROL).search(value)
    if found:
        allowed = " (newline and tab are allowed)" if multiline else ""
        return (
            f"control character U+{ord(found.group()):04X} at character {found.start()} is not "
            f"allowed{allowed}"
        )
    return None


def _single_line(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _multi_line(value: str) -> str:
    problem = text_problem(value, multiline=True)
    if problem:
        raise ValueError(problem)
    return value


SafeLine = Annotated[str, AfterValidator(_single_line)]
SafeMultiline = Annotated[str, AfterValidator(_multi_line)]


def printable(value: str, limit: int = 80) -> str:
    """`value` for a message: control characters and surrogates escaped, long text shortened."""
    shown = value if len(value) <= limit else value[: limit - 3] + "..."
    if text_problem(shown) is None:
        return shown
    return shown.encode("unicode_escape", "backslashreplace").decode("ascii")


def one_line(value: str, limit: int = 500) -> str:
    """`value` made acceptable as a single-line field (for clients that pass on text they did
    not write, such as a job's failure reason): controls become spaces, surrogates `?`."""
    cleaned = _CONTROL.sub(" ", _SURROGATE.sub("?", value))
    return " ".join(cleaned.split())[:limit]
