#!/usr/bin/env bash
# The ablations of BENCHMARKS.md ("Where PostgreSQL's time per transfer still goes"): a build of
# 40eed74 with scripts/micro/ablation-40eed74.patch applied (never on main: it lets the bench drop
# indexes and skip events), copied to /tmp/tally-exp, run as
#   TALLY_PG_BIN=... scripts/micro/ablation.sh ROUNDS --duration 15s --concurrency 64 --batch-size 100
set -uo pipefail
rounds=$1; shift
data_dir=/tmp/tally-bench-abc
export TALLY_PG_BIN=/work/main/.pg18/pginstall/bin
/tmp/tally-exp pg start --data-dir $data_dir >/dev/null
run() {
  local name=$1 r=$2
  /tmp/tally-exp --data-dir $data_dir bench "${ARGS[@]}" --json-out /tmp/abl-$name-$r.json --svg-out /tmp/abl.svg >/dev/null 2>/tmp/abl-err.log || { echo "$name failed"; tail -5 /tmp/abl-err.log; }
  python3 - $name $r /tmp/abl-$name-$r.json <<'PY'
import json, sys
side, r, path = sys.argv[1:]
j = json.load(open(path)); c = j["committed"]
print(f"{side:18s} round {r}: {j['transfers_per_second']:>8,.0f}/s p99 {j['latency_ms']['p99']:6.1f} ms batch {j['mean_batch_size']:5.0f} "
      f"PG {j['cpu_seconds_postgres']*1e6/c:5.1f} us/t Tally {j['cpu_seconds_tally']*1e6/c:5.1f} us/t WAL {j['wal_bytes_per_transfer'] or 0:5.0f} B/t rss {j['peak_rss_mib_tally']:.0f} MiB", flush=True)
PY
}
ARGS=("$@")
for r in $(seq 1 $rounds); do
  run as_is $r
  TALLY_EXPERIMENT_NO_EVENTS=1 run no_events $r
  TALLY_EXPERIMENT_SQL="DROP INDEX transfers_debit_history; DROP INDEX transfers_credit_history" run no_history $r
  TALLY_EXPERIMENT_SQL="DROP INDEX transfers_seq_brin; DROP INDEX transfers_created_brin; DROP INDEX events_at_brin" run no_brin $r
  TALLY_EXPERIMENT_NO_EVENTS=1 TALLY_EXPERIMENT_SQL="DROP INDEX transfers_debit_history; DROP INDEX transfers_credit_history; DROP INDEX transfers_seq_brin; DROP INDEX transfers_created_brin; DROP INDEX events_at_brin" run none_of_these $r
done
