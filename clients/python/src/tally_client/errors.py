"""Typed exceptions for the API's errors.

Every error answer of the Tally API is ``{"error": {"code", "message", "details"}}`` with a stable
``code`` (see ``crates/tally-server/src/error.rs`` and README "Errors"). :func:`error_for` turns an
answer into the exception of its kind; each carries the ``code``, the HTTP ``status``, the
``message`` and the ``details``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TallyError",
    "ValidationError",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "VersionConflict",
    "Rejected",
    "InsufficientFunds",
    "RateLimited",
    "Overloaded",
    "OutcomeUnknown",
    "ConnectionFailed",
    "ServerError",
    "error_for",
]


class TallyError(Exception):
    """An error answered by the API (or met on the way to it)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.details: dict[str, Any] = details or {}
        #: Seconds from ``Retry-After`` (429 and 503 answers), if the API sent it.
        self.retry_after = retry_after


class ValidationError(TallyError):
    """400: a malformed request (``invalid_amount``, ``invalid_body``, ``amount_invalid``, ...); nothing written."""


class Unauthorized(TallyError):
    """401 ``unauthenticated``: missing, malformed, unknown or revoked key."""


class Forbidden(TallyError):
    """403 ``forbidden`` or ``ledger_forbidden``: the key's role, accounts or ledgers do not allow it."""


class NotFound(TallyError):
    """404: ``account_not_found``, ``transfer_not_found``, ``currency_not_found``, ..."""


class Conflict(TallyError):
    """409: ``exists_with_different_fields``, ``account_code_taken``, ``day_not_closed``, ..."""


class VersionConflict(Conflict):
    """409 ``version_conflict`` or 412 ``precondition_failed``: an account moved on from the expected version."""


class Rejected(TallyError):
    """422: refused by a rule (a transfer's result code, ``account_not_empty``, ...)."""


class InsufficientFunds(Rejected):
    """422 ``insufficient_funds`` or ``overdraft_limit_exceeded``."""


class RateLimited(TallyError):
    """429 ``rate_limited``: nothing written; wait ``retry_after`` seconds."""


class Overloaded(TallyError):
    """503 ``overloaded``, ``shutting_down`` or ``database_unavailable``: nothing written; retry later."""


class OutcomeUnknown(TallyError):
    """The request may or may not have been applied.

    Raised for 503 ``outcome_unknown``, 408 ``request_timeout`` and transport errors after the
    request was sent, once the client's own retries are used up. Retrying with the same transfer
    id (or ``Idempotency-Key``, kept in ``details``) is safe: it is applied at most once.
    """


class ConnectionFailed(TallyError):
    """The server could not be reached; the request was never sent, so nothing was written."""


class ServerError(TallyError):
    """500 ``internal_error`` or ``database_error``: see the server log."""


_BY_CODE: dict[str, type[TallyError]] = {
    "version_conflict": VersionConflict,
    "precondition_failed": VersionConflict,
    "insufficient_funds": InsufficientFunds,
    "overdraft_limit_exceeded": InsufficientFunds,
    "outcome_unknown": OutcomeUnknown,
    "request_timeout": OutcomeUnknown,
    "rate_limited": RateLimited,
    "overloaded": Overloaded,
    "shutting_down": Overloaded,
    "database_unavailable": Overloaded,
}

_BY_STATUS: dict[int, type[TallyError]] = {
    400: ValidationError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: OutcomeUnknown,
    409: Conflict,
    412: VersionConflict,
    422: Rejected,
    429: RateLimited,
    503: Overloaded,
}


def error_for(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, retry_after: float | None = None
) -> TallyError:
    """The exception for an API error answer: by its code first, then by its HTTP status."""
    kind = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else TallyError)
    if kind is OutcomeUnknown:
        message = f"{message} (the request may or may not have been applied; a retry with the same id is safe)"
    return kind(message, code=code, status=status, details=details, retry_after=retry_after)
