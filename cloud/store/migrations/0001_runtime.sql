-- The runtime's own tables: event log, transactional outbox, inbox, durable timers, service registry.

CREATE TABLE streams (
    stream_id   text PRIMARY KEY,
    version     integer NOT NULL CHECK (version >= 1)
);

-- Append-only. Resource tables are projections written in the same transaction as their events.
CREATE TABLE events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text NOT NULL UNIQUE,
    stream_id       text NOT NULL,
    stream_version  integer NOT NULL,
    kind            text NOT NULL,
    v               integer NOT NULL,
    body            jsonb NOT NULL,
    correlation_id  text NOT NULL,
    causation_id    text,
    occurred_at     timestamptz NOT NULL,
    source          text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_kind_seq ON events (kind, seq);
CREATE INDEX events_correlation ON events (correlation_id);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- Messages waiting for the relay. A partition is relayed by one relay at a time, in seq order.
CREATE TABLE outbox (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition    integer NOT NULL,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    headers      jsonb NOT NULL,
    body         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_partition_seq ON outbox (partition, seq);

-- Message ids a consumer group has handled: a redelivery finds its id here and has no effect.
CREATE TABLE inbox (
    consumer      text NOT NULL,
    message_id    text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Messages to send later (deadlines, timers). Due rows move into the outbox in one transaction.
CREATE TABLE timers (
    key          text PRIMARY KEY,
    due_at       timestamptz NOT NULL,
    partition    integer NOT NULL,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    headers      jsonb NOT NULL,
    body         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE services (
    service_id    text PRIMARY KEY,
    host          text NOT NULL,
    binary_name   text NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    readiness     jsonb NOT NULL DEFAULT '{}',
    state         text NOT NULL CHECK (state IN ('up', 'down'))
);
