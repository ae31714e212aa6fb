-- The seed's SQL interface, for SQL-native clients: connect with options=-csearch_path=compat and
-- the seed's own TransactionProcessor and ReconciliationService run unmodified.
--
-- Amounts here are in major units (12.34), as the seed expects; the ledger itself stores minor
-- units. compat.transfer_money posts plain transfers only. It applies the same rules as
-- tally_core (the schema's constraints enforce them again), locks both accounts in id order,
-- and writes the journal row, the account totals, the audit row and the event in the caller's
-- SQL transaction. The audit actor is the PostgreSQL role that called it ('sql:<role>'), never
-- the user_id argument, which is kept as the transfer's metadata ("claimed_user_id").

CREATE SCHEMA compat;

-- Minor units as major units: 1234 at scale 2 is 12.34.
CREATE FUNCTION tally_major(minor numeric, scale smallint) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN round(minor / (10::numeric ^ scale), scale);

CREATE VIEW compat.accounts AS
SELECT a.id                                                                      AS account_id,
       a.code                                                                    AS account_code,
       tally_major(a.credits_posted - a.debits_posted, c.scale)                  AS balance,
       tally_major(a.credits_posted - a.debits_posted - a.debits_pending, c.scale) AS available,
       a.currency,
       a.version,
       a.status,
       a.created_at,
       a.updated_at
FROM public.accounts a
JOIN public.currencies c ON c.code = a.currency;

-- One row per journal entry that is not a rejection. Transfers that moved money are 'success';
-- holds show as 'pending', 'captured', 'voided' or 'expired'; void entries as 'void'.
CREATE VIEW compat.transactions AS
SELECT t.id                           AS transaction_id,
       t.debit_account_id             AS from_account_id,
       t.credit_account_id            AS to_account_id,
       tally_major(t.amount, c.scale) AS amount,
       t.currency,
       CASE
           WHEN t.kind IN ('posted', 'post_pending', 'reversal') THEN 'success'
           WHEN t.kind = 'void_pending' THEN 'void'
           WHEN t.status = 'posted' THEN 'captured'
           ELSE t.status
       END                            AS status,
       t.kind,
       t.related_id,
       t.reference,
       t.actor,
       t.created_at,
       t.completed_at
FROM public.transfers t
JOIN public.currencies c ON c.code = t.currency
WHERE t.status <> 'rejected';

-- An account id from an id or a code; NULL when there is no such account.
CREATE FUNCTION compat.resolve_account(id_or_code text) RETURNS uuid
    LANGUAGE sql STABLE
    RETURN (SELECT a.id FROM public.accounts a
            WHERE CASE WHEN id_or_code ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                       THEN a.id = id_or_code::uuid
                       ELSE a.code = id_or_code END);

CREATE FUNCTION compat.transfer_money(
    from_account text,
    to_account text,
    amount numeric,
    user_id text,
    transaction_id uuid DEFAULT NULL,
    expected_from_version bigint DEFAULT NULL
) RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = public, pg_temp
AS $$
DECLARE
    v_from     accounts%ROWTYPE;
    v_to       accounts%ROWTYPE;
    v_scale    smallint;
    v_minor    numeric;
    v_id       uuid := coalesce(transaction_id, gen_random_uuid());
    v_actor    text := 'sql:' || session_user;
    v_existing transfers%ROWTYPE;
    v_payload  jsonb;
    v_seq      bigint;
BEGIN
    IF amount IS NULL OR amount <= 0 THEN
        RAISE EXCEPTION 'amount_invalid: amount must be greater than zero' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_from FROM accounts WHERE id = compat.resolve_account(from_account);
    SELECT * INTO v_to FROM accounts WHERE id = compat.resolve_account(to_account);
    IF v_from.id IS NULL OR v_to.id IS NULL THEN
        RAISE EXCEPTION 'account_not_found: %', CASE WHEN v_from.id IS NULL THEN from_account ELSE to_account END
            USING ERRCODE = 'P0002';
    END IF;
    IF v_from.id = v_to.id THEN
        RAISE EXCEPTION 'same_account: the debit and credit accounts are the same' USING ERRCODE = '22023';
    END IF;
    -- Lock both accounts in id order, as the batch path does, then read them again.
    PERFORM 1 FROM accounts WHERE id IN (v_from.id, v_to.id) ORDER BY id FOR UPDATE;
    SELECT * INTO v_from FROM accounts WHERE id = v_from.id;
    SELECT * INTO v_to FROM accounts WHERE id = v_to.id;

    IF v_from.currency <> v_to.currency THEN
        RAISE EXCEPTION 'currency_mismatch: % vs %', v_from.currency, v_to.currency USING ERRCODE = '22023';
    END IF;
    SELECT scale INTO v_scale FROM currencies WHERE code = v_from.currency;
    v_minor := amount * (10::numeric ^ v_scale);
    IF v_minor <> trunc(v_minor) THEN
        RAISE EXCEPTION 'amount_too_many_decimals: % allows % decimals', v_from.currency, v_scale USING ERRCODE = '22023';
    END IF;
    IF v_minor > 79228162514264337593543950335 THEN
        RAISE EXCEPTION 'amount_invalid: amount above the maximum' USING ERRCODE = '22023';
    END IF;
    v_minor := trunc(v_minor);

    IF transaction_id IS NOT NULL THEN
        SELECT * INTO v_existing FROM transfers WHERE id = transaction_id;
        IF v_existing.id IS NOT NULL THEN
            IF v_existing.kind = 'posted' AND v_existing.debit_account_id = v_from.id
               AND v_existing.credit_account_id = v_to.id AND v_existing.amount = v_minor THEN
                RETURN v_existing.id;  -- idempotent replay: nothing moves twice
            END IF;
            RAISE EXCEPTION 'exists_with_different_fields: transaction % exists with different fields', transaction_id
                USING ERRCODE = '23505';
        END IF;
    END IF;
    IF v_from.status <> 'active' OR v_to.status <> 'active' THEN
        RAISE EXCEPTION 'account_%: %', CASE WHEN 'closed' IN (v_from.status, v_to.status) THEN 'closed' ELSE 'frozen' END,
            CASE WHEN v_from.status <> 'active' THEN v_from.id ELSE v_to.id END USING ERRCODE = '55000';
    END IF;
    IF expected_from_version IS NOT NULL AND expected_from_version <> v_from.version THEN
        RAISE EXCEPTION '版本冲突 (version_conflict): account % is at version %, expected %',
            v_from.id, v_from.version, expected_from_version USING ERRCODE = '40001';
    END IF;
    IF NOT v_from.unrestricted
       AND v_from.credits_posted - v_from.debits_posted - v_from.debits_pending - v_minor < -v_from.overdraft_limit THEN
        RAISE EXCEPTION '%: account % has % available',
            CASE WHEN v_from.overdraft_limit > 0 THEN 'overdraft_limit_exceeded' ELSE 'insufficient_funds' END,
            v_from.id, tally_major(v_from.credits_posted - v_from.debits_posted - v_from.debits_pending, v_scale)
            USING ERRCODE = '23514';
    END IF;

    INSERT INTO transfers (id, kind, status, debit_account_id, credit_account_id, amount, currency, actor, metadata,
                           created_at, completed_at)
    VALUES (v_id, 'posted', 'posted', v_from.id, v_to.id, v_minor, v_from.currency, v_actor,
            jsonb_build_object('claimed_user_id', user_id), now(), now());
    UPDATE accounts SET debits_posted = debits_posted + v_minor, version = version + 1, updated_at = now()
        WHERE id = v_from.id;
    UPDATE accounts SET credits_posted = credits_posted + v_minor, version = version + 1, updated_at = now()
        WHERE id = v_to.id;

    -- The same payload shape as transfers posted through Tally (amounts as strings of minor units).
    v_payload := jsonb_build_object(
        'id', v_id, 'kind', 'posted', 'debit_account_id', v_from.id, 'credit_account_id', v_to.id,
        'amount', v_minor::text, 'currency', v_from.currency, 'related_id', NULL, 'timeout_seconds', NULL,
        'expires_at', NULL, 'status', 'posted', 'reference', NULL,
        'metadata', jsonb_build_object('claimed_user_id', user_id),
        'created_at', (extract(epoch FROM now()) * 1000000)::bigint,
        'completed_at', (extract(epoch FROM now()) * 1000000)::bigint);
    INSERT INTO audit_log (at, actor, action, entity_type, entity_id, after)
        VALUES (now(), v_actor, 'transfer.create', 'transfer', v_id::text, v_payload);
    UPDATE event_sequence SET last_seq = last_seq + 1 RETURNING last_seq INTO v_seq;
    INSERT INTO events (seq, at, type, entity_id, payload)
        VALUES (v_seq, now(), 'transfer.posted', v_id::text, v_payload);
    RETURN v_id;
END $$;

-- The seed passes user ids of any type; integers are accepted too.
CREATE FUNCTION compat.transfer_money(from_account text, to_account text, amount numeric, user_id bigint)
    RETURNS uuid LANGUAGE sql
    RETURN compat.transfer_money(from_account, to_account, amount, user_id::text);
