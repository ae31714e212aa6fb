-- The statement-level account check (0003) probed the primary key once per distinct account of
-- a batch through a nested loop: pg_stat_statements measured 32 ms per batch of ~4,800
-- transfers under load (BENCHMARKS.md, "Where the time goes"). This version reads the batch's
-- accounts with one `id = ANY(...)` scan of the primary key, which walks the index in key order,
-- and compares the sorted (id, currency) lists: no join, so no join plan can go wrong (a
-- hash-join version of this check was planned as a nested loop over the array and took 1.6 s).
-- Same guarantee, same error.
CREATE OR REPLACE FUNCTION transfers_accounts_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids              uuid[];
    v_currencies       text[];
    v_found_ids        uuid[];
    v_found_currencies text[];
    v_missing          record;
BEGIN
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
