"""The seed document's ``TransactionProcessor`` and ``ReconciliationService``, over Tally's API.

A program written against the seed (psycopg2 and the SQL functions) changes its import and the
line that makes the processor, and nothing else::

    from tally_client.compat import TransactionProcessor, ReconciliationService  # was: from seed import ...
    tp = TransactionProcessor(base_url, api_key)                                 # was: TransactionProcessor(conn_str)
    svc = ReconciliationService(tp.conn)                                         # unchanged

Deliberate differences from the seed:

* ``get_account_balance`` returns the balance as a :class:`~decimal.Decimal`, not a float: a
  float cannot hold every amount of cents exactly. ``Decimal("12.34") == 12.34`` is False, so
  code that compares with float literals must compare with Decimals.
* ``user_id`` is not the audit actor (the API key is): it is kept as the transfer's
  ``claimed_user_id`` metadata, as Tally's SQL ``transfer_money`` does.
* Errors are :mod:`tally_client.errors` exceptions (``InsufficientFunds``, ``NotFound``, ...),
  not ``psycopg2.Error``; amounts must be Decimals, ints or decimal strings (a float is a TypeError).
* ``tp.conn`` is a :class:`~tally_client.TallyClient`; ``ReconciliationService`` takes it (or
  any TallyClient) where the seed took a psycopg2 connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import Decimal
from typing import Any

from ._core import Amount
from ._sync import TallyClient
from .errors import NotFound
from .models import HistoryEntry

__all__ = ["TransactionProcessor", "ReconciliationService"]

#: How long ``daily_reconciliation`` waits for a run that the server answered ``running``.
RECONCILIATION_WAIT_MAX = 300.0
#: How often it asks, meanwhile.
RECONCILIATION_POLL_INTERVAL = 1.0

HistoryRow = tuple[str, str, Decimal, str, str, dt.datetime]


def _compat_status(entry: HistoryEntry) -> str:
    """The seed's transaction status, as Tally's SQL view ``compat.transactions`` names it
    (migration 0002_compat.sql): money moved is ``success``."""
    transfer = entry.transfer
    if transfer.kind in ("posted", "post_pending", "reversal"):
        return "success"
    if transfer.kind == "void_pending":
        return "void"
    if transfer.status == "posted":
        return "captured"
    return transfer.status


class TransactionProcessor:
    """交易处理器: the seed's transaction processor, over Tally's API."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.conn = TallyClient(base_url, api_key)
        self.logger = logging.getLogger(__name__)
        self._currencies: dict[str, str] = {}

    def _currency(self, account_id: str) -> str:
        """An account's currency (it never changes, so it is asked once)."""
        if account_id not in self._currencies:
            self._currencies[account_id] = self.conn.get_account(account_id).currency
        return self._currencies[account_id]

    def transfer(self, from_account: Any, to_account: Any, amount: Amount, user_id: Any, max_retries: int = 3) -> str:
        """转账（带重试）: moves ``amount`` and returns the transfer id.

        One id is generated for the call and sent on each of at most ``max_retries`` attempts, so
        money moves at most once. A refusal (insufficient funds, unknown account, ...) is raised at
        once; an outcome still unknown after the last attempt raises OutcomeUnknown.
        """
        from_account, to_account = str(from_account), str(to_account)
        transfer = self.conn.transfer(
            from_account,
            to_account,
            amount,
            self._currency(from_account),
            metadata={"claimed_user_id": str(user_id)},
            max_attempts=max(1, max_retries),
        )
        self.logger.info(f"✅ 转账成功: {transfer.id}")
        return str(transfer.id)

    def get_account_balance(self, account_id: Any) -> dict[str, Any]:
        """查询账户余额: ``{'balance': Decimal, 'currency': str}``; ValueError("账户不存在") if unknown."""
        try:
            balance = self.conn.balance(str(account_id))
        except NotFound:
            raise ValueError("账户不存在") from None
        return {"balance": balance.balance, "currency": balance.currency}

    def get_transaction_history(self, account_id: Any, limit: int = 100) -> list[HistoryRow]:
        """查询交易历史: the newest ``limit`` transactions as the seed's tuples
        ``(transaction_id, 'debit'|'credit', amount, other_account, status, created_at)``."""
        page = self.conn.history_page(str(account_id), limit=limit)
        return [
            (
                str(entry.transfer.id),
                entry.direction,
                entry.transfer.amount,
                str(entry.other_account_id),
                _compat_status(entry),
                entry.transfer.created_at,
            )
            for entry in page.data
        ]


class ReconciliationService:
    """对账服务: the seed's daily reconciliation, run by Tally's end-of-day checks.

    Takes the client (``tp.conn``, or any :class:`~tally_client.TallyClient`) where the seed took
    a psycopg2 connection; the key must be an admin, operator or auditor key.
    """

    def __init__(self, conn: TallyClient) -> None:
        self.conn = conn
        self.logger = logging.getLogger(__name__)

    def daily_reconciliation(self, date: dt.date) -> bool:
        """日终对账: True when the day's reconciliation found nothing wrong.

        Runs ``POST /v1/reconciliations`` for ``date`` (a ledger day that has ended; the API
        answers ``day_not_closed`` otherwise) and waits for its report.
        """
        run = self.conn.run_reconciliation(date)
        deadline = time.monotonic() + RECONCILIATION_WAIT_MAX
        while run.status == "running" and time.monotonic() < deadline:
            time.sleep(RECONCILIATION_POLL_INTERVAL)
            run = self.conn.get_reconciliation(date)
        if not run.clean:
            findings = (run.report or {}).get("findings") or []
            self.logger.error(f"{date}对账发现问题: {run.status}, {len(findings)}项")
            return False
        self.logger.info(f"✅ {date}对账完成")
        return True
