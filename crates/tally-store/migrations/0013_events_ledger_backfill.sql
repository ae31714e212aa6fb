-- Events written before migration 0012 carry no ledger (`ledger_id` NULL), so `?ledger=` on the
-- event feed and stream, and NATS's `Tally-Ledger` header, left them out. Every account and
-- transfer then was in ledger 1 (`default`), and so was every statement: their events are of that
-- ledger, as 0012's writers file the same events now. Events of no single ledger stay NULL:
-- currencies, closed days and end-of-day runs (`reconciliation.finished` of a day; the one of a
-- statement, whose payload has `unmatched_statement`, is its statement's ledger's).
--
-- `events` is append-only (0001's `events_append_only`): the trigger is disabled for this one
-- UPDATE, inside the migration's SQL transaction, and enabled again before it commits. The
-- UPDATE only fills a NULL column: no event's sequence number, type or payload changes.
ALTER TABLE events DISABLE TRIGGER events_append_only;
UPDATE events SET ledger_id = 1
 WHERE ledger_id IS NULL
   AND (type LIKE 'account.%'
        OR type LIKE 'transfer.%'
        OR type = 'statement.imported'
        OR (type = 'reconciliation.finished' AND payload ? 'unmatched_statement'));
ALTER TABLE events ENABLE TRIGGER events_append_only;
