"""Events: the paged list, and the server-sent event stream resuming after a dropped connection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

import httpx
from conftest import Tally

from tally_client import TallyClient


def test_events_page_after_a_sequence_number(admin: TallyClient, funded: tuple[str, str, str]) -> None:
    _, alice, bob = funded
    start = int(admin.events(after=10**12).next_cursor or 0)
    moved = admin.transfer(alice, bob, Decimal("2.50"), "USD")
    page = admin.events(after=start)
    mine = [e for e in page.data if e.entity_id == str(moved.id)]
    assert [e.type for e in mine] == ["transfer.posted"]
    assert mine[0].payload["amount"] == "2.50"
    assert [e.seq for e in page.data] == list(range(start + 1, start + 1 + len(page.data)))


class CutStream(httpx.SyncByteStream):
    """Passes an event stream through, then breaks the connection after ``events`` events."""

    def __init__(self, inner: httpx.SyncByteStream, events: int) -> None:
        self.inner, self.events = inner, events

    def __iter__(self) -> Iterator[bytes]:
        buffer, seen = b"", 0
        for chunk in self.inner:
            buffer += chunk
            while (end := buffer.find(b"\n\n")) >= 0:
                block, buffer = buffer[: end + 2], buffer[end + 2 :]
                yield block
                if block.startswith(b"id:") or b"\nid:" in block:
                    seen += 1
                    if seen == self.events:
                        raise httpx.RemoteProtocolError("the test dropped the connection")

    def close(self) -> None:
        self.inner.close()


class DropStreamOnce(httpx.BaseTransport):
    """Cuts the first event stream after ``events`` events; records every stream request."""

    def __init__(self, events: int) -> None:
        self.inner, self.events = httpx.HTTPTransport(), events
        self.streams: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/events/stream"):
            self.streams.append(request)
            if len(self.streams) == 1:
                assert isinstance(response.stream, httpx.SyncByteStream)
                response.stream = CutStream(response.stream, self.events)
        return response


def test_the_stream_resumes_after_a_dropped_connection_from_the_last_event_seen(
    tally: Tally, admin: TallyClient, funded: tuple[str, str, str]
) -> None:
    _, alice, bob = funded
    start = int(admin.events(after=10**12).next_cursor or 0)
    for cents in range(1, 6):
        admin.transfer(alice, bob, Decimal(cents) / 100, "USD")
    transport = DropStreamOnce(events=2)
    with TallyClient(tally.url, tally.admin_key, transport=transport) as client:
        stream = client.stream_events(after=start)
        events = list(itertools.islice(stream, 5))
        stream.close()
    assert [e.seq for e in events] == list(range(start + 1, start + 6)), "no event lost or repeated"
    assert [e.payload["amount"] for e in events] == ["0.01", "0.02", "0.03", "0.04", "0.05"]
    assert [r.headers["last-event-id"] for r in transport.streams] == [str(start), str(start + 2)]
