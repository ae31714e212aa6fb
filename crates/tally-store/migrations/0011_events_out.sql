-- Events out (issue 13): where each relay has got to, and webhooks with their delivery log.
-- tally-relay writes the SQL on these tables; the schema lives here with every other table's.

-- One row per relay (`nats:<stream>`) or dispatcher (`webhooks`): every event up to
-- delivered_seq has been acknowledged by its destination. The relay advances it only on the
-- connection that holds its lease (a session advisory lock), so a relay that lost its lease can
-- no longer move it.
CREATE TABLE relay_cursors (
    name          text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    delivered_seq bigint NOT NULL DEFAULT 0 CHECK (delivered_seq >= 0),
    holder        text,
    held_since    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A webhook endpoint: where to POST, which event types, and the secret that signs each delivery
-- (the receiver needs it to verify; it is shown once, at registration, and never listed).
-- delivered_seq: every event up to it was delivered to this endpoint or did not match its filter.
CREATE TABLE webhook_endpoints (
    id            uuid PRIMARY KEY,
    url           text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    description   text CHECK (length(description) <= 256),
    event_types   text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 32),
    secret        text NOT NULL CHECK (length(secret) BETWEEN 32 AND 128),
    status        text NOT NULL CHECK (status IN ('active', 'disabled')),
    delivered_seq bigint NOT NULL CHECK (delivered_seq >= 0),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per event sent (or being sent) to an endpoint. An endpoint has at most one delivery
-- that is not `delivered` at a time, the oldest: deliveries go out in order, and a parked one
-- stops its endpoint until it is redelivered.
CREATE TABLE webhook_deliveries (
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    seq              bigint NOT NULL CHECK (seq >= 1),
    event_type       text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'delivered', 'parked')),
    attempts         integer NOT NULL CHECK (attempts >= 0),
    -- attempts when it was last redelivered by hand: it parks again after attempts_max more.
    round_start      integer NOT NULL DEFAULT 0 CHECK (round_start >= 0 AND round_start <= attempts),
    next_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text CHECK (length(last_error) <= 512),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (endpoint_id, seq)
);
CREATE UNIQUE INDEX webhook_deliveries_one_open ON webhook_deliveries (endpoint_id) WHERE status <> 'delivered';
CREATE INDEX webhook_deliveries_parked ON webhook_deliveries (endpoint_id) WHERE status = 'parked';

-- Every attempt: when, how long, and what the endpoint answered (or why there was no answer).
CREATE TABLE webhook_attempts (
    endpoint_id uuid NOT NULL,
    seq         bigint NOT NULL,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    at          timestamptz NOT NULL,
    status_code integer,
    error       text CHECK (length(error) <= 512),
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    PRIMARY KEY (endpoint_id, seq, attempt),
    FOREIGN KEY (endpoint_id, seq) REFERENCES webhook_deliveries (endpoint_id, seq) ON DELETE CASCADE
);

-- Webhook registrations, changes and redeliveries are audited with their actor.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_entity_type_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_entity_type_check
    CHECK (entity_type IN ('account', 'transfer', 'currency', 'batch', 'api_key', 'ledger_day', 'reconciliation',
                           'statement', 'statement_file', 'webhook'));
