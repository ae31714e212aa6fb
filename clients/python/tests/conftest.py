"""A real ``tally serve`` on an embedded PostgreSQL 18, started once for the test session.

``TALLY_BIN`` names the binary (default: ``target/release/tally`` of this repository). The ledger
day is set to end a minute or two after the session starts (``days set --cutoff``), so the tests
that reconcile a day (marked ``closed_day``, run last) can reconcile one holding the session's
first transfers, a minute after it ended.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from tally_client import TallyClient

REPO = Path(__file__).resolve().parents[3]
#: How long ``tally serve`` may take to announce its address, and to exit on SIGTERM.
SERVE_TIMEOUT = 120.0
#: The ledger day ends at least this long after the session starts (rounded up to the minute).
CUTOFF_LEAD = dt.timedelta(seconds=10)
#: A day can be reconciled this long after it ended (README "Reconciliation").
CLOSE_DELAY = dt.timedelta(seconds=62)
KEY = re.compile(r"\btly_[0-9a-f]{64}\b")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "closed_day: reconciles the session's ledger day (runs last)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that wait for the ledger day to close run last, so the others run meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("closed_day") is not None)


@dataclass
class Tally:
    """The running server: its URL, the admin key, the CLI on its data directory, and its ledger day."""

    bin: str
    data_dir: Path
    env: dict[str, str]
    url: str = ""
    admin_key: str = ""
    #: The ledger day the session's first transfers belong to, and when it can be reconciled.
    day: dt.date = dt.date.min
    day_closable_at: dt.datetime = dt.datetime.min
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    def cli(self, *args: str) -> str:
        """Runs ``tally --data-dir DIR ARGS`` and returns its stdout; fails the test on failure."""
        done = subprocess.run(
            [self.bin, "--data-dir", str(self.data_dir), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SERVE_TIMEOUT,
        )
        assert done.returncode == 0, f"tally {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def key(self, role: str, *accounts: str) -> str:
        """A new API key of ``role`` (scoped to ``accounts`` for a reader)."""
        args = ["key", "create", "--name", f"{role}-{uuid.uuid4().hex[:8]}", "--role", role]
        for account in accounts:
            args += ["--account", account]
        found = KEY.search(self.cli(*args))
        assert found, "key create printed no key"
        return found.group(0)

    def client(self, key: str | None = None) -> TallyClient:
        return TallyClient(self.url, key or self.admin_key)

    def wait_day_closable(self) -> None:
        """Sleeps until the session's ledger day can be reconciled."""
        remaining = (self.day_closable_at - dt.datetime.now(dt.UTC)).total_seconds()
        if remaining > 0:
            time.sleep(remaining)


def _cutoff(now: dt.datetime) -> tuple[str, dt.date, dt.datetime]:
    """A cut-off (HH:MM, UTC) soon after ``now``: the day it ends, and when that day ends."""
    end = (now + CUTOFF_LEAD + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    if end.time() == dt.time(0, 0):
        return "24:00", end.date() - dt.timedelta(days=1), end
    return end.strftime("%H:%M"), end.date(), end


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    binary = os.environ.get("TALLY_BIN") or str(REPO / "target" / "release" / "tally")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no tally binary at {binary}: build it (cargo build --release) or set TALLY_BIN")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TALLY_DATA_DIR")}
    pg_bin = REPO / ".pg18" / "pginstall" / "bin"
    if "TALLY_PG_BIN" not in env and "TALLY_PG_HOME" not in env and pg_bin.is_dir():
        env["TALLY_PG_BIN"] = str(pg_bin)
    data_dir = Path(tempfile.mkdtemp(prefix="tally-py-"))
    data_dir.chmod(0o755)  # as root, the embedded PostgreSQL runs as `tally-pg`: it must reach the directory
    server = Tally(binary, data_dir, env)
    try:
        server.cli("pg", "start")
        cutoff, server.day, ends = _cutoff(dt.datetime.now(dt.UTC))
        server.cli("days", "set", "--time-zone", "UTC", "--cutoff", cutoff)
        server.day_closable_at = ends + CLOSE_DELAY
        _serve(server)
        _first_transfers(server)
        yield server
    finally:
        _stop(server)
        shutil.rmtree(data_dir, ignore_errors=True)


def _serve(server: Tally) -> None:
    server.process = subprocess.Popen(
        [server.bin, "--data-dir", str(server.data_dir), "serve", "--listen", "127.0.0.1:0", "--reconcile-after", "off"],
        env={**server.env, "TALLY_LOG": "warn"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    announced = threading.Event()

    def read() -> None:
        assert server.process is not None and server.process.stdout is not None
        for line in server.process.stdout:
            server.log.append(line)
            if line.startswith("Tally serves http://"):
                server.url = line.split()[2]
                announced.set()
            elif (found := KEY.search(line)) and not server.admin_key:
                server.admin_key = found.group(0)

    threading.Thread(target=read, daemon=True).start()
    if not announced.wait(SERVE_TIMEOUT):
        raise RuntimeError("tally serve announced no address:\n" + "".join(server.log))
    if not server.admin_key:
        server.admin_key = server.key("admin")


def _first_transfers(server: Tally) -> None:
    """Money moved on the session's ledger day, before it ends: something to reconcile."""
    with server.client() as client:
        client.create_account("USD", code="session-bank", unrestricted=True)
        client.create_account("USD", code="session-wallet")
        client.transfer("session-bank", "session-wallet", Decimal("10.00"), "USD", reference="session")
    assert dt.datetime.now(dt.UTC) < server.day_closable_at - CLOSE_DELAY, "the session's day ended during setup"


def _stop(server: Tally) -> None:
    if server.process is not None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(SERVE_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    subprocess.run(
        [server.bin, "--data-dir", str(server.data_dir), "pg", "stop"], env=server.env, capture_output=True, check=False
    )


@pytest.fixture()
def admin(tally: Tally) -> Iterator[TallyClient]:
    with tally.client() as client:
        yield client


def unique(prefix: str) -> str:
    """An account code no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def funded(admin: TallyClient) -> tuple[str, str, str]:
    """Three USD accounts of this test: an unrestricted bank, alice funded with 100.00, and bob (empty)."""
    bank, alice, bob = unique("bank"), unique("alice"), unique("bob")
    admin.create_account("USD", code=bank, unrestricted=True)
    admin.create_account("USD", code=alice)
    admin.create_account("USD", code=bob)
    admin.transfer(bank, alice, Decimal("100.00"), "USD")
    return bank, alice, bob
