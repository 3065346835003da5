-- Compute: instances (the servers API projection), hypervisor hosts and their resource claims.
-- Claims are taken with one conditional UPDATE on cmp_hosts (used + request <= capacity * ratio), so
-- two schedulers racing for the last slot of a host can never both win.

CREATE TABLE cmp_instances (
    id                text PRIMARY KEY,                    -- uuid as text
    name              text NOT NULL,
    project_id        text NOT NULL,
    user_id           text NOT NULL,
    image_ref         text NOT NULL DEFAULT '',
    flavor_id         text NOT NULL,
    flavor            jsonb NOT NULL,                      -- snapshot at boot (vcpus, ram, disk, ...)
    host              text,
    vm_state          text NOT NULL DEFAULT 'building',
    task_state        text,
    power_state       integer NOT NULL DEFAULT 0,         -- Nova: 0 NOSTATE, 1 RUNNING, 4 SHUTDOWN
    status            text NOT NULL DEFAULT 'BUILD',
    metadata          jsonb NOT NULL DEFAULT '{}',
    tags              text[] NOT NULL DEFAULT '{}',
    key_name          text,
    user_data         text,
    availability_zone text,
    fault             jsonb,
    launched_at       timestamptz,
    terminated_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    idempotency_key   text
);

CREATE UNIQUE INDEX cmp_instances_idempotency ON cmp_instances (project_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX cmp_instances_project ON cmp_instances (project_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX cmp_instances_host ON cmp_instances (host) WHERE deleted_at IS NULL;

CREATE TABLE cmp_hosts (
    host              text PRIMARY KEY,
    vcpus             integer NOT NULL DEFAULT 0 CHECK (vcpus >= 0),
    ram_mb            integer NOT NULL DEFAULT 0 CHECK (ram_mb >= 0),
    disk_gb           integer NOT NULL DEFAULT 0 CHECK (disk_gb >= 0),
    vcpus_used        integer NOT NULL DEFAULT 0 CHECK (vcpus_used >= 0),
    ram_mb_used       integer NOT NULL DEFAULT 0 CHECK (ram_mb_used >= 0),
    disk_gb_used      integer NOT NULL DEFAULT 0 CHECK (disk_gb_used >= 0),
    cpu_ratio         double precision NOT NULL DEFAULT 16.0,
    ram_ratio         double precision NOT NULL DEFAULT 1.5,
    disk_ratio        double precision NOT NULL DEFAULT 1.0,
    hypervisor_type   text NOT NULL DEFAULT 'fake',
    availability_zone text NOT NULL DEFAULT 'nova',
    enabled           boolean NOT NULL DEFAULT true,
    last_report_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cmp_claims (
    instance_id text PRIMARY KEY REFERENCES cmp_instances (id) ON DELETE CASCADE,
    host        text NOT NULL REFERENCES cmp_hosts (host),
    vcpus       integer NOT NULL,
    ram_mb      integer NOT NULL,
    disk_gb     integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cmp_claims_host ON cmp_claims (host);
