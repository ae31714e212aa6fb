"""Accounts, ledgers, keys and the errors of each kind, against a real server."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from conftest import Tally, unique

from tally_client import (
    Conflict,
    Forbidden,
    NotFound,
    Rejected,
    TallyClient,
    Unauthorized,
    ValidationError,
    VersionConflict,
)


def test_open_and_show_an_account_by_id_and_code(admin: TallyClient) -> None:
    code = unique("wallet")
    account = admin.create_account("USD", code=code, overdraft_limit=Decimal("50.00"), metadata={"owner": "ann"})
    assert (account.code, account.currency, account.status) == (code, "USD", "active")
    assert (account.balance, account.overdraft_limit, account.unrestricted) == (Decimal("0.00"), Decimal("50.00"), False)
    assert admin.get_account(account.id) == admin.get_account(code)
    assert admin.get_account(code).metadata == {"owner": "ann"}


class CountPosts(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.keys.append(request.headers.get("idempotency-key"))
        return self.inner.handle_request(request)


def test_opening_an_account_sends_an_idempotency_key_and_a_replay_answers_the_same(tally: Tally) -> None:
    transport = CountPosts()
    with TallyClient(tally.url, tally.admin_key, transport=transport) as client:
        key = str(uuid.uuid4())
        first = client.create_account("USD", code=unique("idem"), idempotency_key=key)
        again = client.create_account("USD", code=first.code, idempotency_key=key)
        assert again == first
        client.create_account("USD", code=unique("auto"))
    assert transport.keys[:2] == [key, key]
    assert transport.keys[2] and transport.keys[2] != key


def test_accounts_are_listed_page_by_page(admin: TallyClient) -> None:
    ledger = admin.create_ledger(unique("pages"), "Paging test")
    made = {admin.create_account("EUR", code=unique("p"), ledger=ledger.code).id for _ in range(5)}
    page = admin.list_accounts(ledger=ledger.code, limit=2)
    assert len(page.data) == 2 and page.next_cursor
    listed = list(admin.iter_accounts(ledger=ledger.id, page_size=2))
    assert {a.id for a in listed} == made and len(listed) == 5
    assert all(a.ledger == ledger.id for a in listed)
    assert admin.get_ledger(ledger.code) == ledger
    assert ledger.code in {l.code for l in admin.list_ledgers()}


def test_freeze_unfreeze_close(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    frozen = admin.freeze(bob)
    assert frozen.status == "frozen"
    with pytest.raises(Rejected) as refused:
        admin.transfer(alice, bob, Decimal("1.00"), "USD")
    assert (refused.value.code, refused.value.status) == ("account_frozen", 422)
    assert admin.unfreeze(bob, expected_version=frozen.version).status == "active"
    with pytest.raises(VersionConflict):
        admin.freeze(bob, expected_version=frozen.version)
    with pytest.raises(Rejected) as not_empty:
        admin.close_account(alice)
    assert not_empty.value.code == "account_not_empty"
    assert admin.close_account(bob).status == "closed"


def test_errors_carry_code_status_and_message(tally: Tally, admin: TallyClient, funded: tuple[str, str, str]) -> None:
    bank, alice, bob = funded
    with pytest.raises(NotFound) as missing:
        admin.transfer(alice, unique("nobody"), Decimal("1.00"), "USD")
    assert (missing.value.code, missing.value.status) == ("account_not_found", 404)
    with pytest.raises(NotFound) as no_account:
        admin.get_account(str(uuid.uuid4()))
    assert no_account.value.status == 404
    with pytest.raises(ValidationError) as bad:
        admin.transfer(alice, bob, Decimal("1.001"), "USD")
    assert (bad.value.code, bad.value.status) == ("invalid_amount", 400)
    assert bad.value.message
    with pytest.raises(ValidationError) as negative:
        admin.transfer(alice, bob, Decimal("-5"), "USD")
    assert negative.value.code == "invalid_amount"
    with pytest.raises(Conflict) as taken:
        admin.create_account("EUR", code=alice)
    assert taken.value.status == 409
    with pytest.raises(Unauthorized) as nobody:
        TallyClient(tally.url, "tly_" + "0" * 64).get_account(alice)
    assert nobody.value.code == "unauthenticated"


def test_a_reader_key_reads_its_account_and_nothing_else(tally: Tally, admin: TallyClient, funded: tuple[str, str, str]) -> None:
    bank, alice, bob = funded
    with tally.client(tally.key("reader", alice)) as reader:
        assert reader.balance(alice).balance == Decimal("100.00")
        assert [e.direction for e in reader.history(alice)] == ["credit"]
        with pytest.raises(Forbidden) as moving:
            reader.transfer(alice, bob, Decimal("1.00"), "USD")
        assert (moving.value.code, moving.value.status) == ("forbidden", 403)
        with pytest.raises(Forbidden):
            reader.balance(bob)
        with pytest.raises(Forbidden):
            reader.list_accounts()
    assert admin.balance(alice).balance == Decimal("100.00")


def test_whoami(tally: Tally, admin: TallyClient) -> None:
    try:
        me = admin.whoami()
    except NotFound:
        pytest.skip("this tally binary has no GET /v1/whoami yet")
    assert me.role == "admin" and me.actor == f"key:{me.name}"
    with tally.client(tally.key("operator")) as operator:
        assert operator.whoami().role == "operator"
