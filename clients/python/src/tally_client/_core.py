"""What the sync and async clients share: building requests, the retry policy, reading answers.

Every API operation is a :class:`Call`: one ``httpx.Request``, built once per logical call (so a
transfer's id and an ``Idempotency-Key`` are the same on every retry), how to read its answer, and
whether sending it again is safe. The clients only send calls and sleep between attempts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from .errors import ConnectionFailed, OutcomeUnknown, TallyError, error_for
from .models import (
    Account,
    AuditEntry,
    Balance,
    BatchResult,
    Event,
    HistoryEntry,
    Ledger,
    Page,
    Reconciliation,
    ReconciliationRun,
    StatementImport,
    StatementSummary,
    Transfer,
    TransferOutcome,
    WhoAmI,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Attempts per logical call (the first one and the retries), unless the call says otherwise.
RETRY_ATTEMPTS = 4
#: The first backoff; it doubles on each retry, with jitter, up to RETRY_BACKOFF_MAX.
RETRY_BACKOFF_BASE = 0.1
#: The longest wait between two attempts (also caps ``Retry-After``).
RETRY_BACKOFF_MAX = 2.0
#: Seconds for connecting, and for each read and write.
DEFAULT_TIMEOUT = 30.0
#: Items per page when an iterator follows the cursor (the API allows 1 to 1,000).
PAGE_SIZE = 100
#: Reconciliation runs per page (the API allows 1 to 200).
RUNS_PAGE_SIZE = 50
#: How long an event stream may stay silent before it counts as dropped (the server sends
#: keep-alive comments every 15 s).
SSE_READ_TIMEOUT = 60.0
#: Reconnections of an event stream in a row without an event in between before it gives up.
SSE_RECONNECTS_MAX = 5
#: The first wait before reconnecting an event stream; it doubles up to RETRY_BACKOFF_MAX.
SSE_RECONNECT_BACKOFF = 0.2
#: HTTP statuses after which a call may be sent again (if it is safe to repeat; see Call.idempotent).
RETRY_STATUSES = frozenset({408, 429, 503})
#: Codes that say the request may have been applied: only an idempotent call is sent again.
MAYBE_APPLIED_CODES = frozenset({"outcome_unknown", "request_timeout"})

USER_AGENT = "tally-client-python/0.1"
Amount = Decimal | int | str


def new_id() -> uuid.UUID:
    """A new transfer id: a UUIDv7 (RFC 9562 §5.7), ordered by time like the ids Tally makes
    itself, so that the journal's index on ids grows at its end instead of everywhere.

    ``uuid.uuid7`` where Python has it (3.14+); the same layout otherwise: 48 bits of Unix
    milliseconds, the version, 74 random bits and the variant.
    """
    make = getattr(uuid, "uuid7", None)
    if make is not None:
        made: uuid.UUID = make()
        return made
    millis = time.time_ns() // 1_000_000 & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10))
    rand_a, rand_b = (rand >> 62) & 0xFFF, rand & ((1 << 62) - 1)
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def decimal_text(value: Amount, name: str = "amount") -> str:
    """An amount as the API's decimal string. Floats are refused: they cannot hold cents exactly."""
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a Decimal, int or decimal string, not {type(value).__name__}")
    if not isinstance(value, (Decimal, int, str)):
        raise TypeError(f"{name} must be a Decimal, int or decimal string, not {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{name} must be a finite number: {value!r}")
    return format(number, "f")


@dataclass(frozen=True)
class NewTransfer:
    """A transfer to make; its ``id`` is fixed when it is created, so every retry sends the same one."""

    from_: str
    to: str
    amount: Amount
    currency: str
    id: uuid.UUID = field(default_factory=new_id)
    pending: bool = False
    timeout_seconds: int | None = None
    expected_from_version: int | None = None
    expected_to_version: int | None = None
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        decimal_text(self.amount)  # refuse a float at once, not at send time

    def body(self) -> dict[str, Any]:
        """The JSON body the API takes (``from``/``to`` are ids or codes)."""
        body: dict[str, Any] = {
            "id": str(self.id),
            "from": str(self.from_),
            "to": str(self.to),
            "amount": decimal_text(self.amount),
            "currency": self.currency,
        }
        if self.pending:
            body["pending"] = True
        optional = {
            "timeout_seconds": self.timeout_seconds,
            "expected_from_version": self.expected_from_version,
            "expected_to_version": self.expected_to_version,
            "reference": self.reference,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical API call: the request (sent as is on every attempt) and how to read its answer."""

    request: httpx.Request
    parse: Callable[[httpx.Response], T]
    #: Sending it again after it may have been applied is safe (it has a transfer id or an
    #: Idempotency-Key, or only reads).
    idempotent: bool = True
    attempts: int = RETRY_ATTEMPTS
    #: What makes a retry safe, for OutcomeUnknown's message ("transfer id ...").
    retry_with: str = ""


def _model(kind: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: kind.model_validate_json(response.content)


def _transfer(response: httpx.Response) -> Transfer:
    transfer = Transfer.model_validate_json(response.content)
    if response.headers.get("idempotent-replayed") == "true":
        return transfer.model_copy(update={"replayed": True})
    return transfer


def _json_object(response: httpx.Response) -> dict[str, Any]:
    value = json.loads(response.content, parse_float=Decimal)
    if not isinstance(value, dict):
        raise TallyError(f"expected a JSON object, got {type(value).__name__}", code="unexpected_answer")
    return value


def _params(**params: Any) -> dict[str, str]:
    """Query parameters without the absent ones, as text."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError(f"{key} must be timezone-aware")
            value = value.isoformat()
        out[key] = str(value)
    return out


def _segment(value: str | uuid.UUID | dt.date) -> str:
    """A path segment: an id, a code (escaped) or a date."""
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return quote(text, safe="")


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1``: exponential with full jitter."""
    ceiling: float = min(RETRY_BACKOFF_MAX, RETRY_BACKOFF_BASE * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)


def _error_fields(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """The code, message and details of an error answer (also of one that is not the API's JSON)."""
    try:
        error = json.loads(response.content, parse_float=Decimal)["error"]
        return str(error["code"]), str(error.get("message", "")), dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200], {}


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def was_sent(error: httpx.TransportError) -> bool:
    """Whether the request may have reached the server before the error (so it may have been applied)."""
    return not isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol))


def raise_for(response: httpx.Response) -> None:
    """Raises the typed error of a non-2xx answer."""
    if response.is_success:
        return
    code, message, details = _error_fields(response)
    raise error_for(response.status_code, code, message, details, _retry_after(response))


class Core:
    """Builds every request of the API and reads every answer; holds no connection."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        self.headers = {"authorization": f"Bearer {api_key}", "user-agent": USER_AGENT, "accept": "application/json"}
        self.timeout = httpx.Timeout(timeout)

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        """A request to ``path`` (relative to the base URL), with the key and a timeout."""
        request = httpx.Request(
            method,
            self.base_url.join(path.lstrip("/")),
            params=params,
            json=json_body,
            content=content,
            headers={**self.headers, **(headers or {})},
        )
        request.extensions["timeout"] = (timeout or self.timeout).as_dict()
        return request

    # -- the retry policy -------------------------------------------------------------------

    def retry_delay(self, call: Call[Any], attempt: int, outcome: httpx.Response | httpx.TransportError) -> float | None:
        """Seconds to wait before sending ``call`` again after ``outcome``, or None to stop.

        Retries only what cannot apply twice: transport errors before sending, and 429 and 503
        answers that say nothing was written, for any call; transport errors after sending,
        408 and ``outcome_unknown`` only for idempotent calls (a transfer id, an
        Idempotency-Key, or a read).
        """
        if attempt + 1 >= call.attempts:
            return None
        if isinstance(outcome, httpx.TransportError):
            return backoff(attempt) if call.idempotent or not was_sent(outcome) else None
        if outcome.status_code not in RETRY_STATUSES:
            return None
        code = _error_fields(outcome)[0]
        if (code in MAYBE_APPLIED_CODES or outcome.status_code == 408) and not call.idempotent:
            return None
        return max(backoff(attempt), min(_retry_after(outcome) or 0.0, RETRY_BACKOFF_MAX))

    def finish(self, call: Call[T], outcome: httpx.Response | httpx.TransportError) -> T:
        """The call's result from its last outcome, or its typed error."""
        if isinstance(outcome, httpx.TransportError):
            where = f"{call.request.method} {call.request.url.path}"
            if not was_sent(outcome):
                raise ConnectionFailed(f"{where}: {outcome!r}; nothing was sent", code="connection_failed") from outcome
            retry = f" (with the same {call.retry_with})" if call.retry_with else ""
            raise OutcomeUnknown(
                f"{where}: the connection failed after the request was sent ({outcome!r}): it may or may not "
                f"have been applied; a retry{retry} is safe",
                code="outcome_unknown",
                details={"retry_with": call.retry_with},
            ) from outcome
        raise_for(outcome)
        return call.parse(outcome)

    # -- ledgers ----------------------------------------------------------------------------

    def create_ledger(
        self, code: str, name: str, metadata: Mapping[str, Any] | None, idempotency_key: str | None
    ) -> Call[Ledger]:
        key = idempotency_key or str(uuid.uuid4())
        body = {"code": code, "name": name, **({"metadata": dict(metadata)} if metadata is not None else {})}
        request = self.request("POST", "v1/ledgers", json_body=body, headers={"idempotency-key": key})
        return Call(request, _model(Ledger), retry_with=f"Idempotency-Key {key}")

    def list_ledgers(self) -> Call[Page[Ledger]]:
        return Call(self.request("GET", "v1/ledgers"), _model(Page[Ledger]))

    def get_ledger(self, id_or_code: str | int) -> Call[Ledger]:
        return Call(self.request("GET", f"v1/ledgers/{_segment(str(id_or_code))}"), _model(Ledger))

    # -- accounts ---------------------------------------------------------------------------

    def create_account(
        self,
        currency: str,
        *,
        code: str | None,
        id: uuid.UUID | None,
        ledger: str | int | None,
        overdraft_limit: Amount | None,
        unrestricted: bool,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Call[Account]:
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"currency": currency}
        if id is not None:
            body["id"] = str(id)
        if code is not None:
            body["code"] = code
        if ledger is not None:
            body["ledger"] = str(ledger)
        if overdraft_limit is not None:
            body["overdraft_limit"] = decimal_text(overdraft_limit, "overdraft_limit")
        if unrestricted:
            body["unrestricted"] = True
        if metadata is not None:
            body["metadata"] = dict(metadata)
        request = self.request("POST", "v1/accounts", json_body=body, headers={"idempotency-key": key})
        return Call(request, _model(Account), retry_with=f"Idempotency-Key {key}")

    def get_account(self, account: str | uuid.UUID) -> Call[Account]:
        return Call(self.request("GET", f"v1/accounts/{_segment(account)}"), _model(Account))

    def list_accounts(
        self, *, ledger: str | int | None, currency: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Call[Page[Account]]:
        params = _params(ledger=ledger, currency=currency, status=status, limit=limit, cursor=cursor)
        return Call(self.request("GET", "v1/accounts", params=params), _model(Page[Account]))

    def change_status(self, account: str | uuid.UUID, action: str, expected_version: int | None) -> Call[Account]:
        """Freeze, unfreeze or close. Not repeated after it may have been applied: a second
        freeze of a frozen account is refused, which would hide the first one's success."""
        body = {"expected_version": expected_version} if expected_version is not None else None
        request = self.request("POST", f"v1/accounts/{_segment(account)}/{action}", json_body=body)
        return Call(request, _model(Account), idempotent=False)

    def balance(self, account: str | uuid.UUID, as_of: dt.datetime | None) -> Call[Balance]:
        request = self.request("GET", f"v1/accounts/{_segment(account)}/balance", params=_params(as_of=as_of))
        return Call(request, _model(Balance))

    def history(self, account: str | uuid.UUID, *, limit: int, cursor: str | None) -> Call[Page[HistoryEntry]]:
        params = _params(limit=limit, cursor=cursor)
        request = self.request("GET", f"v1/accounts/{_segment(account)}/transfers", params=params)
        return Call(request, _model(Page[HistoryEntry]))

    # -- transfers --------------------------------------------------------------------------

    def transfer(self, transfer: NewTransfer, attempts: int) -> Call[Transfer]:
        request = self.request("POST", "v1/transfers", json_body=transfer.body())
        return Call(request, _transfer, attempts=attempts, retry_with=f"transfer id {transfer.id}")

    def batch(self, transfers: Sequence[NewTransfer], atomic: bool) -> Call[BatchResult]:
        body = {"transfers": [t.body() for t in transfers], "atomic": atomic}
        request = self.request("POST", "v1/transfers/batch", json_body=body)
        return Call(request, _model(BatchResult), retry_with="transfer ids")

    def act(
        self, transfer_id: str | uuid.UUID, action: str, new_id: uuid.UUID | None, amount: Amount | None
    ) -> Call[Transfer]:
        """Post, void or reverse. Without ``new_id`` the server derives the new transfer's id from
        the target and the action, so every retry (even from another process) names the same one."""
        body: dict[str, str] = {}
        if new_id is not None:
            body["id"] = str(new_id)
        if amount is not None:
            body["amount"] = decimal_text(amount)
        request = self.request("POST", f"v1/transfers/{_segment(transfer_id)}/{action}", json_body=body)
        return Call(request, _transfer, retry_with=f"{action} of transfer {transfer_id}")

    def get_transfer(self, transfer_id: str | uuid.UUID) -> Call[TransferOutcome]:
        return Call(self.request("GET", f"v1/transfers/{_segment(transfer_id)}"), _model(TransferOutcome))

    def list_transfers(
        self,
        *,
        account: str | uuid.UUID | None,
        ledger: str | int | None,
        status: str | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        limit: int,
        cursor: str | None,
    ) -> Call[Page[TransferOutcome]]:
        params = _params(
            account=account, ledger=ledger, status=status, since=since, until=until, limit=limit, cursor=cursor
        )
        return Call(self.request("GET", "v1/transfers", params=params), _model(Page[TransferOutcome]))

    # -- events and audit -------------------------------------------------------------------

    def events(self, *, after: int, limit: int, wait: int, ledger: str | int | None) -> Call[Page[Event]]:
        params = _params(after=after, limit=limit, wait=wait or None, ledger=ledger)
        timeout = httpx.Timeout(self.timeout.connect, read=wait + (self.timeout.read or DEFAULT_TIMEOUT)) if wait else None
        request = self.request("GET", "v1/events", params=params, timeout=timeout)
        return Call(request, _model(Page[Event]))

    def event_stream(self, after: int, ledger: str | int | None) -> httpx.Request:
        """The request that opens (or resumes, after event ``after``) the server-sent event stream."""
        headers = {"accept": "text/event-stream", "last-event-id": str(after), "cache-control": "no-store"}
        timeout = httpx.Timeout(self.timeout.connect, read=SSE_READ_TIMEOUT)
        return self.request("GET", "v1/events/stream", params=_params(ledger=ledger), headers=headers, timeout=timeout)

    def event_of(self, data: str) -> Event:
        """One server-sent event's data as an Event."""
        return Event.model_validate_json(data)

    def audit(self, *, after: int, limit: int) -> Call[Page[AuditEntry]]:
        return Call(self.request("GET", "v1/audit", params=_params(after=after, limit=limit)), _model(Page[AuditEntry]))

    # -- reconciliation and statements ------------------------------------------------------

    def run_reconciliation(self, date: dt.date, ledger: str | int | None) -> Call[Reconciliation]:
        body = {"date": date.isoformat(), **({"ledger": str(ledger)} if ledger is not None else {})}
        return Call(self.request("POST", "v1/reconciliations", json_body=body), _model(Reconciliation))

    def get_reconciliation(self, date: dt.date, ledger: str | int | None) -> Call[Reconciliation]:
        request = self.request("GET", f"v1/reconciliations/{_segment(date)}", params=_params(ledger=ledger))
        return Call(request, _model(Reconciliation))

    def list_reconciliations(
        self, *, ledger: str | int | None, limit: int, cursor: str | None
    ) -> Call[Page[ReconciliationRun]]:
        params = _params(ledger=ledger, limit=limit, cursor=cursor)
        return Call(self.request("GET", "v1/reconciliations", params=params), _model(Page[ReconciliationRun]))

    def import_statement(
        self,
        content: bytes,
        *,
        account: str | None,
        mapping: Mapping[str, str] | None,
        format: str | None,
        encoding: str | None,
        tolerance: Amount | None,
        date_window_days: int | None,
    ) -> Call[StatementImport]:
        """A statement is recorded once by its reference and content, so sending it again is safe."""
        params = _params(
            account=account,
            map=",".join(f"{bank}={tally}" for bank, tally in mapping.items()) if mapping else None,
            format=format,
            encoding=encoding,
            tolerance=decimal_text(tolerance, "tolerance") if tolerance is not None else None,
            date_window_days=date_window_days,
        )
        headers = {"content-type": "application/octet-stream"}
        request = self.request("POST", "v1/statements", params=params, content=content, headers=headers)
        return Call(request, _model(StatementImport), retry_with="statement file")

    def list_statements(
        self, *, ledger: str | int | None, account: str | None, limit: int, cursor: str | None
    ) -> Call[Page[StatementSummary]]:
        params = _params(ledger=ledger, account=account, limit=limit, cursor=cursor)
        return Call(self.request("GET", "v1/statements", params=params), _model(Page[StatementSummary]))

    def get_statement(self, statement_id: str | uuid.UUID, ledger: str | int | None) -> Call[dict[str, Any]]:
        request = self.request("GET", f"v1/statements/{_segment(statement_id)}", params=_params(ledger=ledger))
        return Call(request, _json_object)

    def whoami(self) -> Call[WhoAmI]:
        return Call(self.request("GET", "v1/whoami"), _model(WhoAmI))
