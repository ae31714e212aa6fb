#!/usr/bin/env bash
# The account-update ablation of BENCHMARKS.md: a build of 87023dd with
# scripts/micro/ablation-accounts-87023dd.patch applied (never on main: it lets the bench skip the
# account updates and the events, which breaks the books on purpose), copied to /tmp/tally-exp2.
set -uo pipefail
data_dir=/tmp/tally-bench-abl2
export TALLY_PG_BIN=/work/main/.pg18/pginstall/bin
/tmp/tally-exp2 pg start --data-dir $data_dir >/dev/null
run() {
  local name=$1 r=$2; shift 2
  /tmp/tally-exp2 --data-dir $data_dir bench --duration 15s --concurrency 64 --batch-size 100 --json-out /tmp/abl2-$name-$r.json --svg-out /tmp/abl2.svg >/dev/null 2>/tmp/abl2-err.log || { echo "$name exit $?"; tail -3 /tmp/abl2-err.log; }
  python3 - $name $r /tmp/abl2-$name-$r.json <<'PY'
import json, sys
side, r, path = sys.argv[1:]
j = json.load(open(path)); c = j["committed"]
print(f"{side:22s} round {r}: {j['transfers_per_second']:>8,.0f}/s p99 {j['latency_ms']['p99']:6.1f} ms batch {j['mean_batch_size']:5.0f} "
      f"PG {j['postgres_cpu_us_per_transfer']:5.1f} us/t Tally {j['tally_cpu_us_per_transfer']:5.1f} us/t WAL {j['wal_bytes_per_transfer'] or 0:5.0f} B/t", flush=True)
PY
}
for r in 1 2; do
  run as_is $r
  TALLY_EXPERIMENT_NO_ACCOUNT_UPDATES=1 run no_account_updates $r
  TALLY_EXPERIMENT_NO_ACCOUNT_UPDATES=1 TALLY_EXPERIMENT_NO_EVENTS=1 run no_account_updates_events $r
done
