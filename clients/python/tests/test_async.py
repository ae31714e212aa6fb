"""The asyncio client against the same server (run with anyio's pytest plugin, which httpx brings)."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import httpx
import pytest
from conftest import Tally, unique

from tally_client import AsyncTallyClient, InsufficientFunds, NewTransfer, NotFound

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class DropFirstAnswer(httpx.AsyncBaseTransport):
    """Applies the first POST on the server but loses its answer."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.ids: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/transfers":
            self.ids.append(json.loads(request.content)["id"])
            if len(self.ids) == 1:
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("the test dropped the answer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_async_client_moves_money_exactly_and_concurrently(tally: Tally) -> None:
    async with AsyncTallyClient(tally.url, tally.admin_key) as client:
        bank, alice, bob = unique("abank"), unique("aalice"), unique("abob")
        await client.create_account("USD", code=bank, unrestricted=True)
        await asyncio.gather(client.create_account("USD", code=alice), client.create_account("USD", code=bob))
        await client.transfer(bank, alice, Decimal("10.00"), "USD")
        await asyncio.gather(*(client.transfer(alice, bob, Decimal("0.10"), "USD") for _ in range(20)))
        assert (await client.balance(alice)).balance == Decimal("8.00")
        assert (await client.balance(bob)).balance == Decimal("2.00")
        history = [entry async for entry in client.history(bob, page_size=3)]
        assert len(history) == 20 and all(e.direction == "credit" for e in history)
        with pytest.raises(InsufficientFunds):
            await client.transfer(alice, bob, Decimal("8.01"), "USD")
        with pytest.raises(NotFound):
            await client.get_transfer(uuid.uuid4())
        result = await client.batch([NewTransfer(bob, alice, Decimal("2.00"), "USD")], atomic=True)
        assert result.applied == 1
        assert (await client.balance(bob)).balance == Decimal("0.00")


async def test_the_async_client_retries_with_the_same_id(tally: Tally) -> None:
    transport = DropFirstAnswer()
    async with AsyncTallyClient(tally.url, tally.admin_key, transport=transport) as client:
        bank, alice = unique("abank"), unique("aalice")
        await client.create_account("USD", code=bank, unrestricted=True)
        await client.create_account("USD", code=alice)
        transfer = await client.transfer(bank, alice, Decimal("7.00"), "USD")
        assert transport.ids == [str(transfer.id)] * 2 and transfer.replayed
        assert (await client.balance(alice)).balance == Decimal("7.00")


async def test_the_async_stream_starts_after_a_sequence_number(tally: Tally) -> None:
    async with AsyncTallyClient(tally.url, tally.admin_key) as client:
        start = int((await client.events(after=10**12)).next_cursor or 0)
        bank, alice = unique("abank"), unique("aalice")
        await client.create_account("USD", code=bank, unrestricted=True)
        await client.create_account("USD", code=alice)
        moved = await client.transfer(bank, alice, Decimal("3.00"), "USD")
        stream = client.stream_events(after=start + 2)
        event = await anext(stream)
        await stream.aclose()
        assert event.seq == start + 3
        assert (event.type, event.entity_id) == ("transfer.posted", str(moved.id))
