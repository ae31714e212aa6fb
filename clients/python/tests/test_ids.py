"""Transfer ids the client makes: UUIDv7, ordered by time, as Tally's own ids are."""

from __future__ import annotations

import time
import uuid

from tally_client import NewTransfer
from tally_client._core import new_id


def test_new_ids_are_version_7_unique_and_ordered_by_their_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)
    millis = [i.int >> 80 for i in ids]
    assert millis == sorted(millis)
    assert before <= millis[0] and millis[-1] <= after


def test_a_new_transfer_gets_its_id_once() -> None:
    transfer = NewTransfer("bank", "alice", "1.00", "USD")
    assert transfer.id.version == 7
    assert transfer.body()["id"] == str(transfer.id) == transfer.body()["id"]
