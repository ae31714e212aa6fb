-- Reconciliation: ledger days, per-account balance snapshots, stored reports, imported bank
-- statements.

-- What a ledger day is: the day D ends at `cutoff` on D in `time_zone` (24:00 = midnight at the
-- end of D) and starts where D-1 ended. Fixed once the first day is closed: changing it later
-- would make the stored snapshots disagree with the days they claim to close.
CREATE TABLE ledger_day_settings (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    time_zone  text NOT NULL,
    cutoff     time NOT NULL CHECK (cutoff > '00:00'),
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL CHECK (length(updated_by) BETWEEN 1 AND 128)
);
INSERT INTO ledger_day_settings (time_zone, cutoff, updated_at, updated_by) VALUES ('UTC', '24:00', now(), 'migration');

-- One row per closed day, written with the day's snapshots. Days are closed in order with no
-- gap, each starting where the previous one ended. seq_low is a lower bound of the journal
-- sequence numbers of rows created on this day or later; seq_high the highest sequence number of
-- a row created before the day ended. Together they let a point-in-time balance read only a
-- day or two of an account's history.
CREATE TABLE ledger_days (
    day        date PRIMARY KEY,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    seq_low    bigint NOT NULL CHECK (seq_low >= 1),
    seq_high   bigint NOT NULL CHECK (seq_high >= 0),
    transfers  bigint NOT NULL CHECK (transfers >= 0),
    accounts   bigint NOT NULL CHECK (accounts >= 0),
    closed_at  timestamptz NOT NULL,
    closed_by  text NOT NULL CHECK (length(closed_by) BETWEEN 1 AND 128),
    CONSTRAINT ledger_days_one_start UNIQUE (starts_at)
);

-- An account's balances at the start and at the end of a day, written only for accounts the day
-- touched: an account with no row for a day kept its balances of its latest earlier row. The
-- cost of closing a day follows the day's transfers, not the number of accounts or the history.
CREATE TABLE balance_snapshots (
    account_id              uuid NOT NULL,
    day                     date NOT NULL REFERENCES ledger_days (day),
    currency                text NOT NULL,
    opening_debits_posted   numeric(39, 0) NOT NULL,
    opening_credits_posted  numeric(39, 0) NOT NULL,
    opening_debits_pending  numeric(39, 0) NOT NULL,
    opening_credits_pending numeric(39, 0) NOT NULL,
    closing_debits_posted   numeric(39, 0) NOT NULL,
    closing_credits_posted  numeric(39, 0) NOT NULL,
    closing_debits_pending  numeric(39, 0) NOT NULL,
    closing_credits_pending numeric(39, 0) NOT NULL,
    PRIMARY KEY (account_id, day)
);
CREATE INDEX balance_snapshots_day ON balance_snapshots (day);

-- Per currency, the totals over all accounts at the end of each day, and the day's movement.
CREATE TABLE ledger_day_totals (
    day             date NOT NULL REFERENCES ledger_days (day),
    currency        text NOT NULL,
    transfers       bigint NOT NULL,
    posted_volume   numeric(39, 0) NOT NULL,
    debits_posted   numeric(39, 0) NOT NULL,
    credits_posted  numeric(39, 0) NOT NULL,
    debits_pending  numeric(39, 0) NOT NULL,
    credits_pending numeric(39, 0) NOT NULL,
    PRIMARY KEY (day, currency)
);

-- Closing a day reads its journal rows by creation time, and the holds resolved during it by
-- resolution time. Both indexes cost the posting path little: BRIN keeps one entry per range of
-- pages, and only resolved holds enter the partial index (a resolution already updates the row
-- outside HOT, because status is in the open-holds index). A rejected hold request is not a hold:
-- its status is 'rejected', and it has no accounts to release anything on.
CREATE INDEX transfers_created_brin ON transfers USING brin (created_at);
CREATE INDEX transfers_resolved ON transfers (completed_at) WHERE kind = 'pending' AND status IN ('posted', 'voided', 'expired');
CREATE INDEX events_at_brin ON events USING brin (at);
-- Batch audit rows carry their batch's time (since this migration), so a day's batches are found by it.
CREATE INDEX audit_log_at_brin ON audit_log USING brin (at);
-- Open holds, with or without a timeout: the sweeper reads them by expiry time, reconciliation
-- sums them per currency. (0001 indexed only holds with a timeout.)
DROP INDEX transfers_open_holds;
CREATE INDEX transfers_open_holds ON transfers (expires_at) WHERE status = 'pending';

-- Closed days are history: their snapshots may be rebuilt only by reopening in order from the
-- newest (tally reconcile never does that by itself).
CREATE TRIGGER ledger_days_append_only BEFORE UPDATE ON ledger_days FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER balance_snapshots_append_only BEFORE UPDATE ON balance_snapshots FOR EACH ROW EXECUTE FUNCTION reject_change();

-- Reports: one row per run, end-of-day or statement matching, with its findings.
CREATE TABLE reconciliation_runs (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('end_of_day', 'statement')),
    day           date,
    statement_id  uuid,
    status        text NOT NULL CHECK (status IN ('running', 'clean', 'findings', 'failed')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 128),
    findings      bigint,
    report        jsonb,
    error         text,
    CONSTRAINT reconciliation_runs_subject CHECK ((kind = 'end_of_day') = (day IS NOT NULL)
                                                  AND (kind = 'statement') = (statement_id IS NOT NULL)),
    CONSTRAINT reconciliation_runs_finished CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX reconciliation_runs_day ON reconciliation_runs (day, started_at DESC) WHERE kind = 'end_of_day';
CREATE INDEX reconciliation_runs_statement ON reconciliation_runs (statement_id, started_at DESC) WHERE kind = 'statement';
-- At most one end-of-day run per day at a time.
CREATE UNIQUE INDEX reconciliation_runs_one_running ON reconciliation_runs (day) WHERE status = 'running';

-- Imported bank statements. The same file imported twice is the same statement (by digest); a
-- different file with the same statement id for the same account is refused.
CREATE TABLE statements (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id),
    format          text NOT NULL CHECK (format IN ('csv', 'camt053', 'mt940')),
    statement_ref   text NOT NULL CHECK (length(statement_ref) BETWEEN 1 AND 256),
    digest          bytea NOT NULL CHECK (length(digest) = 32),
    bank_account    text NOT NULL,
    currency        text,
    sequence        text,
    opening_date    date,
    opening_amount  numeric(40, 0),
    closing_date    date,
    closing_amount  numeric(40, 0),
    entries         integer NOT NULL CHECK (entries >= 0),
    imported_at     timestamptz NOT NULL,
    imported_by     text NOT NULL CHECK (length(imported_by) BETWEEN 1 AND 128),
    CONSTRAINT statements_one_ref UNIQUE (account_id, format, statement_ref),
    CONSTRAINT statements_one_file UNIQUE (account_id, digest)
);
CREATE TABLE statement_entries (
    statement_id   uuid NOT NULL REFERENCES statements (id),
    ord            integer NOT NULL CHECK (ord >= 0),
    location       text NOT NULL,
    booking_date   date NOT NULL,
    value_date     date,
    amount         numeric(40, 0) NOT NULL CHECK (amount <> 0),
    reversal       boolean NOT NULL,
    reference      text,
    bank_reference text,
    counterparty   text,
    description    text,
    bank_code      text,
    details        jsonb,
    PRIMARY KEY (statement_id, ord)
);
CREATE TRIGGER statements_append_only BEFORE UPDATE OR DELETE ON statements FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER statement_entries_append_only BEFORE UPDATE OR DELETE ON statement_entries FOR EACH ROW EXECUTE FUNCTION reject_change();

ALTER TABLE audit_log DROP CONSTRAINT audit_log_entity_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_entity_type_check
    CHECK (entity_type IN ('account', 'transfer', 'currency', 'batch', 'api_key', 'ledger_day', 'reconciliation', 'statement'));
