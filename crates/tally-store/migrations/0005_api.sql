-- The HTTP API's principals and its idempotency keys.

-- API keys are random 256-bit secrets; only their SHA-256 is stored (a key has 256 bits of
-- entropy, so a slow password hash would add nothing). `prefix` is the key's first characters,
-- shown in listings so that people can tell keys apart. A reader key may read only the accounts
-- listed in `accounts`.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._:@-]{1,64}$'),
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'reader')),
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    prefix      text NOT NULL CHECK (length(prefix) BETWEEN 1 AND 16),
    accounts    uuid[] NOT NULL DEFAULT '{}' CHECK (cardinality(accounts) <= 1000),
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 128),
    revoked_at  timestamptz
);

-- Idempotency for POSTs that are not transfers (transfers are idempotent by their own id): the
-- first request with a key stores its response; the same key with the same body gets that
-- response again, with another body a refusal. `status` is NULL while the first request runs.
CREATE TABLE idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea NOT NULL CHECK (length(request_hash) = 32),
    status       smallint CHECK (status BETWEEN 100 AND 599),
    response     jsonb,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (principal, key),
    CHECK ((status IS NULL) = (response IS NULL))
);

ALTER TABLE audit_log DROP CONSTRAINT audit_log_entity_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_entity_type_check
    CHECK (entity_type IN ('account', 'transfer', 'currency', 'batch', 'api_key'));

-- Listing the journal without an account filter walks it backwards by `seq`. A BRIN index
-- (a few pages for millions of rows, next to nothing per insert) finds a window of positions;
-- a B-tree on `seq` would cost every transfer another index entry on the posting path.
CREATE INDEX transfers_seq_brin ON transfers USING brin (seq);
