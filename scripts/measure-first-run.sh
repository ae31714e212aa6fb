#!/usr/bin/env bash
# Measures what a newcomer waits for: README's two commands on a fresh clone.
#
#   scripts/measure-first-run.sh [COMMIT]     (default: HEAD)
#
# Clones this repository at COMMIT into a temporary directory and, with an empty cargo home
# (every crate downloaded and compiled again) and pip's cache off, times `scripts/tally serve`
# until it prints "Tally serves", stops it, then times `scripts/test`. Prints the figures as a
# table row; the clone's logs stay in the directory it names.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="${1:-HEAD}"
work="$(mktemp -d "${TMPDIR:-/tmp}/tally-first-run.XXXXXX")"
chmod 755 "$work"   # as root, the embedded server runs as another user, who must reach the clone
git clone --quiet "$repo" "$work/clone"
git -C "$work/clone" checkout --quiet "$commit"
export CARGO_HOME="$work/cargo-home" PIP_NO_CACHE_DIR=1
export PATH="${HOME}/.cargo/bin:$PATH"   # rustup's cargo, whatever CARGO_HOME says
cd "$work/clone"
echo "measure-first-run: $(git log --oneline -1) in $work (logs: serve.log, test.log)" >&2

start=$(date +%s)
scripts/tally serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/serve.log" 2>&1 &
server=$!
until grep -q "Tally serves" "$work/serve.log" 2>/dev/null; do
    kill -0 "$server" 2>/dev/null || { echo "measure-first-run: serve ended early; see $work/serve.log" >&2; exit 1; }
    sleep 1
done
served=$(($(date +%s) - start))
kill -INT "$server"
wait "$server" || true

start=$(date +%s)
status=0
scripts/test >"$work/test.log" 2>&1 || status=$?
tested=$(($(date +%s) - start))
counts="$(grep -E '^test result' "$work/test.log" | awk '{p += $4; f += $6} END {print p " passed, " f " failed"}')"
compiled="$(grep -oE 'Finished .* in [0-9hms. ]+' "$work/test.log" | head -n 1 | sed 's/.* in //')"
echo "| commit | serve until it serves | scripts/test (its compile) | both | tests |"
echo "|---|---|---|---|---|"
echo "| $(git rev-parse --short HEAD) | ${served} s | ${tested} s (${compiled}) | $((served + tested)) s | ${counts}, exit ${status} |"
exit "$status"
