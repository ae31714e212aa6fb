-- Leaner writes per transfer (issue 11). Each change was measured back to back against the
-- schema before it (BENCHMARKS.md, "Posting path v2"); the guarantees are the same.

-- 1. The statement-level account check (0003, 0004) reads every account a journal insert names,
--    after the engine has already proved the same thing in the same SQL transaction: the engine
--    writes every account its batch read, matched by id, and fails the batch unless every one of
--    those rows exists (posting.rs, `update_accounts`), and it asserts before writing that every
--    transfer it writes names two of those accounts, in their currency (`assert_accounts_read`).
--    An account's id and currency never change and accounts are never deleted (accounts_guard,
--    accounts_no_delete). So a write transaction of the engine says so with
--    `SET LOCAL tally.journal_accounts_checked = 'batch'`, and the check returns at once for it.
--    Every other writer (compat.transfer_money, an SQL client, a tool) is still checked.
CREATE OR REPLACE FUNCTION transfers_accounts_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids              uuid[];
    v_currencies       text[];
    v_found_ids        uuid[];
    v_found_currencies text[];
    v_missing          record;
BEGIN
    IF current_setting('tally.journal_accounts_checked', true) = 'batch' THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(u.account_id ORDER BY u.account_id, u.currency),
           array_agg(u.currency ORDER BY u.account_id, u.currency)
      INTO v_ids, v_currencies
    FROM (SELECT debit_account_id AS account_id, currency FROM new_transfers WHERE status <> 'rejected'
          UNION
          SELECT credit_account_id, currency FROM new_transfers WHERE status <> 'rejected') u;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;
    -- An account has one currency, so the lists are equal exactly when every pair exists.
    SELECT array_agg(a.id ORDER BY a.id), array_agg(a.currency ORDER BY a.id)
      INTO v_found_ids, v_found_currencies
    FROM accounts a WHERE a.id = ANY (v_ids);
    IF v_found_ids IS DISTINCT FROM v_ids OR v_found_currencies IS DISTINCT FROM v_currencies THEN
        SELECT u.account_id, u.currency INTO v_missing
        FROM unnest(v_ids, v_currencies) AS u(account_id, currency)
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = u.account_id AND a.currency = u.currency)
        LIMIT 1;
        RAISE EXCEPTION 'a transfer names account % in currency %, which does not exist', v_missing.account_id,
            v_missing.currency USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'transfers_accounts_exist';
    END IF;
    RETURN NULL;
END $$;

-- 2. Account rows change on every batch that touches them. The unique (id, currency) index was
--    the target of the journal's composite foreign keys, which 0003 replaced by the statement
--    check; nothing refers to it, yet every account row version that cannot be a HOT update
--    (a heap-only tuple, with no new index entries) pays an entry in it. And with pages filled to
--    the brim, an update often finds no room on its page and cannot be HOT: 80% leaves room for a
--    new version of each row. (Pages written before this migration keep their fill until the
--    table is rewritten, e.g. by VACUUM FULL in a maintenance window; new accounts get it at once.)
ALTER TABLE accounts DROP CONSTRAINT accounts_id_currency;
ALTER TABLE accounts SET (fillfactor = 80);
