"""Runs the seed's own Python client (tests/compat/seed.py, unmodified) against Tally's `compat` schema.

Usage: python3 tests/compat/check_seed.py "<libpq conninfo>"

The database must already hold three CNY accounts with codes `bank` (unrestricted), `alice` and `bob`
(no overdraft), with alice funded with 1000.00 from bank and nothing else posted; the Rust test
crates/tally-engine/tests/ledger/compat.rs sets this up. The seed's client connects with
`options=-csearch_path=compat`, so `accounts`, `transactions` and `transfer_money` are Tally's compat
views and function. Assertions on Tally's own tables use a plain connection (public schema).

Prints one line per check and finally `compat: N passed, M failed`; exits 0 only if nothing failed.
"""

import datetime
import logging
import os
import sys
import traceback
from decimal import Decimal

try:
    import psycopg2
except ImportError:
    print("psycopg2 is missing: install psycopg2-binary: pip install psycopg2-binary")
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seed  # noqa: E402
from seed import ReconciliationService, TransactionProcessor  # noqa: E402


class CompletedReconciliationService(ReconciliationService):
    """Supplies only what the seed leaves out: a logger and the two helpers daily_reconciliation calls."""

    def __init__(self, conn):
        super().__init__(conn)
        self.logger = logging.getLogger(__name__ + ".reconciliation")

    def _check_transaction_completeness(self, date):
        """未完成交易: holds still 'pending' that were created on or before `date`."""
        self.cursor.execute(
            """
            SELECT transaction_id, from_account_id, to_account_id, amount, currency, created_at
            FROM transactions
            WHERE status = 'pending' AND DATE(created_at) <= %s
            ORDER BY created_at;
            """,
            (date,),
        )
        return self.cursor.fetchall()

    def _generate_report(self, date):
        """Count and sum of the transactions that moved money on `date`, per currency."""
        self.cursor.execute(
            """
            SELECT currency, count(*), sum(amount)
            FROM transactions
            WHERE status = 'success' AND DATE(completed_at) = %s
            GROUP BY currency
            ORDER BY currency;
            """,
            (date,),
        )
        return {
            "date": date.isoformat(),
            "by_currency": {currency: {"count": count, "sum": total} for currency, count, total in self.cursor.fetchall()},
        }


class Records(logging.Handler):
    """Collects the seed's log records, to see whether it retried."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   - {name}")
        else:
            self.failed += 1
            print(f"FAIL - {name}: {detail}")
        return ok

    def equal(self, name, actual, expected):
        return self.check(name, actual == expected, f"got {actual!r}, expected {expected!r}")

    def error(self, name, exc):
        self.failed += 1
        print(f"FAIL - {name}: {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stdout)


def expect_error(run):
    """Runs `run` and returns the exception it raised, or None."""
    try:
        run()
    except Exception as e:  # noqa: BLE001 - the caller checks the type
        return e
    return None


def main(base, c):
    conn_str = base + " options=-csearch_path=compat"

    plain = psycopg2.connect(base)  # Tally's own tables, public schema
    plain.autocommit = True
    pcur = plain.cursor()
    compat = psycopg2.connect(conn_str)
    ccur = compat.cursor()

    # Setup: the accounts the Rust test created, found by code through the compat view.
    ids = {}
    for code in ("bank", "alice", "bob"):
        ccur.execute("SELECT account_id FROM accounts WHERE account_code = %s", (code,))
        row = ccur.fetchone()
        if not c.check(f"setup: account {code} visible in compat.accounts", row is not None, "not found"):
            return
        ids[code] = row[0]
    compat.rollback()
    bank, alice, bob = ids["bank"], ids["alice"], ids["bob"]

    seed_log = Records()
    logging.getLogger(seed.__name__).addHandler(seed_log)
    tp = TransactionProcessor(conn_str)

    # 1. A transfer through the seed's own retry loop.
    tx = None
    try:
        tx = tp.transfer(alice, bob, Decimal("12.34"), "user-42")
        c.check("transfer returns a transaction id", isinstance(tx, str) and len(tx) == 36, repr(tx))
    except Exception as e:  # noqa: BLE001
        c.error("transfer alice -> bob 12.34", e)
    try:
        c.equal("alice balance after transfer", tp.get_account_balance(alice), {"balance": 987.66, "currency": "CNY"})
        c.equal("bob balance after transfer", tp.get_account_balance(bob), {"balance": 12.34, "currency": "CNY"})
        c.equal("bank balance (unrestricted, funded alice)", tp.get_account_balance(bank)["balance"], -1000.0)
        missing = expect_error(lambda: tp.get_account_balance("00000000-0000-0000-0000-000000000000"))
        c.check("unknown account raises the seed's ValueError", isinstance(missing, ValueError), repr(missing))
    except Exception as e:  # noqa: BLE001
        c.error("get_account_balance", e)
    try:
        history = tp.get_transaction_history(alice)
        c.equal("alice history has the funding and the transfer", len(history), 2)
        mine = [r for r in history if r[0] == tx]
        if c.check("alice history contains the transfer", len(mine) == 1, repr(history)):
            _, kind, amount, other, status, _created = mine[0]
            c.equal("history row (type, amount, other_account, status)", (kind, amount, other, status),
                    ("debit", Decimal("12.34"), bob, "success"))
        funding = [r for r in history if r[0] != tx]
        if funding:
            c.equal("history funding row (type, amount, other_account, status)", funding[0][1:5],
                    ("credit", Decimal("1000.00"), bank, "success"))
        c.check("history is newest first", history[0][5] >= history[-1][5], repr([r[5] for r in history]))
        bob_history = tp.get_transaction_history(bob)
        c.equal("bob history row (id, type, amount, other_account, status)", [r[:5] for r in bob_history],
                [(tx, "credit", Decimal("12.34"), alice, "success")])
    except Exception as e:  # noqa: BLE001
        c.error("get_transaction_history", e)

    # 2. An overdraft: refused by the ledger, re-raised by the seed at once (no retry).
    pcur.execute("SELECT count(*) FROM transfers")
    transfers_before = pcur.fetchone()[0]
    seed_log.records.clear()
    err = expect_error(lambda: tp.transfer(bob, alice, Decimal("1000000"), "u"))
    c.check("overdraft raises psycopg2.Error", isinstance(err, psycopg2.Error), repr(err))
    c.check("overdraft error says insufficient_funds", "insufficient_funds" in str(err), str(err))
    c.equal("overdraft SQLSTATE", getattr(err, "pgcode", None), "23514")
    retries = [r for r in seed_log.records if r.levelno == logging.WARNING]
    c.equal("seed did not retry the overdraft", len(retries), 0)
    pcur.execute("SELECT count(*) FROM transfers")
    c.equal("overdraft wrote no journal row", pcur.fetchone()[0], transfers_before)
    try:
        c.equal("bob balance unchanged after overdraft", tp.get_account_balance(bob)["balance"], 12.34)
    except Exception as e:  # noqa: BLE001
        c.error("seed connection usable after a refused transfer", e)

    # 3. Optimistic locking: a stale expected_from_version is a '版本冲突', the seed's retry trigger.
    ccur.execute("SELECT version FROM accounts WHERE account_id = %s", (alice,))
    version = ccur.fetchone()[0]
    compat.rollback()
    err = None
    try:
        ccur.execute("SELECT transfer_money(%s, %s, %s, %s, NULL, %s)",
                     (alice, bob, Decimal("1.00"), "user-42", version - 1))
        compat.commit()
    except psycopg2.Error as e:
        compat.rollback()
        err = e
    c.check("stale expected_from_version raises", err is not None, "no error")
    c.check("version conflict message contains '版本冲突' (the seed retries on it)", "版本冲突" in str(err), str(err))
    c.equal("version conflict SQLSTATE", getattr(err, "pgcode", None), "40001")
    try:
        ccur.execute("SELECT transfer_money(%s, %s, %s, %s, NULL, %s)",
                     (alice, bob, Decimal("1.00"), "user-42", version))
        ccur.fetchone()
        compat.commit()
        ccur.execute("SELECT version, balance FROM accounts WHERE account_id = %s", (alice,))
        c.equal("current expected_from_version posts and bumps the version", ccur.fetchone(),
                (version + 1, Decimal("986.66")))
        compat.rollback()
    except psycopg2.Error as e:
        compat.rollback()
        c.error("transfer with the current expected_from_version", e)

    # The seed passes user ids of any type: an integer one goes through the bigint overload.
    int_tx = None
    try:
        int_tx = tp.transfer(alice, bob, Decimal("0.01"), 42)
        pcur.execute("SELECT after->'metadata'->>'claimed_user_id' FROM audit_log WHERE entity_id = %s", (int_tx,))
        c.equal("integer user_id is kept as claimed_user_id", pcur.fetchall(), [("42",)])
        c.equal("alice balance after all transfers", tp.get_account_balance(alice)["balance"], 986.65)
    except Exception as e:  # noqa: BLE001
        c.error("transfer with an integer user_id", e)

    # 4. The seed's reconciliation, completed only where the seed leaves gaps.
    conn = psycopg2.connect(conn_str)
    svc = CompletedReconciliationService(conn)
    today = datetime.date.today()
    try:
        pcur.execute("SELECT current_date")
        c.equal("client's date.today() is the database's current_date (the seed's DATE() uses the session time zone)",
                today, pcur.fetchone()[0])
        c.equal("balance consistency finds nothing", svc._check_balance_consistency(today), [])
        c.equal("no incomplete transactions", svc._check_transaction_completeness(today), [])
        c.equal("daily report", svc._generate_report(today),
                {"date": today.isoformat(),
                 "by_currency": {"CNY": {"count": 4, "sum": Decimal("1013.35")}}})
        c.check("daily_reconciliation(today) is True", svc.daily_reconciliation(today) is True, "returned False")
        # Not vacuous: nothing had completed by yesterday, yet the accounts hold money now.
        yesterday = today - datetime.timedelta(days=1)
        c.equal("balance consistency as of yesterday flags the three moved accounts",
                len(svc._check_balance_consistency(yesterday)), 3)
    except Exception as e:  # noqa: BLE001
        c.error("reconciliation", e)
    finally:
        conn.close()

    # 5. Audit: the actor is the PostgreSQL role; the seed's user_id is only a claim in the metadata.
    if tx is not None:
        pcur.execute(
            "SELECT actor, after->'metadata'->>'claimed_user_id' FROM audit_log WHERE entity_id = %s", (tx,))
        rows = pcur.fetchall()
        if c.equal("one audit row for the transfer", len(rows), 1):
            actor, claimed = rows[0]
            pcur.execute("SELECT session_user")
            role = pcur.fetchone()[0]
            c.check("audit actor is the SQL role, not the claimed user",
                    actor.startswith("sql:") and actor != "user-42", repr(actor))
            c.equal("audit actor names the PostgreSQL role", actor, f"sql:{role}")
            c.equal("audit keeps claimed_user_id", claimed, "user-42")
        pcur.execute("SELECT type FROM events WHERE entity_id = %s", (tx,))
        c.equal("one transfer.posted event", pcur.fetchall(), [("transfer.posted",)])
        pcur.execute("SELECT actor FROM transfers WHERE id = %s", (tx,))
        c.check("journal actor is the SQL role", pcur.fetchone()[0].startswith("sql:"), "")

    tp.conn.close()
    compat.close()
    plain.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print('usage: python3 tests/compat/check_seed.py "<libpq conninfo>"')
        sys.exit(2)
    checks = Checks()
    try:
        main(sys.argv[1], checks)
    except Exception as e:  # noqa: BLE001 - report, then fail
        checks.error("scenario aborted", e)
    print(f"compat: {checks.passed} passed, {checks.failed} failed")
    sys.exit(0 if checks.failed == 0 else 1)
