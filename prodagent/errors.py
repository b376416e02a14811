"""The agent's exception tree."""

from __future__ import annotations

from pydantic import ValidationError


class ProdAgentError(Exception):
    """Base of every prodagent error."""


class ConfigError(ProdAgentError):
    """The configuration is invalid; the message names the key (and the file)."""

    @classmethod
    def from_validation(
        cls, exc: ValidationError, prefix: str = "", source: str | None = None
    ) -> ConfigError:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {loc or '(top level)'}: {what}")
        head = f"invalid configuration in {source}:" if source else "invalid configuration:"
        return cls("\n".join([head, *lines]))


class DatabaseUnavailable(ProdAgentError):
    """The database could not be reached after the configured retries."""


class DatabaseUnsupported(ProdAgentError):
    """The database server is of a version the agent cannot run on."""


class IllegalTransition(ProdAgentError):
    """A state change that the transition table does not allow."""
