#!/usr/bin/env python3
"""PostgreSQL backend CPU per account row of the engine's batch update (issue 11).

Clones the template database made by journal_row_costs.py (run that first), applies each
variant's DDL, and runs 40 UPDATEs of ~3,000 random accounts each, the way the engine does
(keyed join over an unnest of ids, hash and merge joins off), reading the backend's CPU time
from /proc; prints CPU per updated row and how many updates were HOT.

  DSN="host=127.0.0.1 port=5440 user=postgres" scripts/micro/account_update_costs.py
"""
import psycopg2, os, random, time, sys
DSN = os.environ.get("DSN", "host=127.0.0.1 port=5440 user=postgres")
TICK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split(); return (int(f[11]) + int(f[12])) / TICK
c = psycopg2.connect(DSN + " dbname=postgres"); c.autocommit = True
for name, ddl in [("current", []),
 ("no_checks", ["ALTER TABLE accounts DROP CONSTRAINT accounts_balance_rule", "ALTER TABLE accounts DROP CONSTRAINT accounts_closed_is_empty", "ALTER TABLE accounts DROP CONSTRAINT accounts_debits_posted_check", "ALTER TABLE accounts DROP CONSTRAINT accounts_credits_posted_check", "ALTER TABLE accounts DROP CONSTRAINT accounts_debits_pending_check", "ALTER TABLE accounts DROP CONSTRAINT accounts_credits_pending_check"]),
 ("fillfactor_70_no_id_currency_index", ["ALTER TABLE accounts SET (fillfactor = 70)", "VACUUM FULL accounts", "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_id_currency"]),
 ("no_guard_trigger", ["ALTER TABLE accounts DISABLE TRIGGER accounts_guard"]),
 ("bigint_totals", ["DROP VIEW compat.accounts CASCADE", "ALTER TABLE accounts DROP CONSTRAINT accounts_balance_rule", "ALTER TABLE accounts DROP CONSTRAINT accounts_closed_is_empty", "DROP TRIGGER accounts_guard ON accounts", "ALTER TABLE accounts ALTER COLUMN debits_posted TYPE bigint, ALTER COLUMN credits_posted TYPE bigint, ALTER COLUMN debits_pending TYPE bigint, ALTER COLUMN credits_pending TYPE bigint, ALTER COLUMN overdraft_limit TYPE bigint", "ALTER TABLE accounts ADD CONSTRAINT accounts_balance_rule CHECK (unrestricted OR credits_posted - debits_posted - debits_pending >= -overdraft_limit)", "ALTER TABLE accounts ADD CONSTRAINT accounts_closed_is_empty CHECK (status <> 'closed' OR (credits_posted = debits_posted AND debits_pending = 0 AND credits_pending = 0))"]),
 ("current", [])]:
    c.cursor().execute("DROP DATABASE IF EXISTS u"); c.cursor().execute("CREATE DATABASE u TEMPLATE tmpl")
    d = psycopg2.connect(DSN + " dbname=u"); d.autocommit = True; cur = d.cursor()
    for s in ddl: cur.execute(s)
    cur.execute("SELECT id FROM accounts"); ids = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT pg_backend_pid()"); pid = cur.fetchone()[0]
    cur.execute("SET enable_hashjoin = off; SET enable_mergejoin = off")
    d.autocommit = False
    tot = 0; n = 0
    for rep in range(40):
        batch = sorted(set(random.choice(ids) for _ in range(3000)))
        c0 = cpu(pid)
        cur.execute("""UPDATE accounts a SET debits_posted = a.debits_posted + 1, credits_posted = a.credits_posted + 1, version = a.version + 1, updated_at = now()
                       FROM unnest(%s::uuid[]) AS u(id) WHERE a.id = u.id""", (batch,))
        d.commit()
        if rep >= 5: tot += cpu(pid) - c0; n += len(batch)
    cur.execute("SELECT pg_stat_force_next_flush()"); d.commit(); time.sleep(1)
    cur.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'accounts'"); st = cur.fetchone(); d.commit()
    print(f"{name:16s} {tot*1e6/n:6.2f} us CPU per account row, upd {st[0]} hot {st[1]}", flush=True)
    d.close()
