-- Tally's ledger schema: currencies, accounts, the transfer journal, the audit log and the event outbox.
-- Constraints make an inconsistent row impossible to write; the application is not trusted to keep them.

-- Amounts and totals are numeric(39, 0) minor units in 0 ..= 2^96-1 (tally_core::AMOUNT_MAX), checked
-- per column. (Not a domain: client libraries type-check bind parameters against domains.)

CREATE TABLE currencies (
    code       text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{2,15}$'),
    scale      smallint NOT NULL CHECK (scale BETWEEN 0 AND 18),
    iso        boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id              uuid PRIMARY KEY,
    code            text UNIQUE CHECK (code IS NULL OR code ~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$'),
    currency        text NOT NULL REFERENCES currencies (code),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    unrestricted    boolean NOT NULL DEFAULT false,
    overdraft_limit numeric(39, 0) NOT NULL DEFAULT 0 CHECK (overdraft_limit BETWEEN 0 AND 79228162514264337593543950335),
    debits_posted   numeric(39, 0) NOT NULL DEFAULT 0 CHECK (debits_posted BETWEEN 0 AND 79228162514264337593543950335),
    credits_posted  numeric(39, 0) NOT NULL DEFAULT 0 CHECK (credits_posted BETWEEN 0 AND 79228162514264337593543950335),
    debits_pending  numeric(39, 0) NOT NULL DEFAULT 0 CHECK (debits_pending BETWEEN 0 AND 79228162514264337593543950335),
    credits_pending numeric(39, 0) NOT NULL DEFAULT 0 CHECK (credits_pending BETWEEN 0 AND 79228162514264337593543950335),
    version         bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Tally limits metadata to 4096 bytes of compact JSON; jsonb's text form adds a space after
    -- every ':' and ',', so this backstop allows twice that.
    metadata        jsonb CHECK (metadata IS NULL OR octet_length(metadata::text) <= 8192),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Target of the transfers' composite foreign keys: a transfer's currency is its accounts'.
    CONSTRAINT accounts_id_currency UNIQUE (id, currency),
    CONSTRAINT accounts_unrestricted_has_no_limit CHECK (NOT unrestricted OR overdraft_limit = 0),
    -- The balance rule: available = credits_posted - debits_posted - debits_pending >= -limit.
    CONSTRAINT accounts_balance_rule CHECK (
        unrestricted OR credits_posted - debits_posted - debits_pending >= -overdraft_limit),
    CONSTRAINT accounts_closed_is_empty CHECK (
        status <> 'closed' OR (credits_posted = debits_posted AND debits_pending = 0 AND credits_pending = 0))
);

-- Identity, currency, rule and creation time never change; every change raises the version.
-- Version 0 is the engine's mark for "this row is not at the version the batch was decided on"
-- (see 0003_batch_writes.sql): it becomes a serialization failure, which aborts the batch.
CREATE FUNCTION accounts_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version = 0 THEN
        RAISE EXCEPTION 'account % moved on to version % after the batch was decided', OLD.id, OLD.version
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF NEW.id <> OLD.id OR NEW.currency <> OLD.currency OR NEW.created_at <> OLD.created_at
       OR NEW.unrestricted <> OLD.unrestricted OR NEW.overdraft_limit <> OLD.overdraft_limit THEN
        RAISE EXCEPTION 'account % : id, currency, balance rule and created_at are immutable', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.version < OLD.version OR (NEW.version = OLD.version AND NEW IS DISTINCT FROM OLD) THEN
        RAISE EXCEPTION 'account % : version must increase (% -> %)', OLD.id, OLD.version, NEW.version
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status = 'closed' THEN
        RAISE EXCEPTION 'account % is closed', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_guard BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION accounts_guard();

CREATE FUNCTION reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts EXECUTE FUNCTION reject_change();

-- The journal. Every id a client ever used for a decided transfer is here exactly once: applied
-- transfers (status posted / pending / voided / expired) and recorded rejections (status
-- 'rejected', with the result code and the request as submitted, and no accounts or amount:
-- a rejected request may name accounts that do not exist).
CREATE TABLE transfers (
    id                uuid PRIMARY KEY,
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    kind              text NOT NULL CHECK (kind IN ('posted', 'pending', 'post_pending', 'void_pending', 'reversal')),
    status            text NOT NULL CHECK (status IN ('posted', 'pending', 'voided', 'expired', 'rejected')),
    debit_account_id  uuid,
    credit_account_id uuid,
    amount            numeric(39, 0) CHECK (amount BETWEEN 1 AND 79228162514264337593543950335),
    currency          text,
    related_id        uuid REFERENCES transfers (id),
    timeout_seconds   integer CHECK (timeout_seconds BETWEEN 1 AND 2592000),
    expires_at        timestamptz,
    actor             text NOT NULL CHECK (length(actor) BETWEEN 1 AND 128),
    reference         text CHECK (length(reference) <= 256),
    metadata          jsonb CHECK (metadata IS NULL OR octet_length(metadata::text) <= 8192),
    result            text,
    request           jsonb,
    created_at        timestamptz NOT NULL,
    completed_at      timestamptz,
    CONSTRAINT transfers_debit_account FOREIGN KEY (debit_account_id, currency) REFERENCES accounts (id, currency),
    CONSTRAINT transfers_credit_account FOREIGN KEY (credit_account_id, currency) REFERENCES accounts (id, currency),
    CONSTRAINT transfers_applied_or_rejected CHECK (
        CASE WHEN status = 'rejected'
            THEN result IS NOT NULL AND request IS NOT NULL AND debit_account_id IS NULL
                 AND credit_account_id IS NULL AND amount IS NULL AND currency IS NULL AND related_id IS NULL
            ELSE result IS NULL AND request IS NULL AND debit_account_id IS NOT NULL
                 AND credit_account_id IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
        END),
    CONSTRAINT transfers_two_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_related_by_kind CHECK (
        status = 'rejected' OR (kind IN ('post_pending', 'void_pending', 'reversal')) = (related_id IS NOT NULL)),
    CONSTRAINT transfers_timeout_only_pending CHECK (
        kind = 'pending' OR (timeout_seconds IS NULL AND expires_at IS NULL)),
    CONSTRAINT transfers_status_by_kind CHECK (
        status = 'rejected'
        OR (kind = 'pending' AND status IN ('pending', 'posted', 'voided', 'expired'))
        OR (kind = 'void_pending' AND status = 'voided')
        OR (kind IN ('posted', 'post_pending', 'reversal') AND status = 'posted')),
    CONSTRAINT transfers_completed_when_final CHECK ((status = 'pending') = (completed_at IS NULL))
);

-- History, newest first, by account (keyset pagination on seq).
CREATE INDEX transfers_debit_history ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit_history ON transfers (credit_account_id, seq);
-- A pending transfer is resolved at most once, and a transfer is reversed at most once.
CREATE UNIQUE INDEX transfers_one_resolution ON transfers (related_id) WHERE kind IN ('post_pending', 'void_pending');
CREATE UNIQUE INDEX transfers_one_reversal ON transfers (related_id) WHERE kind = 'reversal';
-- Open holds with a timeout, for the expiry sweeper.
CREATE INDEX transfers_open_holds ON transfers (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;

-- The journal is immutable: the only update allowed is the one Tally makes when it resolves a
-- pending transfer (pending -> posted | voided | expired, stamping completed_at), once.
CREATE FUNCTION transfers_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.kind = 'pending' AND OLD.status = 'pending' AND NEW.status IN ('posted', 'voided', 'expired')
       AND NEW.completed_at IS NOT NULL
       AND (NEW.id, NEW.seq, NEW.kind, NEW.debit_account_id, NEW.credit_account_id, NEW.amount, NEW.currency,
            NEW.related_id, NEW.timeout_seconds, NEW.expires_at, NEW.actor, NEW.reference, NEW.metadata,
            NEW.result, NEW.request, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.seq, OLD.kind, OLD.debit_account_id, OLD.credit_account_id, OLD.amount, OLD.currency,
            OLD.related_id, OLD.timeout_seconds, OLD.expires_at, OLD.actor, OLD.reference, OLD.metadata,
            OLD.result, OLD.request, OLD.created_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'transfers is an immutable journal: update of % (% -> %) refused', OLD.id, OLD.status, NEW.status
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER transfers_guard BEFORE UPDATE ON transfers FOR EACH ROW EXECUTE FUNCTION transfers_guard();
CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers EXECUTE FUNCTION reject_change();

-- Who changed what. The actor is the authenticated caller as the front end established it;
-- db_user is the PostgreSQL role that wrote the row.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL CHECK (length(actor) BETWEEN 1 AND 128),
    db_user     text NOT NULL DEFAULT session_user,
    action      text NOT NULL,
    entity_type text NOT NULL CHECK (entity_type IN ('account', 'transfer', 'currency')),
    entity_id   text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_entity ON audit_log (entity_id);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log EXECUTE FUNCTION reject_change();

-- The outbox. seq is gap-free and in commit order: it is taken from event_sequence, whose single
-- row stays locked until the writing SQL transaction ends, so no two writers interleave and a
-- rolled-back writer leaves no hole.
CREATE TABLE events (
    seq       bigint PRIMARY KEY CHECK (seq >= 1),
    at        timestamptz NOT NULL,
    type      text NOT NULL,
    entity_id text NOT NULL,
    payload   jsonb NOT NULL
);
CREATE TABLE event_sequence (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq  bigint NOT NULL CHECK (last_seq >= 0)
);
INSERT INTO event_sequence (last_seq) VALUES (0);
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION reject_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events EXECUTE FUNCTION reject_change();
