"""The seed document's classes used the way the seed shows them: a transfer with retries, both
balances, the history, an unknown account, and the day's reconciliation.

Usage: python seed_usage.py FROM_ACCOUNT_ID TO_ACCOUNT_ID DAY   (DAY: YYYY-MM-DD, a ledger day that has ended)

seed_usage_psycopg2.py is the same program as a user of the seed's psycopg2 client writes it;
the two differ only in the import line and the line that makes the processor
(test_compat.py checks that).
"""

import datetime
import os
import sys
from decimal import Decimal

from seed import TransactionProcessor, ReconciliationService

from_account, to_account = sys.argv[1], sys.argv[2]
day = datetime.date.fromisoformat(sys.argv[3])

tp = TransactionProcessor(os.environ["SEED_DSN"])

transaction_id = tp.transfer(from_account, to_account, Decimal("12.34"), "user-42", max_retries=3)
print("transfer", transaction_id)

print("from", tp.get_account_balance(from_account))
print("to", tp.get_account_balance(to_account))

for tx_id, kind, amount, other_account, status, created_at in tp.get_transaction_history(from_account, limit=10):
    print("history", tx_id, kind, amount, other_account, status, created_at.isoformat())

try:
    tp.get_account_balance("00000000-0000-0000-0000-000000000000")
except ValueError as e:
    print("unknown account:", e)

svc = ReconciliationService(tp.conn)
print("daily_reconciliation", day, svc.daily_reconciliation(day))
