-- Statement files (issue 12): one import reads a whole bank file, which may hold several
-- statements (MT940 messages, camt Stmt/Rpt/Ntfctn) for several bank accounts.
--
-- statement_files has one row per file imported, by SHA-256: importing the same file again writes
-- nothing. Each statement of the file that maps to a Tally account is a statements row pointing
-- to its file and its position in it; statements of bank accounts with no Tally account are not
-- rows (they have no account) but are named in the file's report. A statement is now recognised
-- by its own content (content_digest) rather than by the file it came in: the same statement in
-- two overlapping exports is the same statement, so the file-wide (account_id, digest) rule goes.
-- Rows written before this migration keep their file digest and no file.

CREATE TABLE statement_files (
    id           uuid PRIMARY KEY,
    digest       bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    format       text NOT NULL CHECK (format IN ('csv', 'camt053', 'camt052', 'camt054', 'mt940')),
    -- The camt message and version (camt.053.001.08); NULL for MT940 and CSV.
    message      text CHECK (length(message) <= 64),
    encoding     text NOT NULL CHECK (length(encoding) BETWEEN 1 AND 64),
    bytes        bigint NOT NULL CHECK (bytes >= 0),
    statements   integer NOT NULL CHECK (statements >= 0),
    -- What the parser skipped or assumed outside any statement (envelopes, the character set).
    notes        jsonb NOT NULL DEFAULT '[]',
    imported_at  timestamptz NOT NULL,
    imported_by  text NOT NULL CHECK (length(imported_by) BETWEEN 1 AND 128)
);
CREATE TRIGGER statement_files_append_only BEFORE UPDATE OR DELETE ON statement_files FOR EACH ROW EXECUTE FUNCTION reject_change();

ALTER TABLE statements DROP CONSTRAINT statements_format_check;
ALTER TABLE statements ADD CONSTRAINT statements_format_check
    CHECK (format IN ('csv', 'camt053', 'camt052', 'camt054', 'mt940'));
ALTER TABLE statements DROP CONSTRAINT statements_one_file;
ALTER TABLE statements
    ADD COLUMN file_id            uuid REFERENCES statement_files (id),
    ADD COLUMN file_ord           integer CHECK (file_ord >= 0),
    -- SHA-256 of what the statement says (account, balances, entries), not of where it stood.
    ADD COLUMN content_digest     bytea CHECK (length(content_digest) = 32),
    -- Closing balance minus (opening balance + entries) as the bank's file has it; 0 when it adds
    -- up, NULL when a balance is missing.
    ADD COLUMN balance_difference numeric(40, 0),
    ADD COLUMN pages              integer NOT NULL DEFAULT 1 CHECK (pages >= 1),
    ADD COLUMN notes              jsonb NOT NULL DEFAULT '[]',
    ADD CONSTRAINT statements_file_position UNIQUE (file_id, file_ord),
    ADD CONSTRAINT statements_file_with_position CHECK ((file_id IS NULL) = (file_ord IS NULL));

-- What the bank's dialects carry beside the booked amount, for matching and for people.
ALTER TABLE statement_entries
    ADD COLUMN end_to_end_id     text,
    ADD COLUMN counterparty_iban text CHECK (length(counterparty_iban) <= 34),
    -- {"currency": "EUR", "amount": "100.00"}: a decimal string, never a float.
    ADD COLUMN original_amount   jsonb,
    ADD COLUMN charges           jsonb;

-- One run per imported file, with the report that covers the whole file.
ALTER TABLE reconciliation_runs DROP CONSTRAINT reconciliation_runs_kind_check;
ALTER TABLE reconciliation_runs ADD CONSTRAINT reconciliation_runs_kind_check
    CHECK (kind IN ('end_of_day', 'statement', 'statement_file'));
ALTER TABLE reconciliation_runs ADD COLUMN statement_file_id uuid REFERENCES statement_files (id);
ALTER TABLE reconciliation_runs DROP CONSTRAINT reconciliation_runs_subject;
ALTER TABLE reconciliation_runs ADD CONSTRAINT reconciliation_runs_subject
    CHECK ((kind = 'end_of_day') = (day IS NOT NULL)
           AND (kind = 'statement') = (statement_id IS NOT NULL)
           AND (kind = 'statement_file') = (statement_file_id IS NOT NULL));
CREATE INDEX reconciliation_runs_statement_file ON reconciliation_runs (statement_file_id, started_at DESC)
    WHERE kind = 'statement_file';

ALTER TABLE audit_log DROP CONSTRAINT audit_log_entity_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_entity_type_check
    CHECK (entity_type IN ('account', 'transfer', 'currency', 'batch', 'api_key', 'ledger_day', 'reconciliation',
                           'statement', 'statement_file'));
