"""The asynchronous client: sends the shared core's calls with an ``httpx.AsyncClient``."""

from __future__ import annotations

import datetime as dt
import itertools
import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from . import _core
from ._core import PAGE_SIZE, RUNS_PAGE_SIZE, Amount, Call, Core, NewTransfer
from .errors import ConnectionFailed, Overloaded, RateLimited
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


class AsyncTallyClient:
    """An asyncio client for Tally's REST API v1: :class:`TallyClient`'s methods, awaited.

    ``AsyncTallyClient("http://127.0.0.1:8080", "tly_...")``; use it as an async context manager or
    await :meth:`aclose`. ``transport`` is handed to ``httpx.AsyncClient`` (for tests, proxies, mounts).
    Every call is retried with backoff on transport errors, 408, 429 and 503 when that is safe
    (see :meth:`tally_client._core.Core.retry_delay`); a transfer keeps its id on every retry.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = Core(base_url, api_key, timeout=timeout)
        self._http = httpx.AsyncClient(transport=transport)

    async def __aenter__(self) -> AsyncTallyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        for attempt in itertools.count():
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._http.send(call.request)
            except httpx.TransportError as error:
                outcome = error
            delay = self._core.retry_delay(call, attempt, outcome)
            if delay is None:
                return self._core.finish(call, outcome)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    async def _follow(fetch: Callable[[str | None], Awaitable[Page[T]]], cursor: str | None = None) -> AsyncIterator[T]:
        while True:
            page = await fetch(cursor)
            for item in page.data:
                yield item
            if not page.next_cursor or not page.data:
                return
            cursor = page.next_cursor

    # -- ledgers ----------------------------------------------------------------------------

    async def create_ledger(
        self, code: str, name: str, *, metadata: Mapping[str, Any] | None = None, idempotency_key: str | None = None
    ) -> Ledger:
        """Makes a ledger (admin key); an existing one with the same fields is returned as is."""
        return await self._run(self._core.create_ledger(code, name, metadata, idempotency_key))

    async def list_ledgers(self) -> list[Ledger]:
        """Every ledger the key may see."""
        return (await self._run(self._core.list_ledgers())).data

    async def get_ledger(self, id_or_code: str | int) -> Ledger:
        """One ledger, by id or code."""
        return await self._run(self._core.get_ledger(id_or_code))

    # -- accounts ---------------------------------------------------------------------------

    async def create_account(
        self,
        currency: str,
        *,
        code: str | None = None,
        id: uuid.UUID | None = None,
        ledger: str | int | None = None,
        overdraft_limit: Amount | None = None,
        unrestricted: bool = False,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Account:
        """Opens an account (sent with an ``Idempotency-Key``, generated once if not given)."""
        return await self._run(
            self._core.create_account(
                currency,
                code=code,
                id=id,
                ledger=ledger,
                overdraft_limit=overdraft_limit,
                unrestricted=unrestricted,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    async def get_account(self, account: str | uuid.UUID) -> Account:
        """An account by id or code, with its balances and version."""
        return await self._run(self._core.get_account(account))

    async def list_accounts(
        self,
        *,
        ledger: str | int | None = None,
        currency: str | None = None,
        status: str | None = None,
        limit: int = PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[Account]:
        """One page of accounts; pass ``next_cursor`` as ``cursor`` for the next one."""
        return await self._run(
            self._core.list_accounts(ledger=ledger, currency=currency, status=status, limit=limit, cursor=cursor)
        )

    def iter_accounts(
        self,
        *,
        ledger: str | int | None = None,
        currency: str | None = None,
        status: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[Account]:
        """Every account, following the cursor page by page."""
        return self._follow(
            lambda cursor: self.list_accounts(
                ledger=ledger, currency=currency, status=status, limit=page_size, cursor=cursor
            )
        )

    async def freeze(self, account: str | uuid.UUID, *, expected_version: int | None = None) -> Account:
        """Freezes an account: no transfer may touch it until it is unfrozen."""
        return await self._run(self._core.change_status(account, "freeze", expected_version))

    async def unfreeze(self, account: str | uuid.UUID, *, expected_version: int | None = None) -> Account:
        """Unfreezes a frozen account."""
        return await self._run(self._core.change_status(account, "unfreeze", expected_version))

    async def close_account(self, account: str | uuid.UUID, *, expected_version: int | None = None) -> Account:
        """Closes an account (its balance must be zero)."""
        return await self._run(self._core.change_status(account, "close", expected_version))

    async def balance(self, account: str | uuid.UUID, *, as_of: dt.datetime | None = None) -> Balance:
        """The balance now, or as of a past (timezone-aware) time."""
        return await self._run(self._core.balance(account, as_of))

    async def history_page(
        self, account: str | uuid.UUID, *, limit: int = PAGE_SIZE, cursor: str | None = None
    ) -> Page[HistoryEntry]:
        """One page of an account's history, newest first."""
        return await self._run(self._core.history(account, limit=limit, cursor=cursor))

    def history(self, account: str | uuid.UUID, *, page_size: int = PAGE_SIZE) -> AsyncIterator[HistoryEntry]:
        """An account's whole history, newest first, following the cursor."""
        return self._follow(lambda cursor: self.history_page(account, limit=page_size, cursor=cursor))

    # -- transfers --------------------------------------------------------------------------

    async def transfer(
        self,
        from_: str | uuid.UUID,
        to: str | uuid.UUID,
        amount: Amount,
        currency: str,
        *,
        id: uuid.UUID | None = None,
        pending: bool = False,
        timeout_seconds: int | None = None,
        expected_from_version: int | None = None,
        expected_to_version: int | None = None,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_attempts: int = _core.RETRY_ATTEMPTS,
    ) -> Transfer:
        """Moves ``amount`` from ``from_`` to ``to`` (ids or codes).

        The id is generated once (unless given) and sent on every retry, so money moves at most
        once. ``transfer.replayed`` is True when the id had been applied before.
        """
        new = NewTransfer(
            str(from_),
            str(to),
            amount,
            currency,
            id=id or _core.new_id(),
            pending=pending,
            timeout_seconds=timeout_seconds,
            expected_from_version=expected_from_version,
            expected_to_version=expected_to_version,
            reference=reference,
            metadata=metadata,
        )
        return await self._run(self._core.transfer(new, max_attempts))

    async def hold(
        self,
        from_: str | uuid.UUID,
        to: str | uuid.UUID,
        amount: Amount,
        currency: str,
        *,
        timeout_seconds: int | None = None,
        id: uuid.UUID | None = None,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Transfer:
        """A pending transfer: reserves ``amount`` until it is posted, voided or expires."""
        return await self.transfer(
            from_,
            to,
            amount,
            currency,
            id=id,
            pending=True,
            timeout_seconds=timeout_seconds,
            reference=reference,
            metadata=metadata,
        )

    async def batch(self, transfers: Sequence[NewTransfer], *, atomic: bool = False) -> BatchResult:
        """Up to 8,190 transfers in one request; with ``atomic`` all or none are applied."""
        return await self._run(self._core.batch(transfers, atomic))

    async def post(
        self, transfer_id: str | uuid.UUID, *, amount: Amount | None = None, id: uuid.UUID | None = None
    ) -> Transfer:
        """Posts a pending transfer: all of it, or ``amount`` (the rest is released)."""
        return await self._run(self._core.act(transfer_id, "post", id, amount))

    async def void(self, transfer_id: str | uuid.UUID, *, id: uuid.UUID | None = None) -> Transfer:
        """Voids a pending transfer."""
        return await self._run(self._core.act(transfer_id, "void", id, None))

    async def reverse(self, transfer_id: str | uuid.UUID, *, id: uuid.UUID | None = None) -> Transfer:
        """Reverses a posted transfer with a new transfer the other way."""
        return await self._run(self._core.act(transfer_id, "reverse", id, None))

    async def get_transfer(self, transfer_id: str | uuid.UUID) -> TransferOutcome:
        """An applied transfer, or the rule that refused the id."""
        return await self._run(self._core.get_transfer(transfer_id))

    async def list_transfers(
        self,
        *,
        account: str | uuid.UUID | None = None,
        ledger: str | int | None = None,
        status: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[TransferOutcome]:
        """One page of the journal, newest first."""
        return await self._run(
            self._core.list_transfers(
                account=account, ledger=ledger, status=status, since=since, until=until, limit=limit, cursor=cursor
            )
        )

    def iter_transfers(
        self,
        *,
        account: str | uuid.UUID | None = None,
        ledger: str | int | None = None,
        status: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[TransferOutcome]:
        """The journal, newest first, following the cursor."""
        return self._follow(
            lambda cursor: self.list_transfers(
                account=account, ledger=ledger, status=status, since=since, until=until, limit=page_size, cursor=cursor
            )
        )

    # -- events and audit -------------------------------------------------------------------

    async def events(
        self, *, after: int = 0, limit: int = PAGE_SIZE, wait: int = 0, ledger: str | int | None = None
    ) -> Page[Event]:
        """Events after sequence number ``after``; ``wait`` (≤ 30 s) long-polls for new ones."""
        return await self._run(self._core.events(after=after, limit=limit, wait=wait, ledger=ledger))

    async def stream_events(self, *, after: int = 0, ledger: str | int | None = None) -> AsyncGenerator[Event, None]:
        """Events after ``after`` as they come (server-sent events), forever.

        Remembers the last event's id and, when the connection drops or the server ends the
        stream, reconnects with it as ``Last-Event-ID``: no event is lost or repeated. Gives up
        with :class:`ConnectionFailed` after ``SSE_RECONNECTS_MAX`` reconnections in a row
        without an event. Close the generator to stop.
        """
        last, failures = after, 0
        while True:
            try:
                response = await self._http.send(self._core.event_stream(last, ledger), stream=True)
                try:
                    if not response.is_success:
                        await response.aread()
                        _core.raise_for(response)
                    async for sse in EventSource(response).aiter_sse():
                        if sse.data:
                            event = self._core.event_of(sse.data)
                            last, failures = event.seq, 0
                            yield event
                finally:
                    await response.aclose()
            except (httpx.TransportError, Overloaded, RateLimited) as error:
                cause: Exception = error
            else:
                cause = ConnectionFailed("the server ended the event stream", code="stream_ended")
            failures += 1
            if failures > _core.SSE_RECONNECTS_MAX:
                raise ConnectionFailed(f"event stream: {failures - 1} reconnections failed", code="stream_failed") from cause
            await asyncio.sleep(min(_core.SSE_RECONNECT_BACKOFF * 2 ** (failures - 1), _core.RETRY_BACKOFF_MAX))

    async def audit(self, *, after: int = 0, limit: int = PAGE_SIZE) -> Page[AuditEntry]:
        """Audit rows after ``after``, oldest first (admin and auditor keys)."""
        return await self._run(self._core.audit(after=after, limit=limit))

    # -- reconciliation and statements ------------------------------------------------------

    async def run_reconciliation(self, date: dt.date, *, ledger: str | int | None = None) -> Reconciliation:
        """Closes and checks a ledger day (it must have ended a minute ago); ``status`` ``running``
        means it takes longer than the server waits: read it later with :meth:`get_reconciliation`."""
        return await self._run(self._core.run_reconciliation(date, ledger))

    async def get_reconciliation(self, date: dt.date, *, ledger: str | int | None = None) -> Reconciliation:
        """A day's latest reconciliation report."""
        return await self._run(self._core.get_reconciliation(date, ledger))

    async def list_reconciliations(
        self, *, ledger: str | int | None = None, limit: int = RUNS_PAGE_SIZE, cursor: str | None = None
    ) -> Page[ReconciliationRun]:
        """End-of-day runs, newest first (without their reports)."""
        return await self._run(self._core.list_reconciliations(ledger=ledger, limit=limit, cursor=cursor))

    async def import_statement(
        self,
        content: bytes,
        *,
        account: str | None = None,
        mapping: Mapping[str, str] | None = None,
        format: str | None = None,
        encoding: str | None = None,
        tolerance: Amount | None = None,
        date_window_days: int | None = None,
    ) -> StatementImport:
        """Imports a camt.05x or MT940 file and matches it against the journal."""
        return await self._run(
            self._core.import_statement(
                content,
                account=account,
                mapping=mapping,
                format=format,
                encoding=encoding,
                tolerance=tolerance,
                date_window_days=date_window_days,
            )
        )

    async def list_statements(
        self,
        *,
        ledger: str | int | None = None,
        account: str | None = None,
        limit: int = PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[StatementSummary]:
        """Imported statements, newest first."""
        return await self._run(self._core.list_statements(ledger=ledger, account=account, limit=limit, cursor=cursor))

    async def get_statement(self, statement_id: str | uuid.UUID, *, ledger: str | int | None = None) -> dict[str, Any]:
        """A statement's (or a whole file's) report, as JSON."""
        return await self._run(self._core.get_statement(statement_id, ledger))

    async def whoami(self) -> WhoAmI:
        """The calling key: name, role, audit actor, ledgers and accounts."""
        return await self._run(self._core.whoami())
