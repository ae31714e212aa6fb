"""Transfers against a real server: exact Decimal balances, double entry, idempotent retries, holds, batches."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from decimal import Decimal

import httpx
import pytest
from conftest import Tally, unique

from tally_client import (
    InsufficientFunds,
    NewTransfer,
    OutcomeUnknown,
    Rejected,
    TallyClient,
    VersionConflict,
)


def balances(client: TallyClient, *accounts: str) -> list[Decimal]:
    return [client.balance(account).balance for account in accounts]


def test_balances_are_exact_decimals_and_every_transfer_balances(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    bank, alice, bob = funded
    before = sum(balances(admin, bank, alice, bob))
    for amount in ("0.10", "0.20", "33.33", "0.01"):
        admin.transfer(alice, bob, Decimal(amount), "USD")
    transfer = admin.transfer(bob, alice, "1.05", "USD", reference="change")
    assert transfer.amount == Decimal("1.05") and isinstance(transfer.amount, Decimal)
    assert balances(admin, bank, alice, bob) == [Decimal("-100.00"), Decimal("67.41"), Decimal("32.59")]
    assert sum(balances(admin, bank, alice, bob)) == before == Decimal("0")
    account = admin.get_account(alice)
    assert (account.debits_posted, account.credits_posted) == (Decimal("33.64"), Decimal("101.05"))


def test_a_float_amount_is_refused_before_anything_is_sent(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    with pytest.raises(TypeError, match="float"):
        admin.transfer(alice, bob, 1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NewTransfer(alice, bob, 0.1, "USD")  # type: ignore[arg-type]
    assert balances(admin, alice, bob) == [Decimal("100.00"), Decimal("0.00")]


def test_the_same_id_twice_moves_money_once(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    transfer_id = uuid.uuid4()
    first = admin.transfer(alice, bob, Decimal("25.00"), "USD", id=transfer_id)
    again = admin.transfer(alice, bob, Decimal("25.00"), "USD", id=transfer_id)
    assert (first.id, first.replayed) == (transfer_id, False)
    assert (again.id, again.replayed) == (transfer_id, True)
    assert balances(admin, alice, bob) == [Decimal("75.00"), Decimal("25.00")]


class DropFirstAnswer(httpx.BaseTransport):
    """Sends each request to the server, but loses the answer to the first POST: the request was
    applied, and the client sees only a transport error."""

    def __init__(self, drops: int = 1) -> None:
        self.inner = httpx.HTTPTransport()
        self.drops = drops
        self.bodies: list[dict[str, object]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST":
            self.bodies.append(json.loads(request.content))
            if self.drops > 0:
                self.drops -= 1
                response.read()
                response.close()
                raise httpx.ReadError("the test dropped the answer", request=request)
        return response


def test_a_retry_after_a_lost_answer_reuses_the_id_and_moves_money_once(
    tally: Tally, admin: TallyClient, funded: tuple[str, str, str]
) -> None:
    _, alice, bob = funded
    transport = DropFirstAnswer()
    with TallyClient(tally.url, tally.admin_key, transport=transport) as client:
        transfer = client.transfer(alice, bob, Decimal("40.00"), "USD")
    assert len(transport.bodies) == 2
    assert transport.bodies[0] == transport.bodies[1]
    assert transport.bodies[0]["id"] == str(transfer.id)
    assert transfer.replayed, "the retry found the transfer its lost first attempt applied"
    assert balances(admin, alice, bob) == [Decimal("60.00"), Decimal("40.00")]


def test_a_lost_answer_without_retries_is_outcome_unknown_and_says_a_retry_is_safe(
    tally: Tally, admin: TallyClient, funded: tuple[str, str, str]
) -> None:
    _, alice, bob = funded
    transport = DropFirstAnswer()
    transfer_id = uuid.uuid4()
    with TallyClient(tally.url, tally.admin_key, transport=transport) as client:
        with pytest.raises(OutcomeUnknown) as raised:
            client.transfer(alice, bob, Decimal("5.00"), "USD", id=transfer_id, max_attempts=1)
        assert raised.value.code == "outcome_unknown"
        assert f"same transfer id {transfer_id}" in str(raised.value) and "safe" in str(raised.value)
        # It had been applied; the caller's own retry with the same id is recognised.
        assert client.transfer(alice, bob, Decimal("5.00"), "USD", id=transfer_id).replayed
    assert balances(admin, alice, bob) == [Decimal("95.00"), Decimal("5.00")]


def test_refusals_are_typed_with_their_codes(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    with pytest.raises(InsufficientFunds) as raised:
        admin.transfer(alice, bob, Decimal("100.01"), "USD")
    error = raised.value
    assert (error.code, error.status) == ("insufficient_funds", 422)
    refused_id = error.details["transfer_id"]
    # The refusal is recorded under its id.
    outcome = admin.get_transfer(refused_id)
    assert (outcome.result, outcome.transfer, outcome.ok) == ("insufficient_funds", None, False)
    with pytest.raises(VersionConflict) as stale:
        admin.transfer(alice, bob, Decimal("1.00"), "USD", expected_from_version=1)
    assert (stale.value.code, stale.value.status) == ("version_conflict", 409)
    assert balances(admin, alice, bob) == [Decimal("100.00"), Decimal("0.00")]


def test_hold_then_post_part_void_and_reverse(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    hold = admin.hold(alice, bob, Decimal("40.00"), "USD", timeout_seconds=3600)
    assert (hold.kind, hold.status) == ("pending", "pending")
    held = admin.balance(alice)
    assert (held.balance, held.available, held.debits_pending) == (Decimal("100.00"), Decimal("60.00"), Decimal("40.00"))
    posted = admin.post(hold.id, amount=Decimal("25.00"))
    assert (posted.kind, posted.related_id, posted.amount) == ("post_pending", hold.id, Decimal("25.00"))
    assert admin.post(hold.id, amount=Decimal("25.00")).replayed, "a retried post is recognised (derived id)"
    assert balances(admin, alice, bob) == [Decimal("75.00"), Decimal("25.00")]
    assert admin.balance(alice).available == Decimal("75.00")

    second = admin.hold(alice, bob, Decimal("10.00"), "USD", timeout_seconds=3600)
    voided = admin.void(second.id)
    assert (voided.kind, voided.related_id) == ("void_pending", second.id)
    with pytest.raises(Rejected) as twice:
        admin.post(second.id)
    assert twice.value.code == "pending_already_voided"

    moved = admin.transfer(alice, bob, Decimal("5.00"), "USD")
    reversal = admin.reverse(moved.id)
    assert (reversal.kind, reversal.from_, reversal.to) == ("reversal", moved.to, moved.from_)
    assert balances(admin, alice, bob) == [Decimal("75.00"), Decimal("25.00")]
    assert admin.get_transfer(hold.id).transfer is not None


def test_batch_atomic_applies_all_or_none(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    good = [NewTransfer(alice, bob, Decimal("1.00"), "USD"), NewTransfer(bob, alice, Decimal("0.50"), "USD")]
    result = admin.batch(good, atomic=True)
    assert result.applied == 2 and [r.result for r in result.results] == ["ok", "ok"]
    assert [r.id for r in result.results] == [t.id for t in good]
    assert admin.batch(good, atomic=True).applied == 0, "the same ids again apply nothing"

    bad = [NewTransfer(alice, bob, Decimal("2.00"), "USD"), NewTransfer(bob, alice, Decimal("999.00"), "USD")]
    refused = admin.batch(bad, atomic=True)
    assert refused.applied == 0
    assert [r.result for r in refused.results] == ["linked_chain_failed", "insufficient_funds"]
    assert balances(admin, alice, bob) == [Decimal("99.50"), Decimal("0.50")]


def test_history_follows_the_cursor_newest_first(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    made = [admin.transfer(alice, bob, Decimal(f"{i}.00"), "USD").id for i in range(1, 6)]
    first = admin.history_page(alice, limit=2)
    assert len(first.data) == 2 and first.next_cursor
    entries = list(admin.history(alice, page_size=2))
    assert [e.transfer.id for e in entries[:5]] == made[::-1]
    assert len(entries) == 6, "five debits and the funding credit"
    assert [e.direction for e in entries] == ["debit"] * 5 + ["credit"]
    assert entries[0].other_account_id == admin.get_account(bob).id
    journal = list(admin.iter_transfers(account=bob, page_size=2))
    assert [t.id for t in journal] == made[::-1]


def test_balance_as_of_a_past_time(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    first = admin.transfer(alice, bob, Decimal("30.00"), "USD")
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    admin.transfer(alice, bob, Decimal("20.00"), "USD")
    past = admin.balance(alice, as_of=between)
    assert past.balance == Decimal("70.00") and past.version is None and past.as_of is not None
    assert admin.balance(alice, as_of=first.created_at - dt.timedelta(microseconds=1)).balance == Decimal("100.00")
    assert admin.balance(alice).balance == Decimal("50.00")


def test_account_codes_are_escaped_in_paths(admin: TallyClient) -> None:
    code = unique("wallet:with/slash")
    account = admin.create_account("USD", code=code)
    assert admin.get_account(code).id == account.id
