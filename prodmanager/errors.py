"""ProdManager's exception tree; each error carries the HTTP status and code it maps to."""

from __future__ import annotations

from typing import Any


class ProdManagerError(Exception):
    """Base of every ProdManager error."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.message, **self.details}


class Unauthorized(ProdManagerError):
    """Missing or unknown bearer token."""

    status = 401
    code = "unauthorized"


class Forbidden(ProdManagerError):
    """The token's role or owner does not allow this action."""

    status = 403
    code = "forbidden"


class NotFound(ProdManagerError):
    """No such object."""

    status = 404
    code = "not_found"


class Conflict(ProdManagerError):
    """The action conflicts with the current state."""

    status = 409
    code = "conflict"


class IllegalTransition(Conflict):
    """The request state machine does not allow this change."""

    code = "illegal_transition"


class LeaseLost(Conflict):
    """The lease token is no longer valid: the lease expired and the work went elsewhere, the
    request was aborted, or the allocation is already finished."""

    code = "lease_lost"


class InvalidInput(ProdManagerError):
    """The input is not valid; `errors` lists each problem with its field path."""

    status = 422
    code = "invalid"
