-- Batch-friendly writes: the same guarantees, checked per statement instead of per row where
-- PostgreSQL allows it, and no duplicated data per transfer.

-- A journal row is its own audit record (immutable, with actor and time). The engine writes one
-- audit row per committed batch, naming the batch; each transfer row points to it.
ALTER TABLE transfers ADD COLUMN batch_id uuid;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_entity_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_entity_type_check
    CHECK (entity_type IN ('account', 'transfer', 'currency', 'batch'));

-- Transfer events carry no payload: the journal row under entity_id is the payload.
ALTER TABLE events ALTER COLUMN payload DROP NOT NULL;

-- Accounts of a transfer exist and have its currency. Row-level foreign keys cost a trigger and
-- an SPI query per transfer; this statement-level check does the same with one anti-join per
-- insert statement. Accounts can be neither deleted nor change currency (accounts_guard,
-- accounts_no_delete), so existence at insert time is existence forever.
ALTER TABLE transfers DROP CONSTRAINT transfers_debit_account;
ALTER TABLE transfers DROP CONSTRAINT transfers_credit_account;
CREATE FUNCTION transfers_accounts_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids        uuid[];
    v_currencies text[];
    v_found      bigint;
    v_missing    record;
BEGIN
    -- The distinct (account, currency) pairs of the statement's transfers, probed through the
    -- primary key: the cost follows the batch's accounts, never the size of the accounts table.
    SELECT array_agg(u.account_id), array_agg(u.currency) INTO v_ids, v_currencies
    FROM (SELECT debit_account_id AS account_id, currency FROM new_transfers WHERE status <> 'rejected'
          UNION
          SELECT credit_account_id, currency FROM new_transfers WHERE status <> 'rejected') u;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO v_found
    FROM unnest(v_ids, v_currencies) AS u(account_id, currency)
    WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.account_id AND a.currency = u.currency);
    IF v_found <> cardinality(v_ids) THEN
        SELECT u.account_id, u.currency INTO v_missing
        FROM unnest(v_ids, v_currencies) AS u(account_id, currency)
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.account_id AND a.currency = u.currency)
        LIMIT 1;
        RAISE EXCEPTION 'a transfer names account % in currency %, which does not exist', v_missing.account_id,
            v_missing.currency USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'transfers_accounts_exist';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transfers_accounts_exist AFTER INSERT ON transfers
    REFERENCING NEW TABLE AS new_transfers FOR EACH STATEMENT EXECUTE FUNCTION transfers_accounts_exist();

-- The account guard runs only when a change would break it: the WHEN condition is evaluated
-- without calling PL/pgSQL, so the engine's per-batch updates pay almost nothing for it. An
-- update that changes nothing may keep the version: the engine rewrites accounts it only read,
-- to check under the row lock that they are still at the version its decisions were made on.
DROP TRIGGER accounts_guard ON accounts;
CREATE TRIGGER accounts_guard BEFORE UPDATE ON accounts FOR EACH ROW
    WHEN (NEW.id <> OLD.id OR NEW.currency <> OLD.currency OR NEW.created_at <> OLD.created_at
          OR NEW.unrestricted <> OLD.unrestricted OR NEW.overdraft_limit <> OLD.overdraft_limit
          OR NEW.version < OLD.version OR OLD.status = 'closed'
          OR (NEW.version = OLD.version
              AND (NEW.status, NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
                  IS DISTINCT FROM (OLD.status, OLD.debits_posted, OLD.credits_posted, OLD.debits_pending,
                                    OLD.credits_pending)))
    EXECUTE FUNCTION accounts_guard();

-- The engine's account updates match rows by id only, so that they wait for a row another batch
-- holds and then work on its newest version, and mark a row that is not at the version the batch
-- was decided on with version 0. The check has to happen on that final row: the SET list is
-- first computed from the statement's snapshot, before the wait. Row triggers see the final row,
-- so accounts_guard (0001_ledger.sql) turns the mark into a serialization failure, which aborts
-- the batch.

