#!/usr/bin/env bash
# Writes a small but varied ledger with the `tally` binary of this checkout, then dumps its data
# as an upgrade-test fixture: crates/tally-store/tests/fixtures/schema_v<N>.sql, where N is the
# newest migration of this build.
#
# The fixture is a database as a released build really wrote it, for tests that load it into
# a database migrated only that far (`tally_store::migrate::migrate_through`) and then check that
# the current `migrate()` keeps every balance, the history and the reconciliation. Make it once
# per released schema, at the release commit, and never edit it afterwards:
#
#   git checkout <release commit>
#   cargo build --release -p tally-cli
#   scripts/make-migration-fixture.sh            # about five minutes: it waits for a ledger day to end
#
# What it writes, through the HTTP API (`tally serve`), the CLI and the seed's SQL interface:
# accounts in EUR (2 decimals), JPY (0), KWD (3) and a user-defined asset POINTS (0); posted
# transfers; holds posted in full and in part, voided, and expired by the server's sweeper; a
# reversal; rejections (insufficient funds, overdraft limit, version conflict, a failed atomic
# batch); `compat.transfer_money` calls; a frozen and a closed account; API keys (one revoked);
# an idempotency key; a ledger day closed by `tally reconcile --date` (and reconciled a second
# time over HTTP); a bank statement import; and two holds left open, created before and after
# the close. The day's cut-off is set a few minutes ahead so that a real day ends during the run.
#
# Environment: TALLY (the binary, default target/release/tally), TALLY_PG_BIN (PostgreSQL 18
# binaries, default .pg18/pginstall/bin), DATA_DIR (a directory that must not exist, default
# /tmp/tally-migration-fixture), PORT (default 18093), OUT (the fixture's path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TALLY=${TALLY:-$ROOT/target/release/tally}
export TALLY_PG_BIN=${TALLY_PG_BIN:-$ROOT/.pg18/pginstall/bin}
DATA_DIR=${DATA_DIR:-/tmp/tally-migration-fixture}
PORT=${PORT:-18093}
VERSION=$(grep -o 'version: [0-9]\+' crates/tally-store/src/migrate.rs | tail -1 | grep -o '[0-9]*')
OUT=${OUT:-$ROOT/crates/tally-store/tests/fixtures/schema_v$VERSION.sql}
COMMIT=$(git rev-parse HEAD)
[ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock)" ] \
    || echo "warning: crates/ has uncommitted changes; the fixture should come from a released commit" >&2
[ -x "$TALLY" ] || { echo "no $TALLY: cargo build --release -p tally-cli" >&2; exit 1; }
[ ! -e "$DATA_DIR" ] || { echo "$DATA_DIR exists: remove it or set DATA_DIR" >&2; exit 1; }
LOG=$DATA_DIR/log
mkdir -p "$DATA_DIR"

t() { "$TALLY" --data-dir "$DATA_DIR" "$@"; }
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill -TERM "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" || true
    t pg stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

t pg start >/dev/null
CONN=$(t --json pg status | jq -r .conninfo)
# PostgreSQL's client tools, with the vendored libpq of the wheel build (see tally-pg's process.rs).
pgtool() { LD_LIBRARY_PATH="$TALLY_PG_BIN/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$TALLY_PG_BIN/$1" "${@:2}"; }
compat() { pgtool psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$CONN options=-csearch_path=compat" -c "$1"; }

# The ledger day ends at the next whole minute that is 2 to 3 minutes away (UTC); DAY is its date.
CUTOFF=$(date -u -d '+3 min' +%H:%M)
DAY=$(date -u -d '+3 min' +%F)
if [ "$CUTOFF" = 00:00 ]; then CUTOFF=24:00; DAY=$(date -u -d '+2 min' +%F); fi
CUTOFF_EPOCH=$(date -u -d "$DAY ${CUTOFF/24:00/23:59}" +%s)
[ "$CUTOFF" = 24:00 ] && CUTOFF_EPOCH=$((CUTOFF_EPOCH + 60))
t days set --time-zone UTC --cutoff "$CUTOFF" >>"$LOG"
t currency add POINTS --scale 0 >>"$LOG"

! curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "something already serves port $PORT" >&2; exit 1; }
"$TALLY" --data-dir "$DATA_DIR" serve --listen "127.0.0.1:$PORT" --reconcile-after off >"$DATA_DIR/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do grep -qs 'Tally serves' "$DATA_DIR/serve.log" && break; sleep 0.1; done
grep -q 'Tally serves' "$DATA_DIR/serve.log" || { cat "$DATA_DIR/serve.log" >&2; exit 1; }
KEY=$(grep -o 'tly_[0-9a-f]*' "$DATA_DIR/serve.log" | head -1)
[ -n "$KEY" ] || { cat "$DATA_DIR/serve.log" >&2; exit 1; }

# call STATUS METHOD PATH [BODY [CURL ARGS...]]: the answer's body, or a failure if the status differs.
call() {
    local want=$1 method=$2 path=$3 body=${4:-}
    shift $(($# < 4 ? $# : 4))
    local answer status
    answer=$(curl -sS -X "$method" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        ${body:+-d "$body"} -w '\n%{http_code}' "$@" "http://127.0.0.1:$PORT$path")
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    echo "$method $path -> $status $answer" >>"$LOG"
    [ "$status" = "$want" ] || { echo "$method $path $body: expected $want, got $status: $answer" >&2; exit 1; }
    printf '%s' "$answer"
}
account() { call 201 POST /v1/accounts "$1" >/dev/null; }
transfer() { call "$1" POST /v1/transfers "$2" >/dev/null; }

# Ids the upgrade tests refer to.
T_REPLAY=019ae000-0000-7000-8000-000000000001   # alice-eur -> bob-eur 12.34, replayed after the upgrade
T_REVERSED=019ae000-0000-7000-8000-000000000002 # reversed on the same day
T_REJECTED=019ae000-0000-7000-8000-000000000003 # insufficient_funds
H_PARTIAL=019ae000-0000-7000-8000-000000000011  # hold, posted in part
H_VOIDED=019ae000-0000-7000-8000-000000000012   # hold, voided
H_EXPIRED=019ae000-0000-7000-8000-000000000013  # hold, expired by the sweeper
H_LATER=019ae000-0000-7000-8000-000000000014    # hold placed on the closed day, posted the day after
H_OPEN_OLD=019ae000-0000-7000-8000-000000000015 # hold placed on the closed day, still open
H_OPEN_NEW=019ae000-0000-7000-8000-000000000016 # hold placed after the close, still open
T_COMPAT=019ae000-0000-7000-8000-000000000021   # compat.transfer_money with a transaction id

# --- The ledger day DAY, which ends at CUTOFF. ---
account '{"code": "bank-eur", "currency": "EUR", "unrestricted": true}'
account '{"code": "alice-eur", "currency": "EUR", "metadata": {"customer": "alice", "tier": 2}}'
account '{"code": "bob-eur", "currency": "EUR", "overdraft_limit": "50.00"}'
account '{"code": "carol-eur", "currency": "EUR"}'
account '{"code": "dave-eur", "currency": "EUR"}'
account '{"code": "bank-jpy", "currency": "JPY", "unrestricted": true}'
account '{"code": "alice-jpy", "currency": "JPY"}'
account '{"code": "shop-jpy", "currency": "JPY", "overdraft_limit": "1000"}'
account '{"code": "bank-kwd", "currency": "KWD", "unrestricted": true}'
account '{"code": "alice-kwd", "currency": "KWD"}'
account '{"code": "points-mint", "currency": "POINTS", "unrestricted": true}'
account '{"code": "points-whale", "currency": "POINTS"}'
# Opened with an Idempotency-Key, and the request replayed (the stored 201 again).
call 201 POST /v1/accounts '{"code": "fees-kwd", "currency": "KWD"}' -H 'Idempotency-Key: open-fees-kwd' >/dev/null
call 201 POST /v1/accounts '{"code": "fees-kwd", "currency": "KWD"}' -H 'Idempotency-Key: open-fees-kwd' >/dev/null
t account create --currency EUR --code erin-eur --overdraft-limit 10.00 >>"$LOG"

transfer 201 '{"id": "019ae000-0000-7000-8000-000000000101", "from": "bank-eur", "to": "alice-eur", "amount": "1000.00",
    "currency": "EUR", "reference": "top-up 1", "metadata": {"counterparty": "alice"}}'
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000102", "from": "bank-eur", "to": "bob-eur", "amount": "20.00",
    "currency": "EUR", "reference": "top-up 2"}'
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000103", "from": "bank-eur", "to": "dave-eur", "amount": "5.00", "currency": "EUR"}'
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000104", "from": "bank-jpy", "to": "alice-jpy", "amount": "50000", "currency": "JPY"}'
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000105", "from": "bank-kwd", "to": "alice-kwd", "amount": "12.345", "currency": "KWD"}'
# An amount beyond 64 bits (10^25 of a scale-0 asset); the schema allows up to 2^96-1.
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000106", "from": "points-mint", "to": "points-whale",
    "amount": "10000000000000000000000000", "currency": "POINTS", "reference": "genesis"}'
transfer 201 "{\"id\": \"$T_REPLAY\", \"from\": \"alice-eur\", \"to\": \"bob-eur\", \"amount\": \"12.34\", \"currency\": \"EUR\",
    \"reference\": \"Miete März\"}"
transfer 200 "{\"id\": \"$T_REPLAY\", \"from\": \"alice-eur\", \"to\": \"bob-eur\", \"amount\": \"12.34\", \"currency\": \"EUR\",
    \"reference\": \"Miete März\"}"
# bob-eur into its overdraft (limit 50.00): 32.34 - 60.00 = -27.66.
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000107", "from": "bob-eur", "to": "carol-eur", "amount": "60.00", "currency": "EUR"}'
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000108", "from": "carol-eur", "to": "alice-eur", "amount": "60.00", "currency": "EUR"}'
# Rejections are journal rows too.
transfer 422 "{\"id\": \"$T_REJECTED\", \"from\": \"alice-jpy\", \"to\": \"shop-jpy\", \"amount\": \"999999\", \"currency\": \"JPY\"}"
transfer 422 '{"id": "019ae000-0000-7000-8000-000000000109", "from": "bob-eur", "to": "alice-eur", "amount": "100.00", "currency": "EUR"}'
transfer 409 '{"id": "019ae000-0000-7000-8000-000000000110", "from": "alice-eur", "to": "bob-eur", "amount": "1.00", "currency": "EUR",
    "expected_from_version": 1}'
# Holds.
transfer 201 "{\"id\": \"$H_PARTIAL\", \"from\": \"alice-eur\", \"to\": \"bob-eur\", \"amount\": \"40.00\", \"currency\": \"EUR\",
    \"pending\": true, \"timeout_seconds\": 86400}"
call 201 POST "/v1/transfers/$H_PARTIAL/post" '{"id": "019ae000-0000-7000-8000-000000000111", "amount": "25.00"}' >/dev/null
transfer 201 "{\"id\": \"$H_VOIDED\", \"from\": \"alice-eur\", \"to\": \"bob-eur\", \"amount\": \"5.00\", \"currency\": \"EUR\", \"pending\": true}"
call 201 POST "/v1/transfers/$H_VOIDED/void" '{}' >/dev/null
transfer 201 "{\"id\": \"$H_EXPIRED\", \"from\": \"alice-jpy\", \"to\": \"shop-jpy\", \"amount\": \"3000\", \"currency\": \"JPY\",
    \"pending\": true, \"timeout_seconds\": 2}"
transfer 201 "{\"id\": \"$H_LATER\", \"from\": \"alice-kwd\", \"to\": \"fees-kwd\", \"amount\": \"2.5\", \"currency\": \"KWD\", \"pending\": true}"
transfer 201 "{\"id\": \"$H_OPEN_OLD\", \"from\": \"alice-eur\", \"to\": \"bob-eur\", \"amount\": \"30.00\", \"currency\": \"EUR\",
    \"pending\": true, \"reference\": \"open across the upgrade\"}"
# A reversal.
transfer 201 "{\"id\": \"$T_REVERSED\", \"from\": \"alice-eur\", \"to\": \"erin-eur\", \"amount\": \"10.00\", \"currency\": \"EUR\"}"
call 201 POST "/v1/transfers/$T_REVERSED/reverse" '{}' >/dev/null
# Batches: one atomic and applied, one atomic and refused as a whole, one not atomic with a rejection.
call 200 POST /v1/transfers/batch '{"atomic": true, "transfers": [
    {"id": "019ae000-0000-7000-8000-000000000121", "from": "alice-jpy", "to": "shop-jpy", "amount": "1500", "currency": "JPY"},
    {"id": "019ae000-0000-7000-8000-000000000122", "from": "shop-jpy", "to": "alice-jpy", "amount": "700", "currency": "JPY"}]}' >/dev/null
call 200 POST /v1/transfers/batch '{"atomic": true, "transfers": [
    {"id": "019ae000-0000-7000-8000-000000000123", "from": "alice-kwd", "to": "fees-kwd", "amount": "0.125", "currency": "KWD"},
    {"id": "019ae000-0000-7000-8000-000000000124", "from": "alice-kwd", "to": "fees-kwd", "amount": "500.000", "currency": "KWD"}]}' >/dev/null
call 200 POST /v1/transfers/batch '{"transfers": [
    {"id": "019ae000-0000-7000-8000-000000000125", "from": "alice-kwd", "to": "fees-kwd", "amount": "0.200", "currency": "KWD"},
    {"id": "019ae000-0000-7000-8000-000000000126", "from": "fees-kwd", "to": "alice-kwd", "amount": "99.000", "currency": "KWD"}]}' >/dev/null
# The seed's SQL interface (actor sql:<role>), with a text and an integer user id.
compat "SELECT transfer_money('alice-eur', 'bob-eur', 1.50, 'user-42', '$T_COMPAT')" >>"$LOG"
compat "SELECT transfer_money('alice-kwd', 'fees-kwd', 0.125, 7)" >>"$LOG"
# The CLI (actor cli:<role>).
t transfer --from bank-jpy --to shop-jpy --amount 250 --reference cli-jpy >>"$LOG"
# Account states, with a precondition on the version.
DAVE_VERSION=$(call 200 GET /v1/accounts/dave-eur | jq .version)
call 200 POST /v1/accounts/dave-eur/freeze '' -H "If-Match: \"$DAVE_VERSION\"" >/dev/null
call 200 POST /v1/accounts/carol-eur/close >/dev/null
# Keys: a reader limited to one account, an operator revoked again.
t key create --name alice-app --role reader --account alice-eur >/dev/null
t key create --name payments --role operator >/dev/null
t key revoke payments >>"$LOG"

# The sweeper of the running server expires the 2-second hold.
for _ in $(seq 50); do
    [ "$(call 200 GET "/v1/transfers/$H_EXPIRED" | jq -r .transfer.status)" = expired ] && break
    sleep 0.2
done
[ "$(call 200 GET "/v1/transfers/$H_EXPIRED" | jq -r .transfer.status)" = expired ] || { echo "hold did not expire" >&2; exit 1; }
NOW=$(date -u +%s)
[ "$NOW" -lt "$CUTOFF_EPOCH" ] || { echo "the day ended before its transfers were written; run again" >&2; exit 1; }

# --- Wait until DAY ended a minute ago (it may be closed then), then the next day. ---
echo "waiting $((CUTOFF_EPOCH + 62 - NOW)) s for ledger day $DAY to end at $CUTOFF UTC and become closable" >&2
sleep $((CUTOFF_EPOCH + 62 - NOW))
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000131", "from": "bank-jpy", "to": "alice-jpy", "amount": "8000", "currency": "JPY",
    "reference": "next day"}'
t --json reconcile --date "$DAY" >"$DATA_DIR/eod.json" || { cat "$DATA_DIR/eod.json" >&2; exit 1; }
[ "$(jq -r .status "$DATA_DIR/eod.json")" = clean ] || { cat "$DATA_DIR/eod.json" >&2; exit 1; }
# A second run of the same day verifies the snapshot the first one wrote.
call 200 POST /v1/reconciliations "{\"date\": \"$DAY\"}" >"$DATA_DIR/eod2.json"
[ "$(jq -r .report.snapshot "$DATA_DIR/eod2.json")" = verified ] || { cat "$DATA_DIR/eod2.json" >&2; exit 1; }

# A bank statement of bank-eur for DAY (statement credits are credits to the account): two
# entries match Tally's top-ups by reference, one is the bank's own.
cat >"$DATA_DIR/statement.csv" <<EOF
date,amount,reference,counterparty
$DAY,-1000.00,top-up 1,alice
$DAY,-20.00,top-up 2,bob
$DAY,250.00,WIRE-77,ACME GmbH
EOF
t --json statement import "$DATA_DIR/statement.csv" --account bank-eur --format csv --statement-id "eur-$DAY" \
    --opening-balance "$DAY:0.00" --closing-balance "$DAY:-770.00" --report json >"$DATA_DIR/statement.json" || true  # 4: findings
jq -e .statement "$DATA_DIR/statement.json" >/dev/null || { cat "$DATA_DIR/statement.json" >&2; exit 1; }

# After the close: a hold of the closed day posted, another left open, and a new open hold.
call 201 POST "/v1/transfers/$H_LATER/post" '{"id": "019ae000-0000-7000-8000-000000000132"}' >/dev/null
transfer 201 "{\"id\": \"$H_OPEN_NEW\", \"from\": \"alice-jpy\", \"to\": \"shop-jpy\", \"amount\": \"1200\", \"currency\": \"JPY\", \"pending\": true}"
# dave-eur is frozen: account_frozen, recorded.
transfer 422 '{"id": "019ae000-0000-7000-8000-000000000133", "from": "alice-eur", "to": "dave-eur", "amount": "1.00", "currency": "EUR"}'
transfer 201 '{"id": "019ae000-0000-7000-8000-000000000134", "from": "alice-eur", "to": "bob-eur", "amount": "0.01", "currency": "EUR",
    "metadata": {"note": "after the close"}}'

kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || true
SERVE_PID=
t --json reconcile >"$DATA_DIR/reconcile.json" || { cat "$DATA_DIR/reconcile.json" >&2; exit 1; }
[ "$(jq '.findings | length' "$DATA_DIR/reconcile.json")" = 0 ] || { cat "$DATA_DIR/reconcile.json" >&2; exit 1; }

# --- The dump: data only, every table but the migration list (the loader migrates that far). ---
mkdir -p "$(dirname "$OUT")"
{
    cat <<EOF
-- A Tally ledger as the build at commit $COMMIT (schema version $VERSION, migrations
-- 0001..$(printf %04d "$VERSION")) wrote it: made by scripts/make-migration-fixture.sh on $(date -u +%F), which drove
-- that build's release binary (HTTP API, CLI, compat.transfer_money) against PostgreSQL
-- $(pgtool postgres --version | grep -o '[0-9][0-9.]*$') and dumped the data with
--   pg_dump --data-only --column-inserts --disable-triggers --exclude-table=public.tally_migrations
-- Ledger day $DAY (UTC, cut-off $CUTOFF) is closed and reconciled; holds $H_OPEN_OLD and
-- $H_OPEN_NEW are open; $T_REPLAY may be replayed.
--
-- Load it, as a superuser, into an empty database migrated through version $VERSION and no further
-- (tally_store::migrate::migrate_through). Migrations seed the currencies, the event counter and
-- the day settings; the ledger's own rows replace them. Never edit this file: make a new one
-- for a new schema.

DELETE FROM public.currencies;
DELETE FROM public.event_sequence;
DELETE FROM public.ledger_day_settings;

EOF
    pgtool pg_dump -d "$CONN" --data-only --column-inserts --disable-triggers --no-owner --no-privileges \
        --exclude-table=public.tally_migrations \
        | grep -v '^\\\(un\)\?restrict ' | grep -v '^-- Dumped \(from\|by\)' | cat -s
} >"$OUT"
echo "wrote $OUT" >&2
grep -c '^INSERT INTO' "$OUT" >&2
