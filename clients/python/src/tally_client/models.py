"""What the API answers, as typed, immutable Pydantic models.

Amounts are :class:`decimal.Decimal`, parsed from the API's decimal strings (never through a
float); ids are :class:`uuid.UUID`; times are timezone-aware :class:`datetime.datetime`.
Fields the API adds later are ignored, so an older client keeps working.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Account",
    "Balance",
    "Transfer",
    "TransferOutcome",
    "BatchResult",
    "HistoryEntry",
    "Page",
    "Event",
    "Ledger",
    "Reconciliation",
    "ReconciliationRun",
    "StatementImport",
    "StatementSummary",
    "AuditEntry",
    "WhoAmI",
]

T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Account(_Model):
    """An account and its balances (``GET /v1/accounts/{id}``)."""

    id: UUID
    ledger: int
    code: str | None
    currency: str
    status: Literal["active", "frozen", "closed"]
    balance: Decimal
    available: Decimal
    debits_posted: Decimal
    credits_posted: Decimal
    debits_pending: Decimal
    credits_pending: Decimal
    overdraft_limit: Decimal | None
    unrestricted: bool
    version: int
    metadata: dict[str, Any] | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class Balance(_Model):
    """A balance now (with ``version``), or as of a past time (with ``as_of`` and ``snapshot_day``)."""

    account_id: UUID
    currency: str
    balance: Decimal
    available: Decimal
    debits_pending: Decimal
    credits_pending: Decimal
    version: int | None = None
    as_of: dt.datetime | None = None
    snapshot_day: dt.date | None = None


class Transfer(_Model):
    """A transfer in the journal. ``from_`` is the debit account, ``to`` the credit account."""

    id: UUID
    ledger: int
    kind: Literal["posted", "pending", "post_pending", "void_pending", "reversal"]
    status: Literal["posted", "pending", "voided", "expired"]
    from_: UUID = Field(alias="from")
    to: UUID
    amount: Decimal
    currency: str
    related_id: UUID | None = None
    timeout_seconds: int | None = None
    expires_at: dt.datetime | None = None
    reference: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: dt.datetime
    completed_at: dt.datetime | None = None
    #: True when the API answered with a transfer already applied under this id (a replay).
    replayed: bool = False


class TransferOutcome(_Model):
    """A transfer id's outcome: ``result`` is ``ok``, ``exists`` or the code of the rule that refused it."""

    id: UUID
    result: str
    status: int
    transfer: Transfer | None = None

    @property
    def ok(self) -> bool:
        """Whether the transfer is applied (now or before)."""
        return self.result in ("ok", "exists")


class BatchResult(_Model):
    """The answer to a batch: one outcome per transfer, in order."""

    results: list[TransferOutcome]
    #: How many transfers this request applied (not counting replays).
    applied: int


class HistoryEntry(_Model):
    """One line of an account's history: ``debit`` when money left the account."""

    direction: Literal["debit", "credit"]
    other_account_id: UUID
    actor: str
    transfer: Transfer


class Page(_Model, Generic[T]):
    """One page of a listing; ``next_cursor`` is absent on the last page."""

    data: list[T]
    next_cursor: str | None = None


class Event(_Model):
    """One event of the outbox, in commit order (``seq`` is gap-free)."""

    seq: int
    at: dt.datetime
    type: str
    entity_id: str
    ledger: int | None = None
    #: The transfer or account as the API shows them elsewhere (amounts as decimal strings), or counts and ids.
    payload: Any = None


class Ledger(_Model):
    """A set of books: every account belongs to one; a transfer stays inside one."""

    id: int
    code: str
    name: str
    metadata: dict[str, Any] | None = None
    created_at: dt.datetime
    created_by: str


class Reconciliation(_Model):
    """An end-of-day run: ``running``, finished (``clean`` or with findings) or failed."""

    run_id: UUID
    day: dt.date
    status: str
    report: dict[str, Any] | None = None
    error: str | None = None

    @property
    def clean(self) -> bool:
        """Whether the run finished and found nothing wrong."""
        return self.status == "clean"


class ReconciliationRun(_Model):
    """An end-of-day run in the list of runs (newest first), without its report."""

    run_id: UUID
    day: dt.date
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    findings: int | None = None
    actor: str


class StatementImport(_Model):
    """The report of an imported bank statement file (``created`` is False for a file imported before)."""

    file_id: UUID
    statement_id: UUID | None = None
    created: bool
    report: dict[str, Any]


class StatementSummary(_Model):
    """An imported statement in a listing, with the outcome of its matching."""

    id: UUID
    ledger: int
    account_id: UUID
    account_code: str | None = None
    format: str
    statement_ref: str
    bank_account: str
    currency: str
    opening_date: dt.date | None = None
    opening: Decimal | None = None
    closing_date: dt.date | None = None
    closing: Decimal | None = None
    entries: int
    file_id: UUID | None = None
    imported_at: dt.datetime
    imported_by: str
    status: str | None = None
    findings: int | None = None


class AuditEntry(_Model):
    """One row of the audit trail (oldest first)."""

    id: int
    at: dt.datetime
    actor: str
    db_user: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class WhoAmI(_Model):
    """The calling key: its name, role, audit actor, and the ledgers and accounts it is scoped to."""

    name: str
    role: str
    actor: str
    ledgers: list[Any] = []
    accounts: list[Any] = []
