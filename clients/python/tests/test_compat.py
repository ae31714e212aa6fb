"""tally_client.compat: the seed's TransactionProcessor and ReconciliationService over the API."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import Tally, unique

from tally_client import InsufficientFunds, TallyClient
from tally_client.compat import ReconciliationService, TransactionProcessor

HERE = Path(__file__).parent


def cny_accounts(admin: TallyClient) -> tuple[str, str, str]:
    """The seed's setup: bank (unrestricted), alice funded with 100.00 CNY, bob; by id."""
    bank = admin.create_account("CNY", code=unique("bank"), unrestricted=True)
    alice = admin.create_account("CNY", code=unique("alice"))
    bob = admin.create_account("CNY", code=unique("bob"))
    admin.transfer(bank.id, alice.id, Decimal("100.00"), "CNY")
    return str(bank.id), str(alice.id), str(bob.id)


def test_the_processor_keeps_the_seeds_methods_and_shapes(tally: Tally, admin: TallyClient) -> None:
    bank, alice, bob = cny_accounts(admin)
    tp = TransactionProcessor(tally.url, tally.admin_key)
    tx = tp.transfer(alice, bob, Decimal("12.34"), "user-42")
    assert isinstance(tx, str) and len(tx) == 36
    assert tp.get_account_balance(alice) == {"balance": Decimal("87.66"), "currency": "CNY"}
    assert tp.get_account_balance(bob) == {"balance": Decimal("12.34"), "currency": "CNY"}
    assert isinstance(tp.get_account_balance(bank)["balance"], Decimal)
    with pytest.raises(ValueError, match="账户不存在"):
        tp.get_account_balance("00000000-0000-0000-0000-000000000000")

    # user_id is a claim in the metadata; the actor is the API key.
    transfer = admin.get_transfer(tx).transfer
    assert transfer is not None and transfer.metadata == {"claimed_user_id": "user-42"}
    history = tp.get_transaction_history(alice)
    assert [row[:5] for row in history] == [
        (tx, "debit", Decimal("12.34"), bob, "success"),
        (str(admin.history_page(alice).data[-1].transfer.id), "credit", Decimal("100.00"), bank, "success"),
    ]
    assert history[0][5] >= history[1][5] and history[0][5].tzinfo is not None
    assert len(tp.get_transaction_history(alice, limit=1)) == 1

    # A hold shows as the SQL compat view shows it: pending, then captured and success.
    hold = admin.hold(alice, bob, Decimal("1.00"), "CNY", timeout_seconds=600)
    assert tp.get_transaction_history(bob)[0][4] == "pending"
    admin.post(hold.id)
    statuses = [(row[0], row[4]) for row in tp.get_transaction_history(bob)[:2]]
    assert statuses[1] == (str(hold.id), "captured") and statuses[0][1] == "success"

    with pytest.raises(InsufficientFunds):
        tp.transfer(bob, alice, Decimal("1000000"), "u")
    with pytest.raises(TypeError):
        tp.transfer(alice, bob, 0.5, "u")  # type: ignore[arg-type]
    assert tp.get_account_balance(bob)["balance"] == Decimal("13.34")


def test_seed_usage_differs_from_the_psycopg2_version_only_in_the_import_and_constructor() -> None:
    ours = (HERE / "seed_usage.py").read_text().splitlines()
    theirs = (HERE / "seed_usage_psycopg2.py").read_text().splitlines()
    assert len(ours) == len(theirs)
    differing = [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert differing == [
        (
            "from tally_client.compat import TransactionProcessor, ReconciliationService",
            "from seed import TransactionProcessor, ReconciliationService",
        ),
        (
            'tp = TransactionProcessor(os.environ["TALLY_URL"], os.environ["TALLY_API_KEY"])',
            'tp = TransactionProcessor(os.environ["SEED_DSN"])',
        ),
    ]


@pytest.mark.closed_day
def test_the_seed_usage_script_runs_against_the_server(tally: Tally, admin: TallyClient) -> None:
    bank, alice, bob = cny_accounts(admin)
    tally.wait_day_closable()
    env = {**os.environ, "TALLY_URL": tally.url, "TALLY_API_KEY": tally.key("operator")}
    done = subprocess.run(
        [sys.executable, str(HERE / "seed_usage.py"), alice, bob, tally.day.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    tx = lines[0].split()[1]
    assert lines[1:3] == [
        "from {'balance': Decimal('87.66'), 'currency': 'CNY'}",
        "to {'balance': Decimal('12.34'), 'currency': 'CNY'}",
    ]
    history = [line.split()[1:6] for line in lines if line.startswith("history")]
    assert history[0] == [tx, "debit", "12.34", bob, "success"]
    assert history[1][1:5] == ["credit", "100.00", bank, "success"]
    assert "unknown account: 账户不存在" in lines
    assert lines[-1] == f"daily_reconciliation {tally.day.isoformat()} True"
    assert admin.balance(alice).balance == Decimal("87.66")


@pytest.mark.closed_day
def test_daily_reconciliation_is_true_for_a_clean_day_and_raises_for_a_day_not_ended(
    tally: Tally, admin: TallyClient
) -> None:
    tally.wait_day_closable()
    svc = ReconciliationService(admin)
    assert svc.daily_reconciliation(tally.day) is True
    with pytest.raises(Exception, match="day_not_closed"):
        svc.daily_reconciliation(dt.date.today() + dt.timedelta(days=2))
