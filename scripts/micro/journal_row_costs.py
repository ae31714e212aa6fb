#!/usr/bin/env python3
"""PostgreSQL backend CPU per journal row, for variants of the journal's schema (issue 11).

Builds a template database from Tally's migrations with 100,000 accounts and PREFILL journal rows,
then, per variant, clones it, applies the variant's DDL, and COPYs REPS batches of BATCH journal
rows (text COPY, committed, each with its events unless the variant says otherwise), reading the
backend's CPU time from /proc before and after each batch (the first two batches are warm-up).

  DSN="host=127.0.0.1 port=5440 user=postgres" PREFILL=300000 scripts/micro/journal_row_costs.py [variant ...]

The server must run on this machine (the script reads /proc/<backend pid>/stat) and be a
throwaway: the script drops and creates databases. BENCHMARKS.md quotes its output.
"""
import psycopg2, io, os, random, sys, time, uuid, glob
DSN = os.environ.get("DSN", "host=127.0.0.1 port=5440 user=postgres")
MIG = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../crates/tally-store/migrations/0*.sql")))
N_ACC = 100_000
PREFILL = int(os.environ.get("PREFILL", "300000"))
BATCH = int(os.environ.get("BATCH", "5000"))
REPS = int(os.environ.get("REPS", "12"))
TICK = os.sysconf("SC_CLK_TCK")

def conn(db):
    c = psycopg2.connect(DSN + f" dbname={db}"); c.autocommit = True; return c

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK

def uid(counter=[0]):
    counter[0] += 1
    t = int(time.time() * 1000)
    return uuid.UUID(int=(t << 80) | (0x7 << 76) | (counter[0] << 16) | random.getrandbits(16))

accounts = None
def rows(n, keys=False):
    out = io.StringIO()
    bid = uid()
    for _ in range(n):
        d = accounts[min(int(random.paretovariate(1.0)) - 1, N_ACC - 1)] if random.random() < 0.5 else random.choice(accounts)
        c = random.choice(accounts)
        while c == d: c = random.choice(accounts)
        out.write(f"{uid()}\tposted\tposted\t{d}\t{c}\t{random.randint(1,1000)}\tUSD\tbench\t2026-12-05 00:00:00+00\t2026-12-05 00:00:00+00\t{bid}" + (f"\t{idx[d]}\t{idx[c]}" if keys else "") + "\n")
    out.seek(0)
    return out

def setup_template():
    c = conn("postgres")
    c.cursor().execute("DROP DATABASE IF EXISTS tmpl")
    c.cursor().execute("CREATE DATABASE tmpl")
    t = conn("tmpl"); cur = t.cursor()
    for m in MIG: cur.execute(open(m).read())
    cur.execute("INSERT INTO currencies (code, scale, iso) VALUES ('USD', 2, true)")
    cur.execute(f"INSERT INTO accounts (id, currency, unrestricted) SELECT gen_random_uuid(), 'USD', true FROM generate_series(1,{N_ACC})")
    global accounts
    cur.execute("SELECT id FROM accounts ORDER BY id"); accounts = [r[0] for r in cur.fetchall()]
    random.shuffle(accounts)
    global idx; idx = {a: i for i, a in enumerate(accounts)}
    done = 0
    while done < PREFILL:
        cur.copy_expert("COPY transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, actor, created_at, completed_at, batch_id) FROM STDIN", rows(50000))
        done += 50000
    cur.execute("INSERT INTO events (seq, at, type, entity_id) SELECT seq, created_at, 'transfer.posted', id::text FROM transfers")
    cur.execute("UPDATE event_sequence SET last_seq = (SELECT max(seq) FROM events)")
    cur.execute("VACUUM ANALYZE")
    t.close()

BARE = ["ALTER TABLE transfers DISABLE TRIGGER transfers_accounts_exist", "DROP INDEX transfers_seq_brin", "DROP INDEX transfers_created_brin",
        "DROP INDEX transfers_debit_history", "DROP INDEX transfers_credit_history"]
VARIANTS = {
  "c0_row_and_primary_key": BARE,
  "c1_plus_history_indexes": BARE[:3],
  "c2_plus_brin": BARE[:1],
  "c3_plus_account_check": [],

  "current": [],
  "no_account_trigger": ["ALTER TABLE transfers DISABLE TRIGGER transfers_accounts_exist"],
  "no_brin": ["DROP INDEX transfers_seq_brin", "DROP INDEX transfers_created_brin"],
  "no_history_indexes": ["DROP INDEX transfers_debit_history", "DROP INDEX transfers_credit_history"],
  "bigint_amount": ["DROP VIEW compat.transactions CASCADE", "ALTER TABLE transfers DROP CONSTRAINT transfers_amount_check", "ALTER TABLE transfers ALTER COLUMN amount TYPE bigint"],
  "no_events": [],
  "one_brin": ["DROP INDEX transfers_seq_brin", "DROP INDEX transfers_created_brin", "CREATE INDEX transfers_seq_created_brin ON transfers USING brin (seq, created_at)"],
  "trigger_skip_and_one_brin": ["DROP INDEX transfers_seq_brin", "DROP INDEX transfers_created_brin", "CREATE INDEX transfers_seq_created_brin ON transfers USING brin (seq, created_at)", "ALTER TABLE transfers DISABLE TRIGGER transfers_accounts_exist"],
  "events_per_batch": [],
  "all_levers": ["DROP VIEW compat.transactions CASCADE", "ALTER TABLE transfers DROP CONSTRAINT transfers_amount_check", "ALTER TABLE transfers ALTER COLUMN amount TYPE bigint",
      "ALTER TABLE transfers DISABLE TRIGGER transfers_accounts_exist", "DROP INDEX transfers_seq_brin", "DROP INDEX transfers_created_brin",
      "DROP INDEX transfers_debit_history", "DROP INDEX transfers_credit_history",
      "ALTER TABLE transfers ADD COLUMN dn bigint, ADD COLUMN cn bigint",
      "ALTER TABLE transfers DISABLE TRIGGER transfers_guard", "UPDATE transfers SET dn = seq % 100000, cn = (seq * 7) % 100000", "ALTER TABLE transfers ENABLE TRIGGER transfers_guard", "CREATE INDEX ON transfers (dn, seq)", "CREATE INDEX ON transfers (cn, seq)"],
  "history_on_bigint_keys": ["DROP INDEX transfers_debit_history", "DROP INDEX transfers_credit_history",
      "ALTER TABLE transfers ADD COLUMN dn bigint, ADD COLUMN cn bigint",
      "ALTER TABLE transfers DISABLE TRIGGER transfers_guard", "UPDATE transfers SET dn = seq % 100000, cn = (seq * 7) % 100000", "ALTER TABLE transfers ENABLE TRIGGER transfers_guard", "CREATE INDEX ON transfers (dn, seq)", "CREATE INDEX ON transfers (cn, seq)"],
}

def run_variant(name, ddl, with_events=True, ev_per_batch=False):
    c = conn("postgres"); c.cursor().execute(f"DROP DATABASE IF EXISTS v_{name}"); c.cursor().execute(f"CREATE DATABASE v_{name} TEMPLATE tmpl")
    v = conn(f"v_{name}"); cur = v.cursor()
    for s in ddl: cur.execute(s)
    cur.execute("VACUUM ANALYZE")
    v.autocommit = False
    cur.execute("SELECT pg_backend_pid()"); pid = cur.fetchone()[0]; v.commit()
    cols = "id, kind, status, debit_account_id, credit_account_id, amount, currency, actor, created_at, completed_at, batch_id"
    keys = name in ("history_on_bigint_keys", "all_levers")
    if keys: cols += ", dn, cn"
    total = 0.0; wall = 0.0
    for r in range(REPS):
        data = rows(BATCH, keys)
        c0 = cpu(pid); w0 = time.time()
        cur.copy_expert(f"COPY transfers ({cols}) FROM STDIN", data)
        if with_events:
            if ev_per_batch:
                cur.execute("UPDATE event_sequence SET last_seq = last_seq + 1 RETURNING last_seq")
                s = cur.fetchone()[0]
                cur.execute("INSERT INTO events (seq, at, type, entity_id) VALUES (%s, now(), 'transfer.batch', %s)", (s, str(uid())))
            else:
                cur.execute("UPDATE event_sequence SET last_seq = last_seq + %s RETURNING last_seq - %s", (BATCH, BATCH))
                base = cur.fetchone()[0]
                ev = io.StringIO("".join(f"{base+i+1}\t2026-12-05 00:00:00+00\ttransfer.posted\t{uid()}\n" for i in range(BATCH)))
                cur.copy_expert("COPY events (seq, at, type, entity_id) FROM STDIN", ev)
        v.commit()
        if r >= 2:
            total += cpu(pid) - c0; wall += time.time() - w0
    n = (REPS - 2) * BATCH
    print(f"{name:28s} events={'batch' if ev_per_batch else with_events!s:5s}  {total*1e6/n:6.2f} us CPU/row   {wall*1e6/n:6.2f} us wall/row", flush=True)
    v.close(); c.cursor().execute(f"DROP DATABASE v_{name}")

if __name__ == "__main__":
    random.seed(1)
    setup_template()
    for name in sys.argv[1:] or VARIANTS:
        run_variant(name, VARIANTS[name], name not in ('no_events', 'c0_row_and_primary_key', 'c1_plus_history_indexes', 'c2_plus_brin', 'c3_plus_account_check'), name in ('events_per_batch', 'all_levers'))
