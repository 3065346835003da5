-- Remote consoles: one-time, short-lived tokens of the console proxy (cloud/console/tokens.py).
--
-- Only the token's sha256 is stored, so reading this table gives no way into a console. A row binds
-- the token to an instance, the compute host that runs it and the address the proxy connects to;
-- the proxy deletes it on first use (DELETE ... RETURNING), so a token works once. Expired rows are
-- swept when new tokens are minted.
CREATE TABLE cmp_console_tokens (
    token_hash   text PRIMARY KEY,
    instance_id  text NOT NULL,
    host         text NOT NULL,
    address      text NOT NULL,
    port         integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    console_type text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX cmp_console_tokens_expires ON cmp_console_tokens (expires_at);
