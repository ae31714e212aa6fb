"""How fast the Python client moves money through a running `tally serve`.

    python clients/python/bench.py --url http://127.0.0.1:8080 --key tly_... [--seconds 10]

Opens one unrestricted bank and ``--accounts`` USD wallets, then runs, one after the other:

- ``sync``: one thread, one ``TallyClient.transfer`` at a time (what the seed's
  ``TransactionProcessor.transfer`` does, one call after another);
- ``async xC``: ``C`` tasks on one ``AsyncTallyClient``, each one transfer at a time;
- ``bare httpx xC``: the same requests from a bare ``httpx.AsyncClient`` (the library's own cost);
- ``async batch xC``: ``C / 4`` tasks, each sending ``--batch`` transfers per request.

and prints transfers/s with the latency of the calls (p50, p99). Every transfer is checked:
the sum of the wallets' balances at the end equals what the bank sent them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import httpx

from tally_client import AsyncTallyClient, NewTransfer, TallyClient

#: Each transfer moves one cent, so no wallet runs dry.
AMOUNT = Decimal("0.01")
#: The most wallets the bench opens.
ACCOUNTS_MAX = 10_000


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def row(name: str, transfers: int, seconds: float, latencies: list[float]) -> str:
    return (
        f"| {name} | {transfers / seconds:,.0f} | {statistics.median(latencies) * 1000:.1f} "
        f"| {percentile(latencies, 0.99):.1f} | {len(latencies):,} calls, {transfers:,} transfers |"
    )


def run_sync(url: str, key: str, bank: str, wallets: list[str], seconds: float) -> tuple[str, int]:
    latencies: list[float] = []
    with TallyClient(url, key) as tally:
        end = time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < end:
            at = time.monotonic()
            tally.transfer(bank, wallets[len(latencies) % len(wallets)], AMOUNT, "USD")
            latencies.append(time.monotonic() - at)
        elapsed = time.monotonic() - started
    return row("sync, 1 at a time", len(latencies), elapsed, latencies), len(latencies)


async def run_async(
    url: str, key: str, bank: str, wallets: list[str], seconds: float, tasks: int, batch: int
) -> tuple[str, int]:
    latencies: list[float] = []
    moved = 0

    async with AsyncTallyClient(url, key) as tally:

        async def one(n: int) -> int:
            await tally.transfer(bank, wallets[n % len(wallets)], AMOUNT, "USD")
            return 1

        async def many(n: int) -> int:
            transfers = [
                NewTransfer(bank, wallets[(n + i) % len(wallets)], AMOUNT, "USD") for i in range(batch)
            ]
            result = await tally.batch(transfers)
            return sum(1 for outcome in result.results if outcome.result == "ok")

        call: Callable[[int], Awaitable[int]] = one if batch == 1 else many
        end = time.monotonic() + seconds

        async def worker(w: int) -> None:
            nonlocal moved
            n = w
            while time.monotonic() < end:
                at = time.monotonic()
                done = await call(n)  # (not `moved += await ...`: that reads `moved` before the await)
                moved += done
                latencies.append(time.monotonic() - at)
                n += tasks

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(tasks)))
        elapsed = time.monotonic() - started
    name = f"async, {tasks} tasks x 1" if batch == 1 else f"async, {tasks} tasks x batch of {batch}"
    return row(name, moved, elapsed, latencies), moved


async def run_bare(url: str, key: str, bank: str, wallets: list[str], seconds: float, tasks: int) -> tuple[str, int]:
    """The same requests as ``async xC`` from a bare ``httpx.AsyncClient``: what the HTTP library
    costs without the client's code."""
    latencies: list[float] = []
    moved = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        end = time.monotonic() + seconds

        async def worker(w: int) -> None:
            nonlocal moved
            n = w
            while time.monotonic() < end:
                body = {"id": str(uuid.uuid4()), "from": bank, "to": wallets[n % len(wallets)], "amount": str(AMOUNT), "currency": "USD"}
                at = time.monotonic()
                response = await http.post("/v1/transfers", json=body)
                latencies.append(time.monotonic() - at)
                assert response.status_code == 201, response.text
                moved += 1
                n += tasks

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(tasks)))
        elapsed = time.monotonic() - started
    return row(f"bare httpx (no tally-client), {tasks} tasks x 1", moved, elapsed, latencies), moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="an admin key (the bench opens accounts)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    assert 2 <= args.accounts <= ACCOUNTS_MAX, f"--accounts must be 2 to {ACCOUNTS_MAX}"

    run = uuid.uuid4().hex[:8]
    bank, wallets = f"bench-{run}-bank", [f"bench-{run}-{i}" for i in range(args.accounts)]
    with TallyClient(args.url, args.key) as tally:
        print(f"bench: opening a bank and {len(wallets):,} wallets", flush=True)
        tally.create_account("USD", code=bank, unrestricted=True)
        for code in wallets:
            tally.create_account("USD", code=code)

    print("| client | transfers/s | p50 ms | p99 ms | calls |\n|---|---|---|---|---|", flush=True)
    scenarios: list[Callable[[], tuple[str, int]]] = [
        lambda: run_sync(args.url, args.key, bank, wallets, args.seconds),
        lambda: asyncio.run(run_async(args.url, args.key, bank, wallets, args.seconds, args.tasks, 1)),
        lambda: asyncio.run(run_bare(args.url, args.key, bank, wallets, args.seconds, args.tasks)),
        lambda: asyncio.run(
            run_async(args.url, args.key, bank, wallets, args.seconds, max(1, args.tasks // 4), args.batch)
        ),
    ]
    results = []
    for scenario in scenarios:
        results.append(scenario())
        print(results[-1][0], flush=True)
    moved = sum(count for _, count in results)
    with TallyClient(args.url, args.key) as tally:
        held = sum((tally.balance(code).balance for code in wallets), Decimal(0))
    assert held == moved * AMOUNT, f"the wallets hold {held}, but {moved} transfers of {AMOUNT} were acknowledged"
    print(f"bench: checked: the wallets hold {held} USD, {moved:,} acknowledged transfers of {AMOUNT}", flush=True)


if __name__ == "__main__":
    main()
