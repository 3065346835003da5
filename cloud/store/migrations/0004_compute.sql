-- Compute (Nova v2.1) catalog tables: flavors, their access lists and extra specs, keypairs, quotas.
-- Instances, hosts and claims come in the next migration.

CREATE TABLE cmp_flavors (
    id           text PRIMARY KEY,             -- Nova flavor ids are strings ("1", uuid, ...)
    name         text NOT NULL UNIQUE,
    vcpus        integer NOT NULL CHECK (vcpus > 0),
    ram          integer NOT NULL CHECK (ram > 0),       -- MiB
    disk         integer NOT NULL DEFAULT 0 CHECK (disk >= 0),  -- GiB
    ephemeral    integer NOT NULL DEFAULT 0 CHECK (ephemeral >= 0),
    swap         integer NOT NULL DEFAULT 0 CHECK (swap >= 0),  -- MiB
    rxtx_factor  double precision NOT NULL DEFAULT 1.0,
    is_public    boolean NOT NULL DEFAULT true,
    description  text,
    extra_specs  jsonb NOT NULL DEFAULT '{}',
    disabled     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz
);  -- deletes are hard: a deleted flavor's name and id can be reused

CREATE TABLE cmp_flavor_access (
    flavor_id  text NOT NULL REFERENCES cmp_flavors (id) ON DELETE CASCADE,
    project_id text NOT NULL,
    PRIMARY KEY (flavor_id, project_id)
);

CREATE TABLE cmp_keypairs (
    id          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- Nova shows an integer id
    user_id     text NOT NULL,
    name        text NOT NULL,
    type        text NOT NULL DEFAULT 'ssh' CHECK (type IN ('ssh', 'x509')),
    public_key  text NOT NULL,
    fingerprint text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);

-- Per-project overrides of the default quotas (settings); absent = default.
CREATE TABLE cmp_quotas (
    project_id text NOT NULL,
    resource   text NOT NULL,
    hard_limit integer NOT NULL,
    PRIMARY KEY (project_id, resource)
);
