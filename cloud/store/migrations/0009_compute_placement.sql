-- Compute placement: host aggregates (and the availability zones they define), server groups,
-- quota classes, and the scheduling attempts of each instance (rescheduling excludes their hosts).

CREATE TABLE cmp_aggregates (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- Nova shows an integer id
    uuid        text NOT NULL UNIQUE,
    name        text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',   -- incl. availability_zone
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz
);
-- Nova refuses a second aggregate of the same name (case-insensitively on MySQL).
CREATE UNIQUE INDEX cmp_aggregates_name ON cmp_aggregates (lower(name));

CREATE TABLE cmp_aggregate_hosts (
    aggregate_id integer NOT NULL REFERENCES cmp_aggregates (id) ON DELETE CASCADE,
    host         text NOT NULL REFERENCES cmp_hosts (host) ON DELETE CASCADE,
    PRIMARY KEY (aggregate_id, host)
);
CREATE INDEX cmp_aggregate_hosts_host ON cmp_aggregate_hosts (host);

-- A host's effective availability zone: the zone of an aggregate holding it, else the zone its
-- agent reports (Nova's default_availability_zone, "nova"). One definition for the scheduler's
-- AvailabilityZoneFilter, the API views and the instance's OS-EXT-AZ field.
CREATE FUNCTION cmp_host_zone(h text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT a.metadata ->> 'availability_zone'
           FROM cmp_aggregate_hosts ah JOIN cmp_aggregates a ON a.id = ah.aggregate_id
          WHERE ah.host = h AND a.metadata ? 'availability_zone'
          ORDER BY a.id LIMIT 1),
        (SELECT availability_zone FROM cmp_hosts WHERE host = h),
        'nova')
$$;

CREATE TABLE cmp_server_groups (
    id          text PRIMARY KEY,                 -- uuid as text
    name        text NOT NULL,
    project_id  text NOT NULL,
    user_id     text NOT NULL,
    policy      text NOT NULL
                CHECK (policy IN ('affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity')),
    rules       jsonb NOT NULL DEFAULT '{}',      -- {"max_server_per_host": n} (anti-affinity)
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cmp_server_groups_project ON cmp_server_groups (project_id, created_at);

CREATE TABLE cmp_server_group_members (
    group_id    text NOT NULL REFERENCES cmp_server_groups (id) ON DELETE CASCADE,
    instance_id text NOT NULL REFERENCES cmp_instances (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, instance_id)
);
CREATE INDEX cmp_server_group_members_instance ON cmp_server_group_members (instance_id);

-- Every host an instance was placed on, in order; a failed build's row carries the error.
-- ``requested_zone`` keeps the zone the user asked for (the instance row later shows the host's).
CREATE TABLE cmp_schedule_attempts (
    instance_id    text NOT NULL REFERENCES cmp_instances (id) ON DELETE CASCADE,
    attempt        integer NOT NULL,
    host           text NOT NULL,
    requested_zone text,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, attempt)
);

-- The default quota class (os-quota-class-sets/default): overrides of Nova's defaults for every
-- project; per-project overrides stay in cmp_quotas.
CREATE TABLE cmp_quota_classes (
    class_name text NOT NULL,
    resource   text NOT NULL,
    hard_limit integer NOT NULL,
    PRIMARY KEY (class_name, resource)
);
