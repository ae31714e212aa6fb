-- Events of journal rows written outside the engine are numbered when their SQL transaction
-- commits (issue 11).
--
-- The event sequence is gap-free and in commit order because its one row stays locked from the
-- moment a writer numbers its events until that writer's SQL transaction ends. The engine numbers
-- its events last, just before its COMMIT. compat.transfer_money numbered its event inside the
-- call, so an SQL client that called it and then sat in its transaction held the sequence row,
-- and every engine batch, whatever its accounts, waited for that client (up to lock_timeout, then
-- retried). Now a deferred constraint trigger numbers the event at the client's COMMIT, so the
-- row is held only for the commit itself. The trigger covers every journal row inserted without a
-- batch (batch_id IS NULL: compat.transfer_money, or an SQL client writing the journal itself);
-- the engine's rows carry their batch and their events are written by the engine, so the WHEN
-- clause keeps the trigger off the engine's path entirely.

CREATE FUNCTION transfers_event_at_commit() RETURNS trigger LANGUAGE plpgsql
    SET search_path = public, pg_temp
AS $$
DECLARE
    v_seq bigint;
BEGIN
    UPDATE event_sequence SET last_seq = last_seq + 1 RETURNING last_seq INTO v_seq;
    INSERT INTO events (seq, at, type, entity_id, payload)
    VALUES (v_seq, NEW.created_at, 'transfer.' || NEW.kind, NEW.id::text,
            jsonb_build_object(
                'id', NEW.id, 'kind', NEW.kind, 'debit_account_id', NEW.debit_account_id,
                'credit_account_id', NEW.credit_account_id, 'amount', NEW.amount::text, 'currency', NEW.currency,
                'related_id', NEW.related_id, 'timeout_seconds', NEW.timeout_seconds,
                'expires_at', (extract(epoch FROM NEW.expires_at) * 1000000)::bigint, 'status', NEW.status,
                'reference', NEW.reference, 'metadata', NEW.metadata,
                'created_at', (extract(epoch FROM NEW.created_at) * 1000000)::bigint,
                'completed_at', (extract(epoch FROM NEW.completed_at) * 1000000)::bigint));
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER transfers_event_at_commit AFTER INSERT ON transfers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.batch_id IS NULL AND NEW.status <> 'rejected')
    EXECUTE FUNCTION transfers_event_at_commit();

CREATE OR REPLACE FUNCTION compat.transfer_money(
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
    v_rows     bigint;
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
    -- Each account row is written only at the version this decision was made on. The row locks
    -- taken above make that hold; the check asserts it rather than relying on it.
    UPDATE accounts
       SET debits_posted  = debits_posted + CASE WHEN id = v_from.id THEN v_minor ELSE 0 END,
           credits_posted = credits_posted + CASE WHEN id = v_to.id THEN v_minor ELSE 0 END,
           version = version + 1, updated_at = now()
     WHERE (id = v_from.id AND version = v_from.version) OR (id = v_to.id AND version = v_to.version);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> 2 THEN
        RAISE EXCEPTION '版本冲突 (version_conflict): account % or % moved on from the version this transfer was decided on',
            v_from.id, v_to.id USING ERRCODE = '40001';
    END IF;

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
    -- Its event is numbered when the caller commits (transfers_event_at_commit, above).
    RETURN v_id;
END $$;
